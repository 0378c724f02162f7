"""Generation through llama.cpp (llama-cpp-python, the optional ``llamacpp``
extra) on the model's own GGUF file, for users who want its decode speed.

The same token ids as the transformers tokenizer (both read the GGUF's
vocabulary), so answers keep their token ids and log-probabilities and the
Explain view still runs on the transformers model.  llama.cpp keeps one KV
cache and reuses the longest common prefix of consecutive prompts by itself;
one answer is generated at a time (a lock), as one ``Llama`` is not
thread-safe.  LoRA adapters are not applied here: it answers with the base
weights, and says so when it is built.

Knows nothing about conversations, retrieval or the UI.
"""

from __future__ import annotations

import logging
import threading
import time
from pathlib import Path
from typing import Any, Iterator

from ..config import GenerationConfig
from ..errors import GenerationError, ModelLoadError
from .local import GenerationResult, TokenDelta
from ..types import Prompt

log = logging.getLogger(__name__)


class LlamaCppGeneration:
    """Iterate for ``TokenDelta``s; ``result`` once done."""

    def __init__(self, backend: "LlamaCppBackend", prompt: Prompt, settings: GenerationConfig,
                 cancel: threading.Event) -> None:
        self.backend, self.prompt, self.settings, self.cancel = backend, prompt, settings, cancel
        self.result = GenerationResult(prompt_tokens=len(prompt.input_ids))

    def __iter__(self) -> Iterator[TokenDelta]:
        import numpy as np

        llm, tokenizer, settings = self.backend.llm, self.backend.tokenizer, self.settings
        result = self.result
        start = time.perf_counter()
        emitted = ""
        room = self.backend.context - len(self.prompt.input_ids)
        if room < 1:
            raise GenerationError(f"the prompt has {len(self.prompt.input_ids)} tokens, more than llama.cpp's "
                                  f"context of {self.backend.context}")
        n_vocab = llm.n_vocab()
        with self.backend.lock:
            try:
                tokens = llm.generate(list(self.prompt.input_ids), temp=settings.temperature, top_p=settings.top_p,
                                      repeat_penalty=settings.repetition_penalty, reset=True)
                for step, token in enumerate(tokens):
                    if step == 0:
                        result.time_to_first_token = time.perf_counter() - start
                    if self.cancel.is_set():
                        result.finish_reason = "cancelled"
                        break
                    if token in self.backend.stop_ids or step >= min(settings.max_new_tokens, room):
                        result.finish_reason = "stop" if token in self.backend.stop_ids else "length"
                        break
                    # the logits that sampled this token: llama.cpp keeps the last position's only
                    # (its ``scores`` array is filled just with logits_all, which costs a vocab-wide
                    # row per prompt token)
                    logits = np.ctypeslib.as_array(llm._ctx.get_logits(), shape=(n_vocab,)).astype(np.float64)
                    top = logits.max()
                    logprob = float(logits[token] - top - np.log(np.exp(logits - top).sum()))
                    result.token_ids.append(int(token))
                    result.logprobs.append(logprob)
                    text = tokenizer.decode(result.token_ids, skip_special_tokens=True)
                    delta = text[len(emitted):] if not text.endswith("\ufffd") else ""
                    if delta:
                        emitted = text
                    yield TokenDelta(delta, int(token), logprob)
            finally:
                result.text = tokenizer.decode(result.token_ids, skip_special_tokens=True).strip()
                result.total_time = time.perf_counter() - start

    def run(self) -> GenerationResult:
        for _ in self:
            pass
        return self.result


class LlamaCppBackend:
    """A backend for ``Engine`` that generates with llama.cpp on ``gguf``."""

    def __init__(self, gguf: str | Path, tokenizer: Any, stop_ids: tuple[int, ...], context: int = 4096,
                 threads: int = 0) -> None:
        try:
            from llama_cpp import Llama
        except ImportError as exc:
            raise ModelLoadError("the llama.cpp backend needs llama-cpp-python: pip install -e '.[llamacpp]' "
                                 "(it compiles llama.cpp, several minutes)") from exc
        path = Path(gguf)
        if path.suffix != ".gguf" or not path.is_file():
            raise ModelLoadError(f"the llama.cpp backend needs a .gguf file; {path} is not one")
        kwargs: dict[str, Any] = dict(model_path=str(path), n_ctx=context, verbose=False)
        if threads:
            kwargs["n_threads"] = threads
        try:
            self.llm = Llama(**kwargs)
        except Exception as exc:  # llama.cpp reports load failures as ValueError / RuntimeError
            raise ModelLoadError(f"llama.cpp could not load {path}: {exc}") from exc
        self.tokenizer, self.stop_ids, self.context = tokenizer, set(stop_ids), context
        self.lock = threading.Lock()
        self.name = f"llama.cpp:{path.name}"

    def generate(self, prompt: Prompt, settings: GenerationConfig, cancel: threading.Event,
                 cache: Any = None) -> LlamaCppGeneration:
        return LlamaCppGeneration(self, prompt, settings, cancel)
