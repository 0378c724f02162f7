"""One progress line on stderr for a slow step that happens once: assembling the model from its
packages, packing its cache, building the default index, training the intents.

The library calls ``step(...)`` around such a step and logs it at INFO as it always did.  Only the
edge where a person watches a terminal (``assistant chat`` and the other commands, ``assistant
serve``) calls ``enable()``: then the step also draws a tqdm line on stderr, and nothing on stdout,
which stays the answers' own.  Tests and programs that import the package see no bar.

On a stream that is not a terminal (stderr redirected to a file) a bar's carriage returns would
litter the file, so the step writes one line when it starts and one when it ends instead.
"""

from __future__ import annotations

import logging
import sys
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import TextIO

_stream: TextIO | None = None


def enable(stream: TextIO | None = None) -> None:
    """Draw progress lines on ``stream`` (default: stderr) from now on."""
    global _stream
    _stream = stream if stream is not None else sys.stderr


def disable() -> None:
    global _stream
    _stream = None


def enabled() -> bool:
    return _stream is not None


@contextmanager
def step(desc: str, *, total: int | None = None, unit: str = "it", unit_scale: bool = False,
         log: logging.Logger | None = None, detail: str = "") -> Iterator[Callable[[int], None]]:
    """Run a first-time step under one progress line; yields ``advance(n)`` for steps with a ``total``.

    ``desc`` is the short line a user reads ("packing the model (once)"); ``detail`` (paths, sizes)
    goes to the log only."""
    (log or logging.getLogger("assistant")).info("%s%s", desc, f": {detail}" if detail else "")
    stream = _stream
    if stream is None:
        yield lambda n=1: None
        return
    started = time.perf_counter()
    if not _isatty(stream):
        print(f"{desc} …", file=stream, flush=True)
        outcome = "failed after"
        try:
            yield lambda n=1: None
            outcome = "done in"
        finally:
            print(f"{desc}: {outcome} {time.perf_counter() - started:.0f} s", file=stream, flush=True)
        return
    from tqdm import tqdm

    fmt = None if total else "{desc}: {elapsed}"
    bar = tqdm(total=total, desc=desc, unit=unit, unit_scale=unit_scale, file=stream, leave=True,
               dynamic_ncols=True, bar_format=fmt, mininterval=0.5)
    stop = threading.Event()
    if not total:  # nothing advances the line: keep its clock moving
        threading.Thread(target=_tick, args=(bar, stop), daemon=True, name="progress-tick").start()
    try:
        yield bar.update
    finally:
        stop.set()
        bar.refresh()
        bar.close()


def _tick(bar, stop: threading.Event) -> None:
    while not stop.wait(1.0):
        bar.refresh()


def _isatty(stream: TextIO) -> bool:
    try:
        return stream.isatty()
    except (AttributeError, ValueError):
        return False
