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
only turns "this token, this cache" into logits.  Prompts (prefill) and
speculative checks are not batched (they are compute-bound).  While no other
conversation decodes they run on the batcher's thread too (``run``): the
decoder's matrix products then always start their OpenMP threads from one
thread.  Started from several threads, each keeps its own team of OpenMP
threads, more threads than cores, and libgomp stops letting idle ones spin:
measured on 2 cores, a decode step of the 1.5B model took 65-76 ms on a second
thread against 50-53 ms where one thread ran every pass, its many small parallel
operations waiting on sleeping threads.  While others decode, a prompt runs on
its caller's thread on one core beside their steps: queued on the batcher's
thread it would hold every other conversation's stream up for as long as it
takes (6-7 s for a 700-token prompt on 2 cores without AMX).  Measured with 6
users at once (``bench/load.py``), p50 and p95 were those of the code before.

Knows nothing about tokens' meaning, sampling or conversations.
"""

from __future__ import annotations

import contextvars
import functools
import logging
import threading
import time
from dataclasses import dataclass, field
from typing import Any

log = logging.getLogger(__name__)


@functools.cache
def _openmp() -> Any:
    """libgomp as torch loaded it (``omp_set_num_threads`` and ``omp_get_max_threads`` act on the calling
    thread), or None where torch uses another threading library."""
    import ctypes

    try:
        return ctypes.CDLL("libgomp.so.1", mode=getattr(ctypes, "RTLD_NOLOAD", 4) | ctypes.RTLD_GLOBAL)
    except OSError:
        return None


def serial_here(threads: int = 1) -> int | None:
    """This thread's torch operations on ``threads`` OpenMP threads (its own setting, no other thread's);
    the setting it had, for ``serial_here(previous)`` to put back, or None where it cannot be set.  A
    conversation's own thread samples from the logits the batcher's thread computed: run there in
    parallel, that small work would keep a second team of OpenMP threads alive (see the module
    docstring), and every pass of the decoder would pay for it."""
    gomp = _openmp()
    if gomp is None:
        return None
    import torch

    torch.get_num_threads()  # torch sets each thread's count when it first uses it: after that, ours holds
    previous = gomp.omp_get_max_threads()
    gomp.omp_set_num_threads(threads)
    return previous


@dataclass
class _Call:
    fn: Any
    args: tuple
    context: contextvars.Context = field(default_factory=contextvars.copy_context)
    """The caller's context variables (``shared_weights.adapter_active``), which ``fn`` runs in."""
    done: threading.Event = field(default_factory=threading.Event)
    result: Any = None
    error: BaseException | None = None


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
        self.threads: int | None = None
        """OpenMP threads this batcher's thread runs on (``own_cores``); None: torch's setting there."""
        self._threads_set: int | None = None
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

    def own_cores(self) -> None:
        """From now on this batcher's thread is the only one of the process whose torch work runs on all
        cores (torch's thread count when called); every thread that starts torch work later runs it on
        one, and so does the calling thread.

        A second thread with a team of OpenMP threads (say, the thread that retrieved and understood a
        message, or a web server's worker) leaves more threads than cores, and libgomp then lets idle
        threads spin for a hundred rounds instead of 300,000 before they sleep: each of the decoder's
        few hundred parallel regions a step then waits for a sleeping thread to wake.  Measured on 2
        Zen 4 cores, a grounded answer of 83 tokens through the whole runtime: 54 ms a decode step with
        the message's work on 2 threads beside the batcher, 42.5 ms with it on one (``bench.lookup``'s
        setting; the step alone, nothing else run, took 43 ms).  The message's own work on one thread
        is small (language, intents, the query's embedding, whose engine has threads of its own).  Where
        torch's OpenMP is not libgomp (``serial_here`` cannot set one thread's count), nothing changes."""
        import torch

        if _openmp() is None:  # no libgomp to set the batcher's own thread count with: leave torch as it is
            return
        self.threads = torch.get_num_threads()
        torch.set_num_threads(1)

    def join(self) -> None:
        """A conversation starts decoding (after its prompt): later steps wait briefly for its steps."""
        with self._wake:
            self.active += 1

    def leave(self) -> None:
        with self._wake:
            self.active = max(0, self.active - 1)
            self._wake.notify()

    def quiet(self, own: bool = False) -> bool:
        """Whether nothing but the asking conversation (``own``: it has joined) is using the decoder."""
        with self._wake:
            return self.active - int(own) <= 0 and not self._pending

    def run(self, fn: Any, *args: Any, own: bool = False) -> Any:
        """A pass of the decoder (a prompt, a draft's check, Explain's): on this batcher's thread while
        nothing else uses the decoder (``quiet``), so that one thread starts all its OpenMP work; while
        other conversations decode, on the caller's thread on one core, beside their batched steps (on
        the batcher's thread it would hold their steps up for the whole prompt, and a second team of
        OpenMP threads on the caller's would slow every later step)."""
        if self.quiet(own) or threading.current_thread() is self._thread:
            return self.call(fn, *args)
        previous = serial_here()
        try:
            return fn(*args)
        finally:
            if previous is not None:
                serial_here(previous)

    def call(self, fn: Any, *args: Any) -> Any:
        """``fn(*args)`` run on the batcher's thread, between batched steps (a prompt's pass, a draft's
        check), in the caller's context variables; its result, or its exception raised here.  Called from
        that thread itself, it just runs."""
        if threading.current_thread() is self._thread:
            return fn(*args)
        item = _Call(fn, args)
        self._submit(item)
        if item.error is not None:
            raise item.error
        return item.result

    def _submit(self, item: Any) -> None:
        with self._wake:
            self._pending.append(item)
            if self._thread is None or not self._thread.is_alive():
                self._thread = threading.Thread(target=self._loop, name="decode-batcher", daemon=True)
                self._thread.start()
            self._wake.notify()
        item.done.wait()

    def step(self, token: int, cache: Any) -> Any:
        """Logits (vocab,) after ``token``, appended to ``cache``; blocks until its batch has run."""
        item = _Step(token, cache)
        self._submit(item)
        if item.error is not None:
            raise item.error
        return item.logits

    def _loop(self) -> None:
        while True:
            with self._wake:
                while not self._pending:
                    self._wake.wait()
                call = next((c for c in self._pending if isinstance(c, _Call)), None)
                if call is not None:
                    self._pending.remove(call)
            if self.threads is not None and self._threads_set != self.threads:
                serial_here(self.threads)  # this thread's own setting (own_cores)
                self._threads_set = self.threads
            if call is not None:
                try:
                    call.result = call.context.run(call.fn, *call.args)
                except BaseException as exc:  # raised again in the caller's thread
                    call.error = exc
                finally:
                    call.done.set()
                continue
            with self._wake:
                deadline = time.monotonic() + self.GATHER_SECONDS
                while len(self._pending) < min(self.active, self.max_batch) \
                        and not any(isinstance(c, _Call) for c in self._pending):
                    left = deadline - time.monotonic()
                    if left <= 0:
                        break
                    self._wake.wait(left)
                # one batch runs with or without the attached adapter (``FastCache.adapter``): the others wait
                steps = [s for s in self._pending if isinstance(s, _Step)]
                if not steps:
                    continue  # a call arrived while gathering: it runs first
                lora = getattr(steps[0].cache, "adapter", False)
                batch = [s for s in steps if getattr(s.cache, "adapter", False) == lora][: self.max_batch]
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
