"""The decode step's 4-bit matrix products as integer dot products (``q4kernel.c``), built for this machine.

torch's ``_weight_int4pack_mm_for_cpu`` turns every 4-bit value into a float before multiplying: on 2
cores a decode step of the 1.5B model spent ~48 ms there, computing, not reading.  ``q4kernel.c`` reads
the same packed bytes (nothing is re-packed or stored twice) and multiplies them with the activation
written as two int8 values per column (as precise as torch's bf16 activation; see the C file), with
AVX-512 VNNI's byte dot products, on 512-bit registers where the CPU also has AVX-512 VBMI (the same
result bit for bit as the 256-bit build; a tenth faster from four rows on).  Measured on 2 Zen 4 cores,
the 113 products of one decode step (cold caches; ``bench/results/kernel.md``): 26.5 ms against 44.8 ms
for one row, 56.7 against 76.6 for four, 111 against 151 for eight (``bench/speed.py`` has the decode figures).
The library also holds the decode steps' one-query attention (``Rows``: every row of a batch in one call, in
float32 from the bf16 cache), for the same reason: torch spent longer dispatching its small operations than
computing them.

The C file is compiled once per machine by its own compiler (``cc``, or ``$CC``), for its own
instructions (``-march=native``), into ``ASSISTANT_HOME/kernels/`` under a name that holds the
source's hash and the CPU's flags, and loaded with ctypes (under a second: nothing to wait for).  Its
OpenMP threads are torch's: the library asks for ``libgomp.so.1``, which torch has already loaded.
Where there is no compiler, the build fails, the CPU lacks AVX-512 VNNI, or its result disagrees with
torch's kernel on a probe matrix (as it does where torch packs 4-bit weights in blocks of 32: AVX2-only
CPUs, ``int4.kernel_block``), ``library`` is None with one log line, and ``int4.Weight`` keeps using
torch's kernel.  ``ASSISTANT_INT8_DOT=off`` turns it off.

Knows nothing about models: it takes and returns tensors.
"""

from __future__ import annotations

import ctypes
import functools
import hashlib
import logging
import os
import platform
import shutil
import subprocess
import tempfile
import time
from pathlib import Path
from typing import Any

log = logging.getLogger(__name__)

SOURCE = Path(__file__).with_name("q4kernel.c")
FLAGS = ["-O3", "-march=native", "-fPIC", "-shared", "-fopenmp"]
BLOCK = 64
"""The packed layout the kernel reads: torch's on a CPU with AVX-512 (``int4.kernel_block``)."""
ENABLED = True
"""Whether ``int4.Weight`` uses the kernel where it is built (benchmarks switch it to compare in one
process; ``ASSISTANT_INT8_DOT=off`` keeps it from being built at all)."""
ATTEND = True
"""Whether the lean decoder's one-query attention uses ``Rows.attend`` where the library is built (a
benchmark switch, as ``ENABLED``)."""
PROBE_TOLERANCE = 0.02
"""Relative difference to torch's kernel on the probe matrix above which the build is not used (both
differ from the exact product by ~0.004 on random data: torch's bf16 activation, the weights' bf16
scales)."""


def _compiler() -> str | None:
    return os.environ.get("CC") or shutil.which("cc") or shutil.which("gcc")


def _target(compiler: str) -> Path:
    """Where this source, compiled by this compiler for this CPU, lives."""
    from ..config import assistant_home
    from .cpu import cpu_flags

    key = hashlib.sha256()
    key.update(SOURCE.read_bytes())
    key.update(" ".join([compiler, *FLAGS, platform.machine()]).encode())
    key.update(" ".join(sorted(cpu_flags() or ())).encode())
    return assistant_home() / "kernels" / f"q4kernel-{key.hexdigest()[:16]}.so"


