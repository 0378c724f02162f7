"""What this CPU does fast, read from its feature flags where they decide.

The lean decoder picks its activation precision (``bf16_matmul_fast``) and how it attends one
query (``cpu_has_amx``) by the CPU: a flag, not a timing, so that a busy machine chooses as a
quiet one does.  Only where the flags do not decide is a product timed.

Knows nothing about models: it answers questions about the machine.
"""

from __future__ import annotations

import functools
import logging
from typing import Any

log = logging.getLogger(__name__)


@functools.cache
def cpu_flags(cpuinfo: str = "/proc/cpuinfo") -> frozenset[str] | None:
    """The CPU's feature flags as the Linux kernel lists them (``avx2``, ``avx512_bf16``, ``amx_bf16``…),
    read once per process; ``None`` where they cannot be read (not Linux)."""
    try:
        with open(cpuinfo, encoding="utf-8", errors="replace") as f:
            for line in f:
                if line.startswith("flags"):
                    return frozenset(line.partition(":")[2].split())
    except OSError:
        pass
    return None


@functools.cache
def bf16_matmul_fast(cpuinfo: str = "/proc/cpuinfo") -> bool:
    """Whether this CPU multiplies bf16 matrices about as fast as float32.  Read from its flags where
    they decide: yes with AMX or AVX-512 BF16, no without AVX-512 (on an AVX2-only CPU torch's bf16
    product ran 35x slower than float32, 2 cores, measured), so there prompts are multiplied in float32.
    Otherwise (AVX-512 without BF16; flags unreadable) timed once on a 64x512x512 product in both: a
    timing made on a busy machine can choose differently from a quiet one, so flags come first."""
    import time

    flags = cpu_flags(cpuinfo)
    if flags is not None and ("amx_bf16" in flags or "avx512_bf16" in flags):
        return True
    if flags is not None and "avx512f" not in flags:
        log.info("bf16 matrix products are slow on this CPU (no AVX-512); the lean decoder computes in float32")
        return False
    import torch

    a, b = torch.randn(64, 512), torch.randn(512, 512)
    ab, bb = a.bfloat16(), b.bfloat16()

    def best(x: Any, y: Any) -> float:
        torch.matmul(x, y)
        times = []
        for _ in range(3):
            start = time.perf_counter()
            torch.matmul(x, y)
            times.append(time.perf_counter() - start)
        return min(times)

    fast = best(ab, bb) < 3 * best(a, b)
    if not fast:
        log.info("bf16 matrix products are slow on this CPU; the lean decoder computes in float32")
    return fast


def cpu_has_amx(cpuinfo: str = "/proc/cpuinfo") -> bool:
    """Whether the CPU has AMX tiles for bf16 (Intel Sapphire Rapids and later), from its flags
    (``cpu_flags``); ``False`` where they cannot be read.  A flag, not a timing probe, so that a
    busy machine makes the same choice as a quiet one."""
    flags = cpu_flags(cpuinfo)
    return flags is not None and "amx_bf16" in flags


@functools.cache
def _libc() -> Any:
    """glibc, or None (another C library, another system)."""
    import ctypes

    try:
        libc = ctypes.CDLL("libc.so.6")
        libc.malloc_trim  # noqa: B018 (glibc's own)
    except (OSError, AttributeError):
        return None
    return libc


def give_back_freed_memory() -> bool:
    """Hand the memory the allocator holds freed back to the system (glibc's ``malloc_trim``); whether it
    could.  Called when a model has loaded and when a generation or an explanation ends.

    glibc raises its mapping threshold each time a mapped block is freed (up to 32 MB), so after the first
    few, a decoder's transient tensors (a prompt's activations, a row of logits over a 262k vocabulary)
    come from the heaps, and freed heap memory mostly stays with the process.  A fixed low threshold
    would give each block back at once, but then every large tensor is mapped and faulted in anew:
    measured on the default model (2 cores), prefill of 700 tokens 6.9-7.8 s against 4.8-5.1 s, decode
    15 tokens/s against 18.  A trim after the work costs 2-7 ms and nothing per step
    (``bench/results/memory.md``)."""
    libc = _libc()
    if libc is None:
        return False
    libc.malloc_trim(0)
    return True
