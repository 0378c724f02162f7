"""The model passes behind an explanation: one eager-attention pass over prompt
+ answer (attention per prompt token, answer log-probabilities, KV cache), and
the ablation passes that score the answer with sources or history left out
(leave-one-out, or sampled subsets with a linear surrogate), reusing the full
prompt's KV cache up to the first token that differs.

What the numbers mean is documented in ``explainer``; this module runs the
forward passes.  Knows nothing about the UI or retrieval.
"""

from __future__ import annotations

import contextvars
import copy
import functools
import logging
from contextlib import contextmanager
from typing import Any, Iterator, Sequence

from ..errors import ConfigError, InputError
from .prompt import prepare_rebuild, variant
from .types import ExplainConfig
from ..generation.local import cache_argument, decoder_pass, output_cache
from ..generation.scoring import LOGPROB_ROWS, token_logprobs
from ..generation.models import LoadedModel
from ..types import Turn


log = logging.getLogger(__name__)


def _base_model(model: Any) -> Any:
    """The transformers model under a peft wrapper (or the model itself)."""
    return model.get_base_model() if hasattr(model, "get_base_model") else model


ROWS_ATTENTION = "explain_rows"
"""The attention the Explain pass runs: transformers' eager attention, a chunk of query rows at a time."""
QUERY_CHUNK = 64
_KEEP_ROWS = contextvars.ContextVar("explain_keep_rows", default=0)


def _rows_attention(module: Any, query: Any, key: Any, value: Any, attention_mask: Any, dropout: float = 0.0,
                    scaling: float | None = None, softcap: float | None = None, **kwargs: Any) -> tuple[Any, Any]:
    """Eager attention (the same operations as transformers' ``eager_attention_forward``) over ``QUERY_CHUNK``
    query rows at a time, returning the weights of the last ``_KEEP_ROWS`` rows only (all where unset).

    Eager attention holds every head's full score matrix, its masked copy and its softmax at once: for a
    windowed model, whose Explain pass runs over the whole prompt, that was the largest allocation of an
    explanation (Gemma-3-270m, ~700 tokens: ~50 MB the server kept).  The hooks read only the rows
    before each answer token."""
    import torch
    from transformers.integrations.sdpa_attention import repeat_kv

    if scaling is None:
        scaling = module.head_dim ** -0.5
    groups = getattr(module, "num_key_value_groups", 1)
    key, value = repeat_kv(key, groups), repeat_kv(value, groups)
    rows = query.shape[2]
    keep = _KEEP_ROWS.get() or rows
    out = []
    kept = []
    keys_t = key.transpose(2, 3)
    for start in range(0, rows, QUERY_CHUNK):
        stop = min(rows, start + QUERY_CHUNK)
        weights = torch.matmul(query[:, :, start:stop], keys_t) * scaling
        if softcap is not None:
            weights = torch.tanh(weights / softcap) * softcap
        if attention_mask is not None:
            weights = weights + attention_mask[:, :, start:stop]
        weights = torch.nn.functional.softmax(weights, dim=-1, dtype=torch.float32).to(query.dtype)
        weights = torch.nn.functional.dropout(weights, p=dropout, training=module.training)
        out.append(torch.matmul(weights, value))
        if stop > rows - keep:
            kept.append(weights[:, :, max(0, rows - keep - start):])
    return torch.cat(out, dim=2).transpose(1, 2).contiguous(), torch.cat(kept, dim=2)


@functools.cache
def _register_rows_attention() -> None:
    from transformers import AttentionInterface
    from transformers.masking_utils import ALL_MASK_ATTENTION_FUNCTIONS, eager_mask

    AttentionInterface.register(ROWS_ATTENTION, _rows_attention)
    ALL_MASK_ATTENTION_FUNCTIONS.register(ROWS_ATTENTION, eager_mask)


