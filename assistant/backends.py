"""What turns a prompt into streamed text for the engine: the ``Backend`` protocol, and
``LocalBackend`` over this process's model (``generation.local.Generation``).  The other
backends (llama.cpp, a remote server) live beside their clients in ``assistant.generation``."""

from __future__ import annotations

import threading
from typing import Any, Protocol

from .config import GenerationConfig
from .generation.local import Generation, PrefixCache
from .generation.scoring import score_answer
from .generation.models import LoadedModel
from .types import Prompt


class Backend(Protocol):
    """Something that turns a prompt into streamed text."""

    name: str

    def generate(self, prompt: Prompt, settings: GenerationConfig, cancel: threading.Event,
                 cache: PrefixCache | None) -> "Generation | Any":
        ...


class LocalBackend:
    """Generation on the local transformers model."""

    def __init__(self, lm: LoadedModel) -> None:
        self.lm = lm
        self.name = lm.name

    @property
    def can_retry(self) -> bool:
        """Whether an adapter is attached that may answer a declined question again (``generate(adapter=True)``)."""
        return bool(self.lm.retry_adapter) and self.lm.fast is not None and self.lm.fast.has_lora

    def generate(self, prompt: Prompt, settings: GenerationConfig, cancel: threading.Event,
                 cache: PrefixCache | None, adapter: bool = False) -> Generation:
        return Generation(self.lm, prompt.input_ids, settings, cancel, prefix_cache=cache, adapter=adapter,
                          shared_until=prompt.shared_until)

    def score(self, prompt_ids: list[int], answer_ids: list[int], adapter: bool = False) -> list[float]:
        """Log-probability of each of ``answer_ids`` after ``prompt_ids``: the base model, or with ``adapter``
        the retry adapter (``generate(adapter=True)``) that wrote the answer."""
        return score_answer(self.lm, prompt_ids, answer_ids, adapter=adapter)
