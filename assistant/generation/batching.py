"""Continuous batching of decode steps across conversations, on the CPU.

A decode step of the lean forward is bound by reading the weights; the 4-bit
kernel multiplies four rows for about the cost of one.  So when several
conversations generate at once, their next-token steps are gathered and run as
one ``FastDecoder.forward_batch``: each matrix is read once for all of them,
and attention runs per conversation over its own KV cache.  A conversation
joins the batch at its next step and leaves when it ends (no waiting for a
batch to fill: a step runs as soon as the previous one is done, with whatever
is pending), as vLLM and TGI schedule on GPUs.

A conversation ``join``s when it starts decoding and ``leave``s when it ends; a
step waits a few milliseconds for the other joined conversations to hand in
their steps, so the batch holds all of them rather than whoever was quickest.
Each caller keeps its own cache, cancel event and stopping rules; the batcher
only turns "this token, this cache" into logits.  Prompts (prefill) are not
batched: they are compute-bound, and run on the caller's own thread.

Knows nothing about tokens' meaning, sampling or conversations.
"""

from __future__ import annotations

import logging
import threading
import time
from dataclasses import dataclass, field
from typing import Any

log = logging.getLogger(__name__)


@dataclass
class _Step:
    token: int
    cache: Any
    done: threading.Event = field(default_factory=threading.Event)
    logits: Any = None
    error: BaseException | None = None


class DecodeBatcher:
    """Runs concurrent single-token decode steps of one ``FastDecoder`` as batches of up to ``max_batch``."""

    GATHER_SECONDS = 0.004
    """How long a step waits for the other decoding conversations to hand in theirs (each spends a little
    time between steps on sampling and detokenising); a fraction of one step of a 1.5B model."""

    def __init__(self, fast: Any, max_batch: int = 8) -> None:
        self.fast, self.max_batch = fast, max_batch
        self.active = 0
        """Conversations between ``join`` and ``leave``: those a step waits for."""
        self._pending: list[_Step] = []
        self._wake = threading.Condition()
        self._thread: threading.Thread | None = None
        self.steps = 0
        """Batched forward passes run so far."""
        self.rows = 0
        """Decode steps served so far (``rows / steps`` is the mean batch size)."""
        self.largest = 0
        """The largest batch run so far."""

    def join(self) -> None:
        """A conversation starts decoding (after its prompt): later steps wait briefly for its steps."""
        with self._wake:
            self.active += 1

    def leave(self) -> None:
        with self._wake:
            self.active = max(0, self.active - 1)
            self._wake.notify()

    def step(self, token: int, cache: Any) -> Any:
        """Logits (vocab,) after ``token``, appended to ``cache``; blocks until its batch has run."""
        item = _Step(token, cache)
        with self._wake:
            self._pending.append(item)
            if self._thread is None or not self._thread.is_alive():
                self._thread = threading.Thread(target=self._loop, name="decode-batcher", daemon=True)
                self._thread.start()
            self._wake.notify()
        item.done.wait()
        if item.error is not None:
            raise item.error
        return item.logits

    def _loop(self) -> None:
        while True:
            with self._wake:
                while not self._pending:
                    self._wake.wait()
                deadline = time.monotonic() + self.GATHER_SECONDS
                while len(self._pending) < min(self.active, self.max_batch):
                    left = deadline - time.monotonic()
                    if left <= 0:
                        break
                    self._wake.wait(left)
                # one batch runs with or without the attached adapter (``FastCache.adapter``): the others wait
                lora = getattr(self._pending[0].cache, "adapter", False)
                batch = [s for s in self._pending if getattr(s.cache, "adapter", False) == lora][: self.max_batch]
                self._pending = [s for s in self._pending if all(s is not b for b in batch)]
            try:
                if len(batch) == 1:
                    logits = self.fast.forward([batch[0].token], batch[0].cache)[None]
                else:
                    logits = self.fast.forward_batch([s.token for s in batch], [s.cache for s in batch])
                for s, row in zip(batch, logits):
                    s.logits = row
                self.steps += 1
                self.rows += len(batch)
                self.largest = max(self.largest, len(batch))
            except BaseException as exc:  # handed to every caller of this batch, which raises it
                log.exception("a batched decode step failed")
                for s in batch:
                    s.error = exc
            finally:
                for s in batch:
                    s.done.set()