@contextmanager
def eager_attention(model: Any, keep_rows: int = 0) -> Iterator[None]:
    """Switch the model to attention that returns its weights (``_rows_attention``: of the last ``keep_rows``
    query rows; 0: all) and back."""
    _register_rows_attention()
    base = _base_model(model)
    before = getattr(base.config, "_attn_implementation", None)
    token = _KEEP_ROWS.set(keep_rows)
    base.set_attn_implementation(ROWS_ATTENTION)
    try:
        yield
    finally:
        base.set_attn_implementation(before)
        _KEEP_ROWS.reset(token)


def attention_modules(model: Any) -> list[Any]:
    """Self-attention modules of the decoder layers, in layer order."""
    found = [m for m in _base_model(model).modules()
             if hasattr(m, "layer_idx") and type(m).__name__.endswith("Attention")]
    return sorted(found, key=lambda m: m.layer_idx)


def chosen_layers(config: ExplainConfig, n_layers: int) -> list[int]:
    if config.layers == "all":
        return list(range(n_layers))
    if config.layers == "last_half":
        return list(range(n_layers // 2, n_layers))
    out = []
    for i in config.layers:
        j = i + n_layers if i < 0 else i
        if not 0 <= j < n_layers:
            raise ConfigError(f"explain.layers: layer {i} does not exist; the model has {n_layers} layers")
        out.append(j)
    return sorted(set(out))


def _answer_logprobs(logits: Any, answer_ids: Any) -> Any:
    """``logits`` (A+1, vocab) for the positions predicting each answer token (+ the last) → (A,) log-probs."""
    import torch

    return torch.tensor(token_logprobs(logits[:-1], answer_ids.tolist()), dtype=torch.float32)


_NORM_HEAD_MODELS = frozenset({"llama", "mistral", "qwen2", "qwen3", "gemma", "gemma2", "gemma3_text"})
"""Model types whose logits are the output layer of the final norm's output (soft-capped where configured)."""


def _head_parts(model: Any) -> tuple[Any, Any, float | None] | None:
    """(final norm, output layer, logit soft-cap) of a decoder whose logits are ``head(norm(h))`` (soft-capped
    where its config says so: llama, qwen2, gemma3 and their kin), or None for another shape."""
    base = _base_model(model)
    norm = getattr(getattr(base, "model", None), "norm", None)
    head = base.get_output_embeddings() if hasattr(base, "get_output_embeddings") else None
    if norm is None or head is None or getattr(base.config, "model_type", "") not in _NORM_HEAD_MODELS:
        return None
    return norm, head, getattr(base.config, "final_logit_softcapping", None)


def _forward_logprobs(model: Any, target: Any, **kwargs: Any) -> tuple[Any, Any]:
    """``model(**kwargs)`` and the log-probabilities (A,) of ``target`` (the answer: the inputs' last A
    tokens) after the positions before each.

    The logits over the vocabulary are made ``LOGPROB_ROWS`` positions at a time from the final norm's
    output, not for all A + 1 positions at once: over Gemma-3's 262,144 tokens those were 1 MB a position
    in float32 (68 MB for a 64-token answer, with copies more), the peak of a Gemma server's Explain.  A
    model of another shape gets its logits for those positions from its own forward."""
    import torch

    A = len(target)
    parts = _head_parts(model)
    if parts is None:
        out = model(logits_to_keep=A + 1, **kwargs)
        return out, _answer_logprobs(out.logits[0], target)
    norm, head, cap = parts
    seen: dict[str, Any] = {}
    handle = norm.register_forward_hook(lambda _m, _a, output: seen.__setitem__("h", output))
    try:
        out = model(logits_to_keep=1, **kwargs)
    finally:
        handle.remove()
    hidden = seen["h"][0, -(A + 1):-1]  # (A, hidden): the positions predicting each answer token
    answer = target.tolist()
    picked: list[float] = []
    for start in range(0, A, LOGPROB_ROWS):
        rows = head(hidden[start:start + LOGPROB_ROWS])
        if cap:
            rows = torch.tanh(rows.float() / cap) * cap
        picked += token_logprobs(rows, answer[start:start + LOGPROB_ROWS])
    return out, torch.tensor(picked, dtype=torch.float32)


PREFILL_CHUNK = 256
"""Prompt tokens a pass of the attention pass's prompt part reads (see ``_attention_pass``)."""


def _windowed(model: Any) -> bool:
    """Whether some layer of ``model`` attends through a sliding window (its cache then keeps only the
    window, and attention weights over a cached prompt would not line up with the prompt's positions)."""
    config = _base_model(model).config
    if getattr(config, "use_sliding_window", None) is False:
        return False
    return bool(getattr(config, "sliding_window", None)) or "sliding_attention" in (getattr(config, "layer_types", None) or ())


def _attention_pass(lm: LoadedModel, prompt_ids: list[int], answer_ids: list[int], config: ExplainConfig) -> tuple[Any, Any, Any, list[int]]:
    """One eager pass over prompt + answer.

    Returns (per-prompt-token attention weights (P,), answer log-probs (A,), KV cache, layers used).

    Where no layer has a sliding window, the prompt up to its last token goes first, ``PREFILL_CHUNK``
    tokens a pass (no attention weights needed there), and the eager pass reads only the last prompt
    token and the answer over that cache: each pass goes to the decode batcher on its own
    (``decoder_pass``), so a conversation starting meanwhile waits for one chunk, not the whole prompt.
    """
    import torch

    model = lm.model
    P, A = len(prompt_ids), len(answer_ids)
    modules = attention_modules(model)
    if not modules:
        raise InputError(f"model {lm.name!r}: no attention layers found to explain")
    layers = chosen_layers(config, len(modules))
    acc: dict[str, Any] = {"sum": torch.zeros(A, P, dtype=torch.float32, device=lm.device), "n": 0}
    ids = torch.tensor([prompt_ids + answer_ids], dtype=torch.long, device=lm.device)
    cached = 0  # prompt positions prefilled before the eager pass
    kwargs: dict[str, Any] = {}
    if P - 1 > PREFILL_CHUNK and not _windowed(model):
        def prefill(chunk: Any, past: Any) -> Any:
            with torch.inference_mode():
                extra = {cache_argument(model): past} if past is not None else {}
                return output_cache(model(input_ids=chunk, use_cache=True, logits_to_keep=1, **extra))

        past = None
        for start in range(0, P - 1, PREFILL_CHUNK):
            past = decoder_pass(lm, prefill, ids[:, start:min(start + PREFILL_CHUNK, P - 1)], past)
        cached, kwargs = P - 1, {cache_argument(model): past}

    def hook(_module: Any, _args: Any, output: Any) -> None:
        weights = output[1] if isinstance(output, tuple) and len(output) > 1 else None
        if weights is None:
            raise InputError("the model returned no attention weights even with eager attention")
        # rows: the positions before each answer token (P - 1 ..); columns: the prompt's positions
        rows = weights[0, :, -(A + 1):-1, :P].float()  # (heads, A, P): the weights' last A + 1 rows are kept
        rows = rows.mean(0) if config.heads == "mean" else rows.amax(0)  # (A, P)
        if config.ignore_sink and P > 1:
            rows = rows.clone()
            rows[:, 0] = 0.0
        rows = rows / rows.sum(-1, keepdim=True).clamp_min(1e-12)
        acc["sum"] += rows
        acc["n"] += 1

    target = torch.tensor(answer_ids, dtype=torch.long, device=lm.device)

    def run() -> tuple[Any, Any, Any]:
        handles = [modules[i].register_forward_hook(hook) for i in layers]
        try:
            with eager_attention(model, keep_rows=A + 1), torch.inference_mode():
                out, logprobs = _forward_logprobs(model, target, input_ids=ids[:, cached:], use_cache=True, **kwargs)
                per_token = (acc["sum"] / max(acc["n"], 1)).mean(0)  # (P,)
                per_token = per_token / per_token.sum().clamp_min(1e-12)
                return per_token.cpu(), logprobs.cpu(), output_cache(out)
        finally:
            for h in handles:
                h.remove()

    attention, logprobs, cache = decoder_pass(lm, run)
    return attention, logprobs, cache, layers


def _prefix_len(a: Sequence[int], b: Sequence[int]) -> int:
    n = 0
    for x, y in zip(a, b):
        if x != y:
            break
        n += 1
    return n


def _score_variant(lm: LoadedModel, variant: list[int], answer_ids: list[int], full: list[int], cache: Any,
                   config: ExplainConfig) -> Any:
    """Answer log-probs (A,) after ``variant`` (an ablated prompt), reusing ``cache`` of ``full`` + answer."""
    import torch

    seq = variant + answer_ids
    reuse = _prefix_len(seq, full + answer_ids) if (config.reuse_prefix_cache and cache is not None) else 0
    reuse = min(reuse, len(variant) - 1)
    kwargs: dict[str, Any] = {}
    if reuse > 0:
        try:
            past = copy.deepcopy(cache)
            past.crop(-(past.get_seq_length() - reuse))
            kwargs[cache_argument(lm.model)] = past
        except Exception as exc:  # a cache type without crop (sliding windows): recompute in full
            log.debug("prefix cache not reusable (%s); full pass", exc)
            reuse = 0
    ids = torch.tensor([seq[reuse:]], dtype=torch.long, device=lm.device)
    target = torch.tensor(answer_ids, dtype=torch.long, device=lm.device)

    def run() -> Any:
        with torch.inference_mode():
            return _forward_logprobs(lm.model, target, input_ids=ids, use_cache=reuse > 0, **kwargs)[1].cpu()

    return decoder_pass(lm, run)


def _ablate(lm: LoadedModel, turn: Turn, answer_ids: list[int], base_lp: Any, cache: Any, config: ExplainConfig,
            notes: list[str]) -> tuple[str, list[Any], Any | None, int]:
    """Run the ablations.

    Returns (method, per-source effect vectors (A,) each: log-prob with the source minus without,
    history effect (A,) or None, number of forward passes).
    """
    import numpy as np
    import torch

    rb, rebuild_notes = prepare_rebuild(lm, turn)
    notes.extend(rebuild_notes)
    k = len(rb.source_segments)
    mode = config.ablation
    if mode == "auto":
        mode = "leave_one_out" if k <= config.max_leave_one_out else "sampled"
    full = list(turn.prompt_ids)
    passes = 0
    history_effect = None
    if rb.history_segments:
        lp = _score_variant(lm, variant(lm, turn, rb, [True] * k, False), answer_ids, full, cache, config)
        history_effect = base_lp - lp
        passes += 1
    if k == 0:
        return mode, [], history_effect, passes
    if mode == "leave_one_out":
        effects = []
        for j in range(k):
            keep = [i != j for i in range(k)]
            lp = _score_variant(lm, variant(lm, turn, rb, keep, True), answer_ids, full, cache, config)
            effects.append(base_lp - lp)
            passes += 1
        return mode, effects, history_effect, passes
    # Sampled: each source kept with probability 1/2; fit lp ≈ b + sum_j w_j keep_j per answer token.
    rng = np.random.default_rng(config.seed)
    masks = rng.random((config.n_samples, k)) < 0.5  # (n, k)
    rows, ys = [np.ones(k, dtype=bool)], [base_lp.numpy()]
    for mask in masks:
        lp = _score_variant(lm, variant(lm, turn, rb, list(mask), True), answer_ids, full, cache, config)
        rows.append(mask)
        ys.append(lp.numpy())
        passes += 1
    X = np.concatenate([np.ones((len(rows), 1)), np.array(rows, dtype=float)], axis=1)  # (n+1, k+1)
    Y = np.stack(ys)  # (n+1, A)
    ridge = 1e-3 * np.eye(k + 1)
    ridge[0, 0] = 0.0
    W = np.linalg.solve(X.T @ X + ridge, X.T @ Y)  # (k+1, A)
    effects = [torch.from_numpy(W[j + 1]).float() for j in range(k)]
    return "sampled", effects, history_effect, passes