def build(target: Path, compiler: str, extra: tuple[str, ...] = ()) -> None:
    """Compile ``SOURCE`` into ``target`` (written beside it, then renamed: another process building the
    same file at once finds either none or a whole one), with ``extra`` compiler flags (the tests build
    the 256-bit products with ``-DQ4_NARROW``).  Raises ``RuntimeError`` with the compiler's message
    when it fails."""
    target.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(suffix=".so", dir=target.parent)
    os.close(fd)
    try:
        done = subprocess.run([compiler, *FLAGS, *extra, "-o", tmp, str(SOURCE), "-lm"], capture_output=True, text=True,
                              timeout=120)
        if done.returncode:
            raise RuntimeError((done.stderr or done.stdout).strip()[-600:])
        os.replace(tmp, target)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)


def _load(path: Path) -> Any:
    lib = ctypes.CDLL(str(path))
    ptr, i32 = ctypes.c_void_p, ctypes.c_int
    lib.q4_mm.argtypes = [ptr, i32, i32, ptr, ptr, i32, ptr, i32]
    lib.q4_mm.restype = i32
    lib.q4_features.restype = i32
    lib.q4_attend.argtypes = [i32, i32, i32, i32, ctypes.c_float, ptr, ptr, ptr, ptr, ptr, i32, i32, ptr, i32]
    lib.q4_attend.restype = i32
    lib.q4_dequant_t.argtypes = [ptr, ptr, i32, i32, i32, i32, ptr, i32]
    lib.q4_dequant_t.restype = i32
    return lib


@functools.cache
def library() -> Any:
    """The compiled kernel for this machine (building it the first time), or None where it cannot be
    used (see the module docstring); says why once, in the log."""
    if os.environ.get("ASSISTANT_INT8_DOT", "").lower() in ("off", "0", "false", "no"):
        return None
    if platform.machine() not in ("x86_64", "AMD64"):
        return None
    import torch  # noqa: F401  (loads libgomp.so.1 first, so that the kernel shares torch's threads)

    compiler = _compiler()
    if compiler is None:
        log.info("no C compiler found: decoding uses torch's 4-bit kernel (slower)")
        return None
    try:
        target = _target(compiler)
        lib = None
        if target.exists():
            try:
                lib = _load(target)
            except OSError as exc:  # a damaged file (say, written to a full disk): built again
                log.info("rebuilding %s, which could not be loaded: %s", target, exc)
        if lib is None:
            start = time.perf_counter()
            build(target, compiler)
            lib = _load(target)
            log.info("built the int8 dot-product kernel for this CPU (%s-bit products) in %.1f s: %s",
                     512 if lib.q4_features() > 1 else 256, time.perf_counter() - start, target)
        if lib.q4_features() < 1:
            log.info("this CPU has no AVX-512 VNNI: decoding uses torch's 4-bit kernel")
            return None
    except (OSError, RuntimeError, subprocess.SubprocessError) as exc:
        log.warning("could not build the int8 dot-product kernel (decoding uses torch's 4-bit kernel): %s", exc)
        return None
    difference = _probe(lib)
    if not difference < PROBE_TOLERANCE:
        log.warning("the int8 dot-product kernel disagrees with torch's 4-bit kernel on a probe matrix (relative "
                    "difference %.3g): decoding uses torch's kernel", difference)
        return None
    return lib


