"""Generation on a remote OpenAI-compatible server (vLLM, TGI, llama.cpp
server, or another instance of this assistant).

Retrieval, intents, language and sources still run locally; only the
chat messages of the built prompt travel.  The local tokenizer still budgets
the prompt.  Token ids of the answer are not known here, so a remote turn's
Explain view has sources and retrieval scores but no attention.
"""

from __future__ import annotations

import threading
import time
from typing import Any, Iterator

from ..config import GenerationConfig
from ..errors import GenerationError
from .local import GenerationResult, TokenDelta
from ..types import Prompt


class RemoteGeneration:
    """Iterate for ``TokenDelta``s (token_id -1); ``result`` once done."""

    def __init__(self, client: Any, model: str, prompt: Prompt, settings: GenerationConfig,
                 cancel: threading.Event) -> None:
        self.client, self.model, self.prompt, self.settings, self.cancel = client, model, prompt, settings, cancel
        self.result = GenerationResult(prompt_tokens=len(prompt.input_ids))

    def __iter__(self) -> Iterator[TokenDelta]:
        import openai

        start = time.perf_counter()
        pieces: list[str] = []
        kwargs: dict[str, Any] = dict(
            model=self.model, messages=self.prompt.messages, stream=True,
            max_tokens=self.settings.max_new_tokens, temperature=self.settings.temperature,
            top_p=self.settings.top_p,
        )
        if self.settings.seed is not None:
            kwargs["seed"] = self.settings.seed
        try:
            stream = self.client.chat.completions.create(**kwargs)
            for chunk in stream:
                if self.cancel.is_set():
                    self.result.finish_reason = "cancelled"
                    stream.close()
                    break
                if not chunk.choices:
                    continue
                choice = chunk.choices[0]
                text = (choice.delta.content or "") if choice.delta else ""
                if text:
                    if not pieces:
                        self.result.time_to_first_token = time.perf_counter() - start
                    pieces.append(text)
                    yield TokenDelta(text, -1, 0.0)
                if choice.finish_reason:
                    self.result.finish_reason = "length" if choice.finish_reason == "length" else "stop"
        except openai.APIError as exc:
            raise GenerationError(f"remote server {self.client.base_url} failed: {exc}") from exc
        finally:
            self.result.text = "".join(pieces).strip()
            self.result.total_time = time.perf_counter() - start


class RemoteBackend:
    """A backend for ``Engine`` that streams from ``base_url`` (``…/v1``)."""

    def __init__(self, base_url: str, model: str, api_key: str | None = None, timeout: float = 120.0) -> None:
        import openai

        if not base_url.startswith(("http://", "https://")):
            raise GenerationError(f"remote base_url must start with http:// or https://; got {base_url!r}")
        self.client = openai.OpenAI(base_url=base_url, api_key=api_key or "none", timeout=timeout, max_retries=1)
        self.model = model
        self.name = f"remote:{model}"

    def generate(self, prompt: Prompt, settings: GenerationConfig, cancel: threading.Event,
                 cache: Any = None) -> RemoteGeneration:
        return RemoteGeneration(self.client, self.model, prompt, settings, cancel)
