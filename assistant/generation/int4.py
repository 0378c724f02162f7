"""One weight matrix kept once, in the format that serves every call shape.

``Weight`` holds ``x @ W.T`` (+ bias) for one matrix.  In ``int4`` it keeps only
4-bit groups of 32 input columns, each with a scale and a zero, packed for
``torch._weight_int4pack_mm_for_cpu`` (bf16 activations): a quarter of bf16's
bytes, and a decode step is bound by reading them.  A prompt (many rows at
once) de-quantises the matrix to bf16 for the duration of that one product,
where bf16 matrix products (AMX where the CPU has it) win; an embedding lookup
de-quantises only the rows it needs, so a tied embedding and output layer share
the same bytes.  ``bfloat16`` / ``float32`` keep one dense copy instead.

A layer's matrix its file holds at 6 bits or more (half the ``ffn_down`` and
``attn_v`` matrices of a Q4_K_M file are Q6_K; Q8_0, F16) is kept in 8-bit rows
instead (``from_rows8``: int8 values, one scale a row, for
``torch._weight_int8pack_mm``), and a finer output layer re-scores its best
tokens (``RefinedHead``): packed into 4-bit groups, with the embedding as output
layer, the 1.5B model's next-token distribution sat 7x further from the file's
own (``bench/fidelity.py``).  Such a weight still belongs to the ``int4``
format: the lean decoder's quantized one.

The packed layout (read off the kernel, pinned by a test) depends on the CPU:
torch packs rows in blocks of B = 64 where it has AVX-512 and of B = 32 where
it has only AVX2 (``kernel_block`` probes which, once).  A (N, K) matrix of
4-bit values becomes uint8 (N / B, K, B / 2) whose byte [b, k, j] holds row
B b + j in its low nibble and row B b + B / 2 + j in its high nibble; the
kernel computes ``(q - 8) * scale + zero`` per group.  Packed bytes saved on a
machine of the other layout are re-packed when loaded (``from_state``).

Knows nothing about models: it takes and returns tensors.
"""

from __future__ import annotations

import functools
import logging
from typing import Any, Literal

from . import q4kernel
from .cpu import bf16_matmul_fast

log = logging.getLogger(__name__)

WeightFormat = Literal["int4", "bfloat16", "float32"]
GROUP = 32
_ROW_BLOCK = 64  # output rows of a packable matrix come in multiples of this (either kernel layout)
DEQUANT_ROWS = 48
"""A product with more input rows than this de-quantises the matrix to bf16 first (measured on 2 cores:
the 4-bit kernel's cost grows with the rows, de-quantising costs the same for any number of rows)."""
DEQUANT_TILE = 6 << 20
"""Bytes of bf16 weights de-quantised at a time for a prompt's product (2048 output rows of a
1536-column matrix, 320 of an 8960-column one): the tile is still in the core's cache (2 MB L2 a core
on the Xeon measured) when the product reads it.  Measured there, 400 prompt rows: the 17920 x 1536
product with its de-quantisation 45 ms in 2048-row tiles against 53 ms in 8960-row ones and 64 ms in
256-row ones; prompts are de-quantisation-bound there, AMX multiplies 400 rows in 14 ms."""


def _torch() -> Any:
    import torch

    return torch


def int4_available() -> bool:
    return kernel_block() > 0


@functools.cache
def kernel_block() -> int:
    """Rows per packed block of this CPU's 4-bit kernel (64 or 32; 0: no kernel, or a layout this
    module does not know), read off a probe matrix once per process."""
    torch = _torch()
    if not hasattr(torch.ops.aten, "_weight_int4pack_mm_for_cpu"):
        return 0
    gen = torch.Generator().manual_seed(0)
    q = torch.randint(0, 16, (128, 64), dtype=torch.int32, generator=gen)
    try:
        flat = torch.ops.aten._convert_weight_to_int4pack_for_cpu(q, 1)
    except RuntimeError:
        return 0
    for block in (64, 32):
        if flat.numel() == q.numel() // 2 and torch.equal(_unpack(flat.reshape(128 // block, 64, block // 2)), q.to(torch.uint8)):
            return block
    log.warning("the CPU's 4-bit kernel packs weights in a layout this version does not know; "
                "the lean decoder keeps bf16 weights instead")
    return 0


