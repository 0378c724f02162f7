"""The optional llama.cpp generator, on the default model's GGUF (skipped without llama-cpp-python)."""

import threading

import pytest

pytest.importorskip("llama_cpp")

from assistant.config import GenerationConfig  # noqa: E402
from assistant.llamacpp import LlamaCppBackend  # noqa: E402
from assistant.models import gguf_file_of  # noqa: E402
from assistant.types import Prompt  # noqa: E402

pytestmark = pytest.mark.slow


def test_llama_cpp_answers_with_the_transformers_token_ids(real_lm, real_home):
    backend = LlamaCppBackend(gguf_file_of(real_lm.name, real_home), real_lm.tokenizer, real_lm.stop_token_ids,
                              context=2048)
    messages = [{"role": "user", "content": "What is the capital of France? Answer in one word."}]
    ids = real_lm.tokenizer.apply_chat_template(messages, add_generation_prompt=True, tokenize=True)["input_ids"]
    prompt = Prompt(messages=messages, input_ids=list(ids), segments=[])
    gen = backend.generate(prompt, GenerationConfig(max_new_tokens=12, temperature=0.0), threading.Event())
    streamed = "".join(d.text for d in gen)
    result = gen.result
    assert "Paris" in result.text and streamed.strip() == result.text
    assert real_lm.tokenizer.decode(result.token_ids, skip_special_tokens=True).strip() == result.text
    assert all(lp <= 0 for lp in result.logprobs) and len(result.logprobs) == len(result.token_ids)
    # a second prompt sharing the prefix gives the same greedy answer (llama.cpp reuses its cache)
    again = backend.generate(prompt, GenerationConfig(max_new_tokens=12, temperature=0.0), threading.Event()).run()
    assert again.token_ids == result.token_ids

