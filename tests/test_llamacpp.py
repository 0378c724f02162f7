"""The optional llama.cpp generator, on SmolLM2's GGUF (an instruction-tuned model without an adapter,
since llama.cpp does not apply adapters); skipped without llama-cpp-python."""

import threading

import pytest

pytest.importorskip("llama_cpp")

from assistant.config import GenerationConfig  # noqa: E402
from assistant.generation.llamacpp import LlamaCppBackend  # noqa: E402
from assistant.generation.models import gguf_file_of  # noqa: E402
from assistant.types import Prompt  # noqa: E402

pytestmark = pytest.mark.slow

MODEL = "smollm2-135m-instruct"


@pytest.fixture(scope="module")
def smol(real_home):
    from assistant.config import ModelConfig
    from assistant.generation.models import load_model

    return load_model(ModelConfig(name=MODEL), home=real_home)


def test_llama_cpp_answers_with_the_transformers_token_ids(smol, real_home):
    real_lm = smol
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
    # greedy: each kept token is the most likely one, so its log-probability is the highest (close to 0 here)
    assert max(result.logprobs) > -1.0
    # a second prompt sharing the prefix gives the same greedy answer (llama.cpp reuses its cache)
    again = backend.generate(prompt, GenerationConfig(max_new_tokens=12, temperature=0.0), threading.Event()).run()
    assert again.token_ids == result.token_ids


def test_the_engine_answers_through_llama_cpp_and_explains_on_transformers(real_home, monkeypatch):
    import dataclasses

    from assistant.config import AppConfig
    from assistant.explain.explainer import explain
    from assistant.runtime import build_runtime

    monkeypatch.setenv("ASSISTANT_HOME", str(real_home))
    config = AppConfig.load()
    config.model = dataclasses.replace(config.model, name=MODEL, generator="llama.cpp")
    rt = build_runtime(config, understanding=False, store_path=":memory:")
    assert rt.engine.backend.name.startswith("llama.cpp:") and rt.lm.fast is None
    conv = rt.store.create("alice")
    turn = rt.engine.run_turn(conv, "How do I embed the assistant on my website?")
    assert turn.answer and turn.answer_ids and turn.sources
    follow = rt.engine.run_turn(conv, "And how do I restrict it to my domain?")
    assert follow.answer
    expl = explain(rt.lm, turn)
    assert expl.segments and expl.source_scores