def _unpack(packed: Any) -> Any:
    """The 4-bit values (N, K) uint8 of ``packed`` (N / B, K, B / 2), whichever block B it was packed in."""
    torch = _torch()
    q = torch.cat([packed & 15, packed >> 4], dim=2).transpose(1, 2)  # (N / B, B, K): row B b + j
    return q.reshape(-1, packed.shape[1])


def _pack(q: Any) -> Any:
    """``q`` (N, K) of values 0..15 in this CPU's kernel layout, uint8 (N / B, K, B / 2)."""
    torch = _torch()
    out, inp = q.shape
    block = kernel_block()
    packed = torch.ops.aten._convert_weight_to_int4pack_for_cpu(q.to(torch.int32).contiguous(), 1)
    return packed.reshape(out // block, inp, block // 2)


def packable(out_features: int, in_features: int) -> bool:
    return out_features % _ROW_BLOCK == 0 and in_features % GROUP == 0 and int4_available()


def quantize_groups(w: Any) -> tuple[Any, Any, Any]:
    """Asymmetric 4-bit groups of ``w`` (out, in): (q int32 (out, in) in 0..15, scale, low), scale and
    low (out, in / 32) float32, so that ``w ≈ q * scale + low``."""
    torch = _torch()
    out, inp = w.shape
    groups = w.float().reshape(out, -1, GROUP)  # (out, in / 32, 32)
    low, high = groups.amin(-1), groups.amax(-1)
    scale = ((high - low) / 15).clamp(min=1e-8)
    q = ((groups - low[..., None]) / scale[..., None]).round().clamp(0, 15).to(torch.int32).reshape(out, inp)
    return q, scale, low


class Weight:
    """``x @ W.T + b`` for one matrix, stored once (see the module docstring)."""

    def __init__(self, out_features: int, in_features: int, fmt: WeightFormat, *, packed: Any = None,
                 scale_zero: Any = None, dense: Any = None, bias: Any = None, rows8: Any = None,
                 row_scale: Any = None) -> None:
        self.out_features, self.in_features, self.fmt = out_features, in_features, fmt
        self.packed = packed
        """uint8 (out / B, in, B / 2) in the kernel's layout (see the module docstring), or None:
        ``dense`` holds the weight."""
        self.scale_zero = scale_zero
        """bf16 (in / 32, out, 2): per group the scale and the value of q = 8."""
        self.dense = dense
        self.rows8 = rows8
        """int8 (out, in), or None: 8-bit rows, ``w = rows8 * row_scale`` (``from_rows8``)."""
        self.row_scale = row_scale
        """bf16 (out,): each row's scale where ``rows8`` holds the weight."""
        self.bias = bias
        self.parent: tuple["Weight", int, int] | None = None
        """(weight, start, stop) when this is ``rows_slice`` of it: ``concat`` of all its slices is it."""

    # ---- construction ---------------------------------------------------------------------

    @classmethod
    def from_float(cls, w: Any, fmt: WeightFormat, bias: Any = None) -> "Weight":
        """From a float weight (out, in); ``int4`` falls back to bf16 where the shape cannot be packed."""
        torch = _torch()
        out, inp = w.shape
        bias = None if bias is None else bias.detach().float().clone()
        if fmt == "int4" and packable(out, inp):
            q, scale, low = quantize_groups(w.detach())
            return cls.from_groups(q, scale, low, bias=bias)
        # int4 where a matrix cannot be packed: bf16, or float32 where bf16 products are slow
        dense = torch.float32 if fmt == "float32" or fmt == "int4" and not bf16_matmul_fast() else torch.bfloat16
        return cls(out, inp, fmt, dense=w.detach().to(dense).contiguous(), bias=bias)

    @classmethod
    def from_rows8(cls, w: Any, bias: Any = None) -> "Weight":
        """From a float weight (out, in) as symmetric 8-bit rows: for a matrix its file holds at 6 bits or
        more (see the module docstring).  A matrix whose columns are not groups of 32 stays dense, as
        ``from_float`` keeps it (torch's 8-bit kernel crashed on 70 columns)."""
        torch = _torch()
        out, inp = w.shape
        if inp % GROUP:
            return cls.from_float(w, "int4", bias=bias)
        w = w.detach().float()
        scale = (w.abs().amax(1) / 127).clamp(min=1e-12).to(torch.bfloat16)
        q = (w / scale.float()[:, None]).round().clamp(-127, 127).to(torch.int8).contiguous()
        bias = None if bias is None else bias.detach().float().clone()
        return cls(out, inp, "int4", rows8=q, row_scale=scale, bias=bias)

    @property
    def quantized(self) -> bool:
        """Held in 4-bit groups or 8-bit rows (not a dense copy)."""
        return self.packed is not None or self.rows8 is not None

    def like(self, w: Any, bias: Any = None) -> "Weight":
        """Float weight ``w`` (this one's shape) stored as this one is: 8-bit rows stay 8-bit rows."""
        return Weight.from_rows8(w, bias) if self.rows8 is not None else Weight.from_float(w, self.fmt, bias=bias)

    @classmethod
    def from_groups(cls, q: Any, scale: Any, low: Any, bias: Any = None) -> "Weight":
        """From 4-bit values ``q`` (out, in) with ``w = q * scale + low`` per group of 32 (scale, low:
        (out, in / 32)) — GGUF's Q4_K and Q4_1 blocks are exactly this, so they pack without loss."""
        torch = _torch()
        out, inp = q.shape
        zero = low.float() + 8 * scale.float()  # the kernel computes (q - 8) * scale + zero
        scale_zero = torch.stack([scale.float(), zero], -1).transpose(0, 1).contiguous().to(torch.bfloat16)
        return cls(out, inp, "int4", packed=_pack(q), scale_zero=scale_zero, bias=bias)

    @classmethod
    def concat(cls, parts: list["Weight"]) -> "Weight":
        """The matrices of ``parts`` stacked by output rows (q, k, v into one product); where they are the
        ``rows_slice``s of one matrix, in order, that matrix itself (a checkpoint that stores them fused)."""
        torch = _torch()
        first = parts[0]
        spans = [p.parent for p in parts]
        if all(s is not None and s[0] is spans[0][0] for s in spans) and spans[0][1] == 0 \
                and spans[-1][2] == spans[0][0].out_features and all(a[2] == b[1] for a, b in zip(spans, spans[1:])):
            return spans[0][0]  # the slices of one stored matrix, in order: that matrix, no copy
        biases = [p.bias for p in parts]
        bias = None if all(b is None for b in biases) else torch.cat(
            [b if b is not None else torch.zeros(p.out_features) for b, p in zip(biases, parts)])
        out = sum(p.out_features for p in parts)
        if all(p.quantized for p in parts) and any(p.rows8 is not None for p in parts):
            # 8-bit rows beside 4-bit groups (a layer whose v is stored finer than q and k): all 8-bit
            # rows, which hold the 4-bit values closely; the product reads a few more bytes
            rows8 = [p if p.rows8 is not None else Weight.from_rows8(p.dequantize()) for p in parts]
            return cls(out, first.in_features, "int4", rows8=torch.cat([p.rows8 for p in rows8]),
                       row_scale=torch.cat([p.row_scale for p in rows8]), bias=bias)
        if all(p.packed is not None for p in parts):
            return cls(out, first.in_features, "int4", packed=torch.cat([p.packed for p in parts]),
                       scale_zero=torch.cat([p.scale_zero for p in parts], dim=1), bias=bias)
        dense = torch.cat([p.dequantize() for p in parts]).to(first.dtype)
        return cls(out, first.in_features, first.fmt, dense=dense, bias=bias)

    def rows_slice(self, start: int, stop: int) -> "Weight":
        """Output rows ``start:stop`` as a Weight over the same bytes (the packed rows are a view; only
        the small scale table is copied).  Both ends must be multiples of 64 for a packed weight."""
        bias = None if self.bias is None else self.bias[start:stop]
        if self.rows8 is not None:
            part = Weight(stop - start, self.in_features, self.fmt, rows8=self.rows8[start:stop],
                          row_scale=self.row_scale[start:stop], bias=bias)
        elif self.packed is None:
            part = Weight(stop - start, self.in_features, self.fmt, dense=self.dense[start:stop], bias=bias)
        else:
            assert start % _ROW_BLOCK == 0 and stop % _ROW_BLOCK == 0, (start, stop)
            block = self.block
            part = Weight(stop - start, self.in_features, "int4",
                          packed=self.packed[start // block: stop // block],
                          scale_zero=self.scale_zero[:, start:stop].contiguous(), bias=bias)
        part.parent = (self, start, stop)
        return part

    # ---- use ------------------------------------------------------------------------------

    @property
    def block(self) -> int:
        """Rows per packed block (``kernel_block`` of the CPU that packed it); 0 for a dense weight."""
        return 0 if self.packed is None else 2 * self.packed.shape[2]

    @property
    def dtype(self) -> Any:
        torch = _torch()
        return self.dense.dtype if self.dense is not None else torch.bfloat16

    def _rows8_float(self, start: int = 0, stop: int | None = None, dtype: Any = None) -> Any:
        """Rows ``start:stop`` of an 8-bit weight, de-quantised to ``dtype`` (default bf16)."""
        torch = _torch()
        dtype = dtype or torch.bfloat16
        return self.rows8[start:stop].to(dtype) * self.row_scale[start:stop, None].to(dtype)

    def dequantize(self) -> Any:
        """The whole matrix (out, in) in bf16 (dense formats: the stored copy itself)."""
        if self.rows8 is not None:
            return self._rows8_float()
        if self.packed is None:
            return self.dense
        torch = _torch()
        q = _unpack(self.packed).reshape(self.out_features, self.in_features // GROUP, GROUP).to(torch.bfloat16)
        scale = self.scale_zero[..., 0].t()[..., None]  # (out, in / 32, 1)
        zero = (self.scale_zero[..., 1].t() - 8 * scale[..., 0])[..., None]
        return torch.addcmul(zero, q, scale).reshape(self.out_features, self.in_features)

    def dequantize_t(self, start: int = 0, stop: int | None = None, dtype: Any = None) -> Any:
        """Output rows ``start:stop`` of the matrix, transposed: (in, rows) in ``dtype`` (default bf16),
        ready for ``x @ W.T``.

        Written straight from the packed bytes in this layout (no transposing copy afterwards): byte
        [b, k, j] holds rows B b + j and B b + B / 2 + j, so nibble planes land in column blocks of B.
        Three passes: the nibbles into uint8 planes, one conversion, one fused ``q * scale + low``
        (measured on 2 Xeon cores, 17920 x 1536: 54 ms against 92 ms for the same in five passes)."""
        torch = _torch()
        stop = self.out_features if stop is None else stop
        dtype = dtype or torch.bfloat16
        if self.rows8 is not None:
            return self._rows8_float(start, stop, dtype).t()
        if dtype == torch.bfloat16 and self._int8_dot() and start % q4kernel.BLOCK == 0 and stop % q4kernel.BLOCK == 0:
            # the same bits in one pass of the kernel library (torch's three passes: ~8% of a prompt's time)
            return q4kernel.dequant_t(self.packed, self.scale_zero, self.in_features, self.out_features, start, stop)
        block = self.block
        half = block // 2
        p = self.packed[start // block: stop // block].permute(1, 0, 2)  # (in, blocks, B / 2), a view
        n, k = stop - start, self.in_features
        q = torch.empty((k, p.shape[1], block), dtype=torch.uint8)  # (in, blocks, B)
        torch.bitwise_and(p, 15, out=q[:, :, :half])
        torch.bitwise_right_shift(p, 4, out=q[:, :, half:])
        sz = self.scale_zero[:, start:stop].float()  # (in / 32, rows, 2)
        scale = sz[..., 0][:, None].to(dtype)  # (in / 32, 1, rows)
        low = (sz[..., 1] - 8 * sz[..., 0])[:, None].to(dtype)  # the kernel's (q - 8) * scale + zero
        w = q.view(k // GROUP, GROUP, n).to(dtype)
        return torch.addcmul(low, w, scale, out=w).view(k, n)

    def rows(self, ids: Any) -> Any:
        """Rows ``ids`` of the matrix (an embedding lookup), (len(ids), in), in the weight's dtype."""
        torch = _torch()
        if self.rows8 is not None:
            ids = torch.as_tensor(ids, dtype=torch.long)
            return self.rows8[ids].to(torch.bfloat16) * self.row_scale[ids, None]
        if self.packed is None:
            return self.dense[ids]
        ids = torch.as_tensor(ids, dtype=torch.long)
        half = self.block // 2
        block, j = ids // self.block, ids % self.block
        byte = self.packed[block, :, j % half]  # (n, in)
        q = torch.where((j < half)[:, None], byte & 15, byte >> 4).to(torch.bfloat16)
        sz = self.scale_zero[:, ids].transpose(0, 1)  # (n, in / 32, 2)
        scale = sz[..., :1]
        zero = sz[..., 1:] - 8 * scale  # as ``dequantize`` computes it, so both give the same bits
        return torch.addcmul(zero, q.reshape(len(ids), -1, GROUP), scale).reshape(len(ids), self.in_features)

    def __call__(self, x: Any) -> Any:
        torch = _torch()
        F = torch.nn.functional
        if self.packed is None and self.rows8 is None:
            out = F.linear(x.to(self.dense.dtype), self.dense)
        else:
            flat = x.reshape(-1, self.in_features)
            if flat.shape[0] <= DEQUANT_ROWS and self.rows8 is not None:
                out = torch.ops.aten._weight_int8pack_mm(flat.to(torch.bfloat16).contiguous(), self.rows8,
                                                         self.row_scale).to(x.dtype)
            elif flat.shape[0] <= DEQUANT_ROWS and self._int8_dot():
                out = q4kernel.mm(flat.to(torch.bfloat16), self.packed, self.scale_zero, self.out_features).to(x.dtype)
            elif flat.shape[0] <= DEQUANT_ROWS:
                out = torch.ops.aten._weight_int4pack_mm_for_cpu(flat.to(torch.bfloat16),
                                                                 self.packed.reshape(-1, self.in_features // 2),
                                                                 GROUP, self.scale_zero).to(x.dtype)
            else:  # a prompt: de-quantise a chunk of rows at a time; products in x's dtype (bf16 or float32)
                dtype = torch.float32 if x.dtype == torch.float32 else torch.bfloat16
                flat = flat.to(dtype)
                out = torch.empty((flat.shape[0], self.out_features), dtype=dtype)
                rows = max(_ROW_BLOCK, DEQUANT_TILE // (2 * self.in_features) // _ROW_BLOCK * _ROW_BLOCK)
                for start in range(0, self.out_features, rows):
                    stop = min(start + rows, self.out_features)
                    torch.matmul(flat, self.dequantize_t(start, stop, dtype), out=out[:, start:stop])
            out = out.reshape(*x.shape[:-1], self.out_features)
        if self.bias is not None:
            out = out + self.bias.to(out.dtype)
        return out

    def _int8_dot(self) -> bool:
        """Whether a decode-sized product goes through ``q4kernel`` (int8 dot products over these same
        bytes) rather than torch's kernel: where it is built for this CPU and the bytes are laid out
        as it reads them."""
        return (q4kernel.ENABLED and q4kernel.library() is not None and self.block == q4kernel.BLOCK
                and self.packed.is_contiguous() and self.scale_zero.is_contiguous())

    STATE_PARTS = ("packed", "scale_zero", "dense", "bias", "rows8", "row_scale")
    """The entries ``state`` may write under a prefix."""

    @staticmethod
    def stored_quantized(tensors: dict[str, Any], prefix: str) -> bool:
        """Whether ``tensors`` hold a quantized ``Weight.state`` under ``prefix``."""
        return f"{prefix}.packed" in tensors or f"{prefix}.rows8" in tensors

    def state(self, prefix: str) -> dict[str, Any]:
        """Tensors to save (safetensors) under ``prefix``; ``Weight.from_state`` reads them back."""
        parts = {name: getattr(self, name) for name in self.STATE_PARTS}
        return {f"{prefix}.{k}": v.contiguous() for k, v in parts.items() if v is not None}

    @classmethod
    def from_state(cls, tensors: dict[str, Any], prefix: str, fmt: WeightFormat) -> "Weight":
        packed = tensors.get(f"{prefix}.packed")
        bias = tensors.get(f"{prefix}.bias")
        if packed is not None:
            sz = tensors[f"{prefix}.scale_zero"]
            if 2 * packed.shape[2] != kernel_block():  # saved on a CPU of the other kernel layout
                if not int4_available():
                    raise ValueError("int4 weights need torch's 4-bit CPU kernel, which this machine lacks")
                packed = _pack(_unpack(packed))
            return cls(sz.shape[1], packed.shape[1], "int4", packed=packed, scale_zero=sz, bias=bias)
        rows8 = tensors.get(f"{prefix}.rows8")
        if rows8 is not None:
            return cls(rows8.shape[0], rows8.shape[1], "int4", rows8=rows8, row_scale=tensors[f"{prefix}.row_scale"],
                       bias=bias)
        dense = tensors[f"{prefix}.dense"]
        return cls(dense.shape[0], dense.shape[1], fmt, dense=dense, bias=bias)

    @property
    def nbytes(self) -> int:
        return sum(t.numel() * t.element_size() for t in (self.packed, self.scale_zero, self.dense, self.bias,
                                                           self.rows8, self.row_scale) if t is not None)


class RefinedHead:
    """An output layer whose file stores it finer than 4 bits (Qwen2.5 in Q4_K_M: Q6_K, tied to a Q4_K
    embedding; Gemma 3: a Q8_0 embedding).  A decode-sized product scores the whole vocabulary with
    ``coarse``'s 4-bit groups (the bytes a step can afford), then recomputes the ``keep`` best of each row
    from ``fine``, the file's own rows (``gguf_lean.FileRows``: read and de-quantised on demand, no copy
    kept); a prompt-sized one (Explain, scores) keeps the 4-bit scores.  Scoring with the 4-bit
    embedding alone moved the 1.5B model's next-token distribution as far from the file's as every other
    re-grouping together; 8-bit rows of the whole output matrix, read at every step, cost 10 ms a token
    (16.5 against 6.9 ms, 2 cores) and 233 MB more on disk and in memory."""

    fmt: WeightFormat = "int4"
    bias = None
    parent = None
    quantized = True

    def __init__(self, coarse: Weight, fine: Any, keep: int = 64) -> None:
        """``fine``: has ``rows(ids)`` giving those rows (len(ids), in) in a float dtype, and the same
        ``out_features`` / ``in_features`` as ``coarse``."""
        if (coarse.out_features, coarse.in_features) != (fine.out_features, fine.in_features):
            raise ValueError(f"a refined head needs rows of the coarse matrix's shape: {fine.out_features}x"
                             f"{fine.in_features} given for {coarse.out_features}x{coarse.in_features}")
        self.coarse, self.fine, self.keep = coarse, fine, keep
        self.out_features, self.in_features = coarse.out_features, coarse.in_features

    @property
    def nbytes(self) -> int:
        return self.coarse.nbytes  # a tied model's embedding; the fine rows stay in the file

    @property
    def dtype(self) -> Any:
        return self.coarse.dtype

    def dequantize(self) -> Any:
        return self.coarse.dequantize()

    def __call__(self, x: Any) -> Any:
        torch = _torch()
        logits = self.coarse(x)
        flat = x.reshape(-1, self.in_features)
        if flat.shape[0] > DEQUANT_ROWS:
            return logits
        scores = logits.reshape(-1, self.out_features)
        top = scores.topk(min(self.keep, self.out_features), dim=-1).indices  # (n, keep)
        ids, where = top.unique(return_inverse=True)  # each row read once
        rows = self.fine.rows(ids).float()[where]  # (n, keep, in)
        # one product per row, so that a row's scores do not depend on the rows beside it (a speculative
        # draft's check must score exactly as plain decoding does)
        exact = torch.bmm(rows, flat.float()[:, :, None])[..., 0]  # (n, keep)
        scores.scatter_(1, top, exact.to(scores.dtype))
        return logits
