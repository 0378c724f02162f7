"""A lean forward pass for Llama, Qwen2 and Gemma 3 text models, for generation on CPU.

On this 2-core CPU a decode step is bound by the bytes of weights it reads:
profiled, SmolLM2-135M in fp32 spends 36 of 53 ms per token in matrix-vector
products, so trimming Python overhead alone gains nothing.  ``FastDecoder``
reads the same weights once — q/k/v and gate/up fused into one matrix each,
biases kept, adapters (peft LoRA) merged, a bitsandbytes 4-bit base
de-quantized — keeps them as ``int4.Weight`` (4-bit groups: the decode kernel
reads them as they are, a prompt de-quantises one matrix at a time to bf16) or
as ``bfloat16`` / ``float32``, and runs each layer as a dozen tensor calls on a
growable KV cache (``FastCache``).  A tied embedding is the output layer's
matrix, looked up by rows.

Qwen2 is Llama with biases on q, k and v (and its own RoPE base, which the
model's rotary module carries).  Gemma 3 (``gemma3_text``) differs in ways the
same loop takes as settings (``_Arch``): norms scale by ``1 + weight``, the
embedding is scaled by sqrt(hidden), queries and keys are RMS-normed per head,
attention and MLP outputs are normed before the residual add ("sandwich"
norms), the MLP gate is tanh-GELU, and five of every six layers attend to a
sliding window of the last ``sliding_window`` positions with their own RoPE base.

It produces the logits of the last position (or, to check a speculative draft, of
the last few: ``forward_rows``).  What needs the model's
internals (attention for the Explain view, teacher-forced scores) runs on the
transformers model, which ``shared_weights.share_weights`` points at these same
weights, so there is one copy in memory.

A LoRA adapter can also stay beside the weights instead of merged into them
(``attach_lora``): each adapted product then adds ``(x A^T) B^T`` (B scaled),
for the sequences whose ``FastCache`` was made with ``adapter=True`` only.  One
copy of the 4-bit weights serves both the base model and the adapted one, turn
by turn (the engine asks the adapter again when the base declines).  Other architectures get ``None``
from ``FastDecoder.build`` and keep the transformers path.

Knows nothing about tokenization, sampling or conversations.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any

from . import q4kernel
from .cpu import bf16_matmul_fast, cpu_has_amx
from .int4 import Weight, WeightFormat, int4_available
from .kvcache import FastCache
from .shared_weights import effective_weight
from .lookup import PassCosts

log = logging.getLogger(__name__)

def _torch() -> Any:
    import torch

    return torch


@dataclass
class _Layer:
    norm_attn: Any
    norm_mlp: Any
    qkv: Weight
    o: Weight
    gate_up: Weight
    down: Weight
    rope: str = "default"
    """Which RoPE table (Gemma 3: "sliding_attention" or "full_attention")."""
    window: int | None = None
    """Attend to the last ``window`` positions only (Gemma 3's sliding layers)."""
    q_norm: Any = None
    k_norm: Any = None
    post_attn: Any = None
    """Gemma 3's sandwich norms: on the attention output, and on the MLP output
    (then ``norm_mlp`` is its pre-MLP norm)."""
    post_mlp: Any = None
    lora: "dict[str, _LowRank] | None" = None
    """Unmerged adapter deltas by product ("qkv", "o", "gate_up", "down"), added for adapted sequences."""


@dataclass
class _LowRank:
    """``x -> (x A^T) B^T``: one LoRA delta (scale folded into B), or several side by side for a fused
    product (A stacked, B block-diagonal over each part's output rows)."""

    a_t: Any
    """(in, rank)"""
    b_t: Any
    """(rank, out)"""

    def __call__(self, x: Any) -> Any:
        return (x.to(self.a_t.dtype) @ self.a_t) @ self.b_t


@dataclass(frozen=True)
class _Arch:
    """What one architecture's forward does differently from Llama's."""

    gelu: bool = False
    """MLP gate activation: tanh-GELU (Gemma) instead of SiLU."""
    embed_scale: float = 1.0
    scale: float | None = None
    """Attention logit scale (None: 1/sqrt(head_dim))."""
    norm_offset: float = 0.0
    """Gemma's RMSNorm multiplies by ``1 + weight``; folded into the stored weights."""


class FastDecoder:
    """The lean forward of one Llama or Gemma 3 model; build with ``FastDecoder.build``."""

    def __init__(self, embed: Weight, layers: list[_Layer], norm: Any, head: Weight, rotary: Any, config: Any,
                 fmt: WeightFormat, arch: _Arch = _Arch()) -> None:
        torch = _torch()
        self.embed, self.layers, self.norm, self.head, self.rotary = embed, layers, norm, head, rotary
        """``embed``: the token embedding (rows looked up; the same ``Weight`` as ``head`` when tied)."""
        self.arch = arch
        self.heads = config.num_attention_heads
        self.kv_heads = config.num_key_value_heads
        self.head_dim = getattr(config, "head_dim", None) or config.hidden_size // self.heads
        self.intermediate = config.intermediate_size
        self.eps = config.rms_norm_eps
        self.fmt = fmt
        self.dtype = activation_dtype(fmt)
        # RoPE (cos, sin) per table name, each (positions, head_dim); grown on demand
        self._rope_tables: dict[str, tuple[Any, Any]] = {}
        self.pass_costs = PassCosts()
        """Seconds its decode passes take by rows checked (prompt-lookup drafts choose their length by them)."""

    # ---- construction ---------------------------------------------------------------------

    @classmethod
    def build(cls, model: Any, fmt: WeightFormat = "int4") -> "FastDecoder | None":
        """A decoder for ``model`` (a transformers causal LM, possibly peft-wrapped, 4-bit, or already
        over ``shared_weights.PackedLinear`` modules), or None when its architecture is not one this
        module implements."""
        torch = _torch()
        base = model.get_base_model() if hasattr(model, "get_base_model") else model
        config = base.config
        reason = _unsupported(base, config)
        if reason:
            log.info("fast decode not used for %s: %s", type(base).__name__, reason)
            return None
        if fmt == "int4" and not int4_available():
            fmt = "bfloat16"
        act = activation_dtype(fmt)
        gemma = config.model_type == "gemma3_text"
        arch = _Arch(gelu=True, embed_scale=config.hidden_size ** 0.5, scale=config.query_pre_attn_scalar ** -0.5,
                     norm_offset=1.0) if gemma else _Arch()

        def norm(module: Any) -> Any:
            return (module.weight.detach().float() + arch.norm_offset).to(act).clone()

        def linear(module: Any) -> Weight:
            packed = getattr(module, "weight_store", None)  # a shared_weights.PackedLinear: use its bytes
            if packed is not None and packed.fmt == fmt:
                return packed
            bias = getattr(getattr(module, "base_layer", module), "bias", None)
            return Weight.from_float(effective_weight(module), fmt, bias=bias)

        with torch.no_grad():
            layers = []
            for i, layer in enumerate(base.model.layers):
                attn, mlp = layer.self_attn, layer.mlp
                parts = dict(qkv=Weight.concat([linear(attn.q_proj), linear(attn.k_proj), linear(attn.v_proj)]),
                             o=linear(attn.o_proj), gate_up=Weight.concat([linear(mlp.gate_proj), linear(mlp.up_proj)]),
                             down=linear(mlp.down_proj), norm_attn=norm(layer.input_layernorm))
                if gemma:
                    kind = config.layer_types[i]
                    parts.update(norm_mlp=norm(layer.pre_feedforward_layernorm), rope=kind,
                                 window=config.sliding_window if kind == "sliding_attention" else None,
                                 q_norm=norm(attn.q_norm), k_norm=norm(attn.k_norm),
                                 post_attn=norm(layer.post_attention_layernorm),
                                 post_mlp=norm(layer.post_feedforward_layernorm))
                else:
                    parts.update(norm_mlp=norm(layer.post_attention_layernorm))
                layers.append(_Layer(**parts))
            embed = linear(base.model.embed_tokens)
            if getattr(base.lm_head, "weight_store", None) is not None:
                head = base.lm_head.weight_store
            elif getattr(base.lm_head, "weight", None) is getattr(base.model.embed_tokens, "weight", None):
                head = embed  # tied: one matrix looked up by rows and multiplied by the last position
            else:
                head = linear(base.lm_head)
        return cls(embed, layers, norm(base.model.norm), head, base.model.rotary_emb, config, fmt, arch)

    def new_cache(self, adapter: bool = False) -> FastCache:
        """An empty cache; ``adapter``: the sequence runs with the attached adapter (``attach_lora``)."""
        if adapter and not self.has_lora:
            raise ValueError("this decoder has no adapter attached")
        return FastCache(len(self.layers), self.kv_heads, self.head_dim, self.dtype, adapter)

    @property
    def has_lora(self) -> bool:
        return any(layer.lora for layer in self.layers)

    def attach_lora(self, adapter: Any) -> int:
        """Keep the LoRA adapter in folder ``adapter`` beside the weights, unmerged, for sequences whose
        cache asks for it (``new_cache(adapter=True)``); the base weights stay as they are.  Returns how
        many products gained a delta; an adapter of another shape is a ``ModelLoadError``."""
        from ..errors import ModelLoadError
        from .shared_weights import read_lora

        torch = _torch()
        scale, pairs = read_lora(adapter)
        q, kv, inter = self.heads * self.head_dim, self.kv_heads * self.head_dim, self.intermediate
        products = {"qkv": ("self_attn", [("q_proj", 0, q), ("k_proj", q, q + kv), ("v_proj", q + kv, q + 2 * kv)]),
                    "o": ("self_attn", [("o_proj", 0, None)]),
                    "gate_up": ("mlp", [("gate_proj", 0, inter), ("up_proj", inter, 2 * inter)]),
                    "down": ("mlp", [("down_proj", 0, None)])}
        known = {f"model.layers.{i}.{group}.{name}" for i in range(len(self.layers))
                 for group, parts in products.values() for name, _, _ in parts}
        if unknown := sorted(set(pairs) - known):
            raise ModelLoadError(f"adapter {str(adapter)!r} targets {unknown[0]!r}, which this decoder has no product for")
        changed = 0
        for i, layer in enumerate(self.layers):
            deltas = {}
            for product, (group, parts) in products.items():
                weight: Weight = getattr(layer, product)
                found = [(pairs[f"model.layers.{i}.{group}.{name}"], start, stop if stop is not None else weight.out_features)
                         for name, start, stop in parts if f"model.layers.{i}.{group}.{name}" in pairs]
                if not found:
                    continue
                rank = sum(a.shape[0] for (a, _), _, _ in found)
                a_t = torch.zeros(weight.in_features, rank)
                b_t = torch.zeros(rank, weight.out_features)
                col = 0
                for (a, b), start, stop in found:
                    if a.shape[1] != weight.in_features or b.shape[0] != stop - start:
                        raise ModelLoadError(f"adapter {str(adapter)!r} does not fit the base model: layer {i} "
                                             f"{product} expects {stop - start}x{weight.in_features}, the adapter's "
                                             f"is {b.shape[0]}x{a.shape[1]}")
                    a_t[:, col:col + a.shape[0]] = a.float().t()
                    b_t[col:col + a.shape[0], start:stop] = scale * b.float().t()
                    col += a.shape[0]
                deltas[product] = _LowRank(a_t.to(self.dtype).contiguous(), b_t.to(self.dtype).contiguous())
                changed += 1
            layer.lora = deltas or None
        return changed

    # ---- forward --------------------------------------------------------------------------

    def _rope(self, name: str, end: int) -> tuple[Any, Any]:
        torch = _torch()
        table = self._rope_tables.get(name)  # one (cos, sin) value, so threads never see a mismatched pair
        if table is None or table[0].shape[0] < end:
            size = ((end + 1023) // 1024) * 1024
            positions = torch.arange(size)[None]  # (1, size)
            x = torch.zeros(1, dtype=torch.float32)
            with torch.no_grad():
                cos, sin = (self.rotary(x, positions) if name == "default"
                            else self.rotary(x, positions, name))
            table = (cos[0].to(self.dtype), sin[0].to(self.dtype))  # (size, head_dim) each
            self._rope_tables[name] = table
        return table

    def _rms(self, x: Any, weight: Any) -> Any:
        torch = _torch()
        return torch.nn.functional.rms_norm(x, (x.shape[-1],), weight, self.eps)

    def _rotate(self, x: Any, cos: Any, sin: Any) -> Any:
        torch = _torch()
        half = self.head_dim // 2
        return x * cos + torch.cat((-x[..., half:], x[..., :half]), dim=-1) * sin

    def forward(self, ids: list[int], cache: FastCache) -> Any:
        """Logits (float32, shape (vocab,)) after the last of ``ids``, appended to ``cache``."""
        return self.forward_rows(ids, cache, 1)[0]

    def forward_rows(self, ids: list[int], cache: FastCache, keep: int) -> Any:
        """Logits (float32, shape (keep, vocab)) after each of the last ``keep`` of ``ids``, all appended to
        ``cache``: row j is the prediction after ``ids[len(ids) - keep + j]`` (speculative decoding checks a
        whole draft in one pass; ``cache.crop`` takes back the rejected tail)."""
        torch = _torch()
        F = torch.nn.functional
        n, past = len(ids), cache.length
        end = past + n
        cache.reserve(end)
        ropes = {}
        for name in {layer.rope for layer in self.layers}:
            cos, sin = self._rope(name, end)
            ropes[name] = cos[past:end][None, None], sin[past:end][None, None]  # (1, 1, n, head_dim) each
        heads, kv, arch = self.heads, self.kv_heads, self.arch
        # query i (position past + i) sees keys 0 .. past + i; a window of w: keys past + i - w + 1 ..
        causal = torch.ones(n, end, dtype=torch.bool).tril(diagonal=past) if n > 1 else None
        windowed: dict[int, tuple[int, Any]] = {}  # window -> (first key kept, mask over the kept keys)
        for w in {layer.window for layer in self.layers if layer.window and end > layer.window}:
            first = max(0, past - w + 1)  # no query here sees a key before this
            band = torch.ones(n, end, dtype=torch.bool).triu(diagonal=past - w + 1)
            mask = (band & causal) if causal is not None else band
            windowed[w] = (first, mask[:, first:] if n > 1 else None)
        lora = cache.adapter
        # one query row (a decode step) or a draft's rows each as its own step: the kernel's attention
        by_kernel = self._rows([cache] * n, list(range(past + 1, end + 1))) if n == 1 or keep == n else None
        with torch.inference_mode():
            x = self._embed(ids)[None]  # (1, n, hidden)
            for i, layer in enumerate(self.layers):
                q, k, v = self._qkv(layer, x, *ropes[layer.rope], lora=lora)  # (1, heads | kv, n, dim)
                cache.keys[i, :, past:end] = k[0]
                cache.values[i, :, past:end] = v[0]
                first, mask = windowed.get(layer.window, (0, causal))
                keys = cache.keys[i, :, first:end]  # (kv, keys, dim)
                values = cache.values[i, :, first:end]
                if by_kernel is not None:  # (n, heads, dim) through the kernel, back to (1, heads, n, dim)
                    att = by_kernel.attend(q[0].transpose(0, 1), i, layer.window or 0, self._scale).transpose(0, 1)[None]
                elif n == 1:
                    att = self._attend_one(q, keys, values)
                elif keep == n:  # a draft being checked: each row attends as its own decode step would,
                    # so that the check's logits are bit for bit plain decoding's (one SDPA call over all rows
                    # rounds differently in bf16, and greedy answers then differed at near-ties: 5 of 16)
                    rows = []
                    for j in range(n):
                        start = max(0, past + j + 1 - layer.window) if layer.window else 0
                        rows.append(self._attend_one(q[:, :, j:j + 1], cache.keys[i, :, start:past + j + 1],
                                                     cache.values[i, :, start:past + j + 1]))
                    att = torch.cat(rows, dim=2)
                else:
                    att = F.scaled_dot_product_attention(q, keys[None], values[None], attn_mask=mask,
                                                         scale=arch.scale, enable_gqa=kv != heads)  # (1, heads, n, dim)
                x = self._rest(layer, x, att, lora)
            cache.length = end
            return self.head(self._rms(x[:, -keep:], self.norm))[0].float()

    def forward_batch(self, ids: list[int], caches: list[FastCache]) -> Any:
        """One decode step of several sequences at once: logits (B, vocab) after ``ids[b]``, appended to
        ``caches[b]``.  Every matrix product reads its weights once for all B rows (the decode kernel's
        cost hardly grows with the rows); only attention runs per sequence, over its own cache.  The
        caches must agree on ``adapter``."""
        torch = _torch()
        lora = caches[0].adapter
        if any(c.adapter != lora for c in caches):
            raise ValueError("a batch mixes sequences with and without the adapter")
        pasts = [c.length for c in caches]
        for c in caches:
            c.reserve(c.length + 1)
        ropes = {}
        for name in {layer.rope for layer in self.layers}:
            cos, sin = self._rope(name, max(pasts) + 1)
            at = torch.tensor(pasts)
            ropes[name] = cos[at][:, None, None], sin[at][:, None, None]  # (B, 1, 1, head_dim) each
        by_kernel = self._rows(caches, [p + 1 for p in pasts])
        with torch.inference_mode():
            x = self._embed(ids)[:, None]  # (B, 1, hidden)
            for i, layer in enumerate(self.layers):
                q, k, v = self._qkv(layer, x, *ropes[layer.rope], lora=lora)  # (B, heads | kv, 1, dim)
                for b, (cache, past) in enumerate(zip(caches, pasts)):
                    cache.keys[i, :, past] = k[b, :, 0]
                    cache.values[i, :, past] = v[b, :, 0]
                if by_kernel is not None:  # all rows in one call
                    att = by_kernel.attend(q[:, :, 0], i, layer.window or 0, self._scale)[:, :, None]
                else:
                    outs = []
                    for b, (cache, past) in enumerate(zip(caches, pasts)):
                        first = max(0, past + 1 - layer.window) if layer.window else 0
                        outs.append(self._attend_one(q[b:b + 1], cache.keys[i, :, first:past + 1],
                                                     cache.values[i, :, first:past + 1]))  # (1, heads, 1, dim)
                    att = torch.cat(outs)
                x = self._rest(layer, x, att, lora)
            for c in caches:
                c.length += 1
            return self.head(self._rms(x, self.norm))[:, 0].float()

    @property
    def _scale(self) -> float:
        return self.arch.scale if self.arch.scale is not None else self.head_dim ** -0.5

    def _rows(self, caches: list[FastCache], stops: list[int]) -> Any:
        """``q4kernel.Rows`` for one-query attention of rows over ``caches`` (row r sees positions before
        ``stops[r]``), or None where torch attends (``_attend_one``): the kernel is not built here, or the
        cache is not bf16.  The kernel does in one call what ``_attend_one`` does a row at a time, in
        float32 from the bf16 cache (scores, softmax and sum; torch rounds scores and weights to bf16).
        Measured on 2 Zen 4 cores (no AMX), interleaved, ~120 cached positions: a decode step of the 1.5B
        model 45.8 -> 41.5 ms, four conversations' batched step 96.9 -> 83.5 ms."""
        if not q4kernel.attends(self.dtype, self.head_dim) \
                or not all(c.keys.is_contiguous() and c.values.is_contiguous() for c in caches):
            return None  # the kernel reads (layers, kv, capacity, dim) laid out densely
        return q4kernel.Rows([c.keys for c in caches], [c.values for c in caches], stops)

    def _attend_one(self, q: Any, keys: Any, values: Any) -> Any:
        """Attention of one query position (1, heads, 1, dim) over ``keys`` / ``values`` (kv, L, dim).

        Two batched matrix products per key-value head group, softmax in float32; torch's SDPA kernel only
        where the CPU has AMX (``cpu_has_amx``).  Measured, one query of 12 heads over 700 bf16 keys of 2
        kv heads (a 1.5B Qwen2 layer after a grounded prompt): on 2 AMD EPYC (Zen 4, AVX-512 BF16, no
        AMX) cores SDPA took 870-1140 us a call and the products 100-160 us, so SDPA was a third of the
        whole decode step; on 2 Xeon cores with AMX SDPA took 56 us against 202 us for the products.  In
        float32 (AVX2-only CPUs) SDPA cost ~0.4 ms a call for this shape and the products less."""
        torch = _torch()
        kv, dim = self.kv_heads, self.head_dim
        scale = self.arch.scale if self.arch.scale is not None else dim ** -0.5
        if q.dtype == torch.bfloat16 and cpu_has_amx():
            return torch.nn.functional.scaled_dot_product_attention(
                q, keys[None], values[None], scale=scale, enable_gqa=kv != self.heads)  # (1, heads, 1, dim)
        grouped = q.reshape(kv, self.heads // kv, dim)  # (kv, heads per kv, dim)
        # keys times queries, not queries times transposed keys: the cache's keys are read in place
        # (the other order copied them first: 159 against 118 us at 700 keys, same scores)
        scores = torch.bmm(keys, grouped.transpose(1, 2)).transpose(1, 2).float() * scale  # (kv, g, L)
        probs = torch.softmax(scores, dim=-1).to(values.dtype)
        return torch.bmm(probs, values).reshape(1, self.heads, 1, dim)

    def _embed(self, ids: list[int]) -> Any:
        """(n, hidden) activations of tokens ``ids``."""
        torch = _torch()
        x = self.embed.rows(torch.tensor(ids))
        return (x * self.arch.embed_scale if self.arch.embed_scale != 1.0 else x).to(self.dtype)

    def _qkv(self, layer: _Layer, x: Any, cos: Any, sin: Any, lora: bool = False) -> tuple[Any, Any, Any]:
        """Queries (B, heads, n, dim), keys and values (B, kv, n, dim) of ``x`` (B, n, hidden), RoPE applied;
        ``lora``: with the attached adapter's deltas."""
        torch = _torch()
        heads, kv, dim = self.heads, self.kv_heads, self.head_dim
        B, n = x.shape[:2]
        qkv = self._product(layer, "qkv", self._rms(x, layer.norm_attn), lora)  # (B, n, (heads + 2 kv) * dim)
        qkv = qkv.view(B, n, heads + 2 * kv, dim).transpose(1, 2)  # (B, heads + 2 kv, n, dim)
        qk = qkv[:, : heads + kv]
        if layer.q_norm is not None:  # per-head norms before RoPE
            qk = torch.cat([self._rms(qk[:, :heads], layer.q_norm), self._rms(qk[:, heads:], layer.k_norm)], dim=1)
        qk = self._rotate(qk, cos, sin)  # queries and keys in one go
        return qk[:, :heads], qk[:, heads:], qkv[:, heads + kv:]

    @staticmethod
    def _product(layer: _Layer, name: str, x: Any, lora: bool) -> Any:
        """``x`` times the layer's ``name`` matrix, plus the adapter's delta when ``lora`` and it has one."""
        out = getattr(layer, name)(x)
        delta = layer.lora.get(name) if lora and layer.lora else None
        return out if delta is None else out + delta(x).to(out.dtype)

    def _rest(self, layer: _Layer, x: Any, att: Any, lora: bool = False) -> Any:
        """The layer after attention: output projection, residual, MLP, residual; ``att`` (B, heads, n, dim)."""
        F = _torch().nn.functional
        B, n = x.shape[:2]
        out = self._product(layer, "o", att.transpose(1, 2).reshape(B, n, self.heads * self.head_dim), lora)
        x = x + (self._rms(out, layer.post_attn) if layer.post_attn is not None else out)
        gu = self._product(layer, "gate_up", self._rms(x, layer.norm_mlp), lora)  # (B, n, 2 * intermediate)
        gate = gu[..., : self.intermediate]
        gate = F.gelu(gate, approximate="tanh") if self.arch.gelu else F.silu(gate)
        out = self._product(layer, "down", gate * gu[..., self.intermediate:], lora)
        return x + (self._rms(out, layer.post_mlp) if layer.post_mlp is not None else out)


def activation_dtype(fmt: WeightFormat) -> Any:
    """Activations and KV cache: bf16, except for float32 weights and, with int4 weights, on a CPU whose
    bf16 matrix products are slow (``cpu.bf16_matmul_fast``: AVX2 only), where a prompt's products and
    attention run in float32 (the 4-bit kernel still reads bf16 rows)."""
    torch = _torch()
    if fmt == "float32" or fmt == "int4" and not bf16_matmul_fast():
        return torch.float32
    return torch.bfloat16


def _unsupported(base: Any, config: Any) -> str:
    """Why ``base`` cannot use this module's forward ('' when it can)."""
    kind = getattr(config, "model_type", "")
    if kind not in ("llama", "qwen2", "gemma3_text"):
        return f"architecture {kind or '?'!r} (llama, qwen2 and gemma3_text are implemented)"
    if kind in ("llama", "qwen2") and getattr(config, "hidden_act", "silu") != "silu":
        return f"activation {config.hidden_act!r}"
    if kind == "qwen2" and getattr(config, "use_sliding_window", False):
        return "sliding-window attention"
    if kind in ("llama", "qwen2"):
        rope = getattr(config, "rope_parameters", None) or {}
        if rope.get("rope_type", "default") != "default":
            return f"scaled RoPE ({rope.get('rope_type')})"
    if kind == "gemma3_text":
        if getattr(config, "hidden_activation", "") != "gelu_pytorch_tanh":
            return f"activation {getattr(config, 'hidden_activation', '?')!r}"
        if config.attn_logit_softcapping or config.final_logit_softcapping:
            return "logit soft-capping"
        if getattr(config, "use_bidirectional_attention", False):
            return "bidirectional attention"
        if any((config.rope_parameters.get(k) or {}).get("rope_type", "default") != "default"
               for k in set(config.layer_types)):
            return "scaled RoPE"
    if str(getattr(base, "device", "cpu")) != "cpu":
        return "the model is not on the CPU (transformers is the faster path on GPUs)"
    return ""
