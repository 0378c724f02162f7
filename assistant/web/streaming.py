"""Streaming a turn to the web surface: one thread per turn (``stream_in_thread``) and the turns in
flight (``InFlight``), shared by the server, the OpenAI-compatible API and the chat page.

Knows the engine's events only as things to relay; nothing about HTTP, Gradio or the engine itself.
"""

from __future__ import annotations

import logging
import queue
import threading
import time
from typing import Any, Iterator

log = logging.getLogger("assistant.web.server")


class InFlight:
    """The cancel events of the turns being generated right now (UI and API), by owner."""

    def __init__(self) -> None:
        self._events: dict[threading.Event, str] = {}
        self._lock = threading.Lock()

    def add(self, cancel: threading.Event, owner: str = "") -> None:
        with self._lock:
            self._events[cancel] = owner

    def discard(self, cancel: threading.Event) -> None:
        with self._lock:
            self._events.pop(cancel, None)

    def __len__(self) -> int:
        with self._lock:
            return len(self._events)

    def stop(self, owner: str) -> int:
        """Stop the turns of one owner (the chat's Stop button); returns how many."""
        with self._lock:
            events = [e for e, o in self._events.items() if o == owner]
        for event in events:
            event.set()
        return len(events)

    def cancel_all(self, wait: float = 10.0) -> int:
        """Stop every turn in flight; the engine stores each as cancelled.  Returns how many were stopped."""
        with self._lock:
            events = list(self._events)
        for event in events:
            event.set()
        deadline = time.monotonic() + wait
        while len(self) and time.monotonic() < deadline:
            time.sleep(0.05)
        if events:
            log.info("shutdown: stopped %d turn(s) in flight (%d still running)", len(events), len(self))
        return len(events)


class _Raised:
    def __init__(self, exc: BaseException) -> None:
        self.exc = exc


_DONE = object()


def stream_in_thread(events: Iterator[Any], cancel: threading.Event, inflight: InFlight | None = None,
                     owner: str = "") -> Iterator[Any]:
    """Run an engine turn (a generator) to its end on one dedicated thread and relay its events.

    Torch's inference mode is thread-local, so a generation must not hop
    between the worker threads Gradio and Starlette resume generators on.  If
    the consumer leaves early (Stop, closed tab, dropped connection) the turn
    is cancelled and the engine still stores it; shutdown waits for that
    through ``inflight``.
    """
    relay: queue.Queue[Any] = queue.Queue()

    def work() -> None:
        try:
            for event in events:
                relay.put(event)
        except BaseException as exc:  # handed to the consumer, which re-raises it
            relay.put(_Raised(exc))
        finally:
            if inflight is not None:
                inflight.discard(cancel)
            relay.put(_DONE)

    if inflight is not None:
        inflight.add(cancel, owner)
    threading.Thread(target=work, name="turn", daemon=True).start()
    try:
        while True:
            item = relay.get()
            if item is _DONE:
                return
            if isinstance(item, _Raised):
                raise item.exc
            yield item
    finally:
        cancel.set()