def _probe(lib: Any) -> float:
    """Relative difference between this kernel and torch's on a random 128 x 256 matrix, 3 rows, packed by
    torch for this CPU (inf where torch cannot pack or multiply it; on a CPU whose torch packs in blocks of
    32 the layouts differ, and so do the results)."""
    import torch

    gen = torch.Generator().manual_seed(0)
    rows, cols = 128, 256
    try:
        packed = torch.ops.aten._convert_weight_to_int4pack_for_cpu(
            torch.randint(0, 16, (rows, cols), dtype=torch.int32, generator=gen), 1).contiguous()
        scale = torch.rand(cols // 32, rows, generator=gen) * 0.1 + 0.01
        scale_zero = torch.stack([scale, torch.randn(cols // 32, rows, generator=gen) * 0.1], -1).to(
            torch.bfloat16).contiguous()
        x = torch.randn(3, cols, generator=gen)
        theirs = torch.ops.aten._weight_int4pack_mm_for_cpu(x.bfloat16(), packed, 32, scale_zero).float()
    except (RuntimeError, AttributeError):
        return float("inf")
    ours = _mm(lib, x, packed, scale_zero, rows)
    return float((ours - theirs).norm() / theirs.norm())


def _mm(lib: Any, x: Any, packed: Any, scale_zero: Any, out_features: int) -> Any:
    import torch

    x = x.to(torch.float32).contiguous()
    rows, k = x.shape
    y = torch.empty((rows, out_features), dtype=torch.float32)
    code = lib.q4_mm(x.data_ptr(), rows, k, packed.data_ptr(), scale_zero.data_ptr(), out_features, y.data_ptr(),
                     torch.get_num_threads())
    if code:
        raise RuntimeError(f"q4_mm failed ({code}) for {rows} x {k} by {out_features} x {k}")
    return y


def mm(x: Any, packed: Any, scale_zero: Any, out_features: int) -> Any:
    """``x`` (rows, in) @ W.T as float32 (rows, out) for W held as ``int4.Weight`` holds it in the B = 64
    layout (``packed`` uint8 (out / 64, in, 32) contiguous, ``scale_zero`` bf16 (in / 32, out, 2)
    contiguous).  Only where ``library()`` is not None."""
    return _mm(library(), x, packed, scale_zero, out_features)


class Rows:
    """The caches of the rows of one decode pass, for ``attend``: row r reads ``keys[r]`` / ``values[r]``
    (bf16, contiguous, (layers, kv heads, capacity, dim)) up to position ``stops[r]`` (excluded).  Built
    once a pass; the tensors must not be reallocated while it is used."""

    def __init__(self, keys: list[Any], values: list[Any], stops: list[int]) -> None:
        import torch

        self.keys, self.values = keys, values  # kept alive while the addresses below are used
        self.kbase = torch.tensor([k.data_ptr() for k in keys], dtype=torch.int64)
        self.vbase = torch.tensor([v.data_ptr() for v in values], dtype=torch.int64)
        self.cap = torch.tensor([k.shape[2] for k in keys], dtype=torch.int64)
        self.stops = torch.tensor(stops, dtype=torch.int64)

    def attend(self, q: Any, layer: int, window: int, scale: float) -> Any:
        """Attention of query row r of ``q`` (rows, heads, dim) bf16 over row r's keys of ``layer`` (the
        last ``window`` of them; 0: all): (rows, heads, dim) bf16."""
        import torch

        lib = library()
        q = q.contiguous()
        rows, heads, dim = q.shape
        out = torch.empty_like(q)
        kv = self.keys[0].shape[1]
        code = lib.q4_attend(rows, heads, kv, dim, scale, q.data_ptr(), self.kbase.data_ptr(),
                             self.vbase.data_ptr(), self.cap.data_ptr(), self.stops.data_ptr(), layer, window,
                             out.data_ptr(), torch.get_num_threads())
        if code:
            raise RuntimeError(f"q4_attend failed ({code}) for {rows} rows of {heads} heads of {dim}")
        return out


def attends(dtype: Any, head_dim: int) -> bool:
    """Whether ``Rows.attend`` serves a cache of ``dtype`` and ``head_dim`` here."""
    import torch

    return ATTEND and dtype == torch.bfloat16 and head_dim % 16 == 0 and library() is not None


def dequant_t(packed: Any, scale_zero: Any, in_features: int, out_features: int, start: int, stop: int) -> Any:
    """Output rows ``start:stop`` (multiples of 64) of the matrix ``packed`` / ``scale_zero`` hold (the
    B = 64 layout, contiguous), transposed and in bf16: (in, rows), bit for bit
    ``int4.Weight.dequantize_t``'s torch result, in one pass.  Only where ``library()`` is not None."""
    import torch

    out = torch.empty((in_features, stop - start), dtype=torch.bfloat16)
    code = library().q4_dequant_t(packed.data_ptr(), scale_zero.data_ptr(), in_features, out_features, start, stop,
                                  out.data_ptr(), torch.get_num_threads())
    if code:
        raise RuntimeError(f"q4_dequant_t failed ({code}) for rows {start}:{stop} of {out_features} x {in_features}")
    return out
