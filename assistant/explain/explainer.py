"""Explain one answer: which parts of the prompt it attended to, which sources
actually drove it, which source supports each sentence, and how confident the
model was.

Computed on demand from what a ``Turn`` keeps (prompt token ids with segment
spans, answer token ids and log-probabilities, the sources with their scores),
never during normal generation.  Four views:

* **attention** — one forward pass over prompt + answer with eager attention.
  For every answer token we take the attention row of the position that
  *predicts* it (so the first row is the last prompt token), keep the columns
  of prompt tokens, aggregate heads (``mean`` or ``max``), drop the first
  prompt token (an attention sink that takes most of the mass in every row,
  ``ignore_sink``), renormalise each row over the prompt, and average over
  the chosen layers (``last_half`` by default) and over answer tokens.  The
  result is one weight per prompt token summing to 1; a segment's share is
  the sum over its span.  Attention shows what the model *looked at*, not what
  *changed* its answer.
* **ablation** — the answer's teacher-forced log-likelihood with every source
  (and, together, the history) left out of the prompt, re-rendered with
  ``prompting.build_prompt`` exactly as the engine renders prompts.  A
  source's importance is the drop in mean log-probability per answer token
  (nats/token; positive = the source helped).  With many sources, random
  subsets are kept instead (ContextCite-style) and a linear surrogate fitted
  to the log-likelihoods gives each source's effect.  The forward passes
  reuse the full prompt's KV cache up to the first token that differs.
* **citations** — the same ablation passes, scored per sentence of the answer:
  a sentence cites the source whose removal lowers that sentence's
  log-likelihood most (if it lowers it by at least ``cite_min``).
* **confidence** — answer token probabilities (mean, minimum, low-probability
  spans), the top retrieval score, and whether any source grounds the answer.

Knows nothing about the UI (see ``view``) or about retrieval: it takes
a ``LoadedModel`` and a finished ``Turn``.
"""

from __future__ import annotations

import logging
import math
import time
from typing import Any, Literal, Sequence

from .passes import _ablate, _attention_pass, attention_modules, chosen_layers, eager_attention  # noqa: F401
from .prompt import check_turn
from .types import Confidence, ExplainConfig, Explanation, SegmentShare, SentenceCitation, SourceScore
from ..generation.models import LoadedModel
from .textspans import _content_heat, sentence_spans, split_sentences, token_pieces  # noqa: F401 (re-exported)
from ..types import Source, Turn, section_path

log = logging.getLogger(__name__)

def _answer_text_and_tokens(tok: Any, answer_ids: list[int]) -> tuple[str, list[tuple[str, int, int]]]:
    pieces = token_pieces(tok, answer_ids, skip_special=True)
    return "".join(p for p, _, _ in pieces), pieces


def _sentences(answer: str, pieces: list[tuple[str, int, int]], effects: list[Any], config: ExplainConfig,
               n_tokens: int) -> list[SentenceCitation]:
    spans = sentence_spans(answer)
    owner = [-1] * n_tokens  # sentence of each answer token
    pos = 0
    for text, a, b in pieces:
        lead = len(text) - len(text.lstrip())
        first = pos + lead
        s_idx = -1
        for si, (sa, sb) in enumerate(spans):
            if text.strip() and sa <= first < sb:
                s_idx = si
                break
        for t in range(a, b):
            owner[t] = s_idx
        pos += len(text)
    out = []
    for si, (sa, sb) in enumerate(spans):
        idx = [t for t in range(n_tokens) if owner[t] == si]
        best, support = None, 0.0
        if idx and effects:
            means = [float(e[idx].mean()) for e in effects]
            j = max(range(len(means)), key=lambda x: means[x])
            if means[j] >= config.cite_min:
                best, support = j + 1, means[j]
            else:
                support = means[j]
        out.append(SentenceCitation(answer[sa:sb], best, support))
    return out


def _low_spans(pieces: list[tuple[str, int, int]], probs: list[float], threshold: float) -> list[str]:
    spans, current = [], ""
    for text, a, b in pieces:
        low = any(probs[t] < threshold for t in range(a, min(b, len(probs))))
        if low and text.strip():
            current += text
        else:
            if current.strip():
                spans.append(current.strip())
            current = ""
    if current.strip():
        spans.append(current.strip())
    return spans


def _confidence(turn: Turn, logprobs: list[float], pieces: list[tuple[str, int, int]], sources: Sequence[Source],
                importances: list[float | None], source_attention: float, config: ExplainConfig) -> Confidence:
    probs = [math.exp(x) for x in logprobs]
    mean_prob = sum(probs) / len(probs)
    min_prob = min(probs)
    top = max((s.score for s in sources), default=None)
    known = [x for x in importances if x is not None]
    if not sources:
        grounded = False
    elif known:
        grounded = max(known) >= config.grounded_min
    else:
        grounded = source_attention >= 0.3
    if grounded and mean_prob >= 0.6:
        label: Literal["high", "medium", "low"] = "high"
    elif mean_prob < 0.35 or (not grounded and mean_prob < 0.6):
        label = "low"
    else:
        label = "medium"
    return Confidence(mean_prob=mean_prob, min_prob=min_prob,
                      low_confidence_spans=_low_spans(pieces, probs, config.low_prob),
                      retrieval_top_score=top, grounded=grounded, label=label)


def explain(lm: LoadedModel, turn: Turn, config: ExplainConfig | None = None) -> Explanation:
    """Explain a finished answer (see the module docstring for the methods).  An answer the retry adapter
    wrote after the model declined (``ChatConfig.retry_declines``) is explained with that adapter on.
    Its passes run one at a time as the decoder's prompts do (``local.decoder_pass``): on the batcher's
    thread while no conversation decodes, otherwise on this thread on one core, so a conversation that
    starts meanwhile waits for one pass, not for the whole explanation.  The small work between passes
    runs here on one thread: left to this thread's own OpenMP team, it would leave a second team behind,
    and every later decode step would be slower."""
    from ..generation.batching import serial_here
    from ..generation.cpu import give_back_freed_memory

    previous = serial_here() if lm.batcher is not None else None
    try:
        return _explain_with_adapter(lm, turn, config)
    finally:
        if previous is not None:
            serial_here(previous)
        give_back_freed_memory()  # its passes' logits and activations


def _explain_with_adapter(lm: LoadedModel, turn: Turn, config: ExplainConfig | None) -> Explanation:
    from ..generation.shared_weights import adapter_active

    retried = "declined_after" in turn.timings
    shared = retried and any(getattr(m, "lora", None) is not None for m in lm.model.modules())
    with adapter_active(shared):
        expl = _explain(lm, turn, config)
    if retried:
        expl.notes.append("this answer was written by the retry adapter after the model declined; explained "
                          + ("with that adapter" if shared else "with the model alone (the adapter is not "
                             "loaded on this model's weights)"))
    return expl


def _explain(lm: LoadedModel, turn: Turn, config: ExplainConfig | None = None) -> Explanation:
    config = config or ExplainConfig()
    started = time.perf_counter()
    answer_ids = check_turn(lm, turn)
    prompt_ids = list(turn.prompt_ids)
    tok = lm.tokenizer
    timings: dict[str, float] = {}
    notes: list[str] = []

    t0 = time.perf_counter()
    attn, base_lp, cache, layers = _attention_pass(lm, prompt_ids, answer_ids, config)  # (P,), (A,)
    timings["attention"] = time.perf_counter() - t0

    t0 = time.perf_counter()
    method, effects, history_effect, passes = "none", [], None, 0
    if config.ablation != "none":
        method, effects, history_effect, passes = _ablate(lm, turn, answer_ids, base_lp, cache, config, notes)
    timings["ablation"] = time.perf_counter() - t0
    timings["ablation_passes"] = float(passes)
    del cache

    P = len(prompt_ids)
    weights = attn.tolist()
    importance = [float(e.mean()) for e in effects]
    source_segments = [s for s in turn.segments if s.kind == "source"]
    segments = []
    for seg in turn.segments:
        share = float(sum(weights[seg.start:seg.end]))
        length = max(seg.end - seg.start, 1)
        imp = None
        if seg.kind == "source" and effects:
            imp = importance[source_segments.index(seg)]
        segments.append(SegmentShare(label=seg.label, kind=seg.kind, start=seg.start, end=seg.end,
                                     attention_share=share, attention_per_token=share / length * P,
                                     ablation_importance=imp))

    t0 = time.perf_counter()
    source_scores, source_heat = [], []
    for j, seg in enumerate(source_segments):
        src = turn.sources[seg.ref if seg.ref is not None else j]
        source_scores.append(SourceScore(
            index=j + 1, title=src.title, heading=src.heading, source=src.source, retrieval_score=src.score,
            dense_score=src.dense_score, bm25_score=src.bm25_score,
            attention_share=float(sum(weights[seg.start:seg.end])),
            ablation_importance=importance[j] if effects else None))
        source_heat.append(_content_heat(tok, prompt_ids[seg.start:seg.end], weights[seg.start:seg.end], src.text))
    message_seg = next(s for s in turn.segments if s.kind == "message")
    message_heat = _content_heat(tok, prompt_ids[message_seg.start:message_seg.end],
                                 weights[message_seg.start:message_seg.end], message_seg.text)

    answer, pieces = _answer_text_and_tokens(tok, answer_ids)
    sentences = _sentences(answer, pieces, effects, config, len(answer_ids))
    logprobs = list(turn.answer_logprobs) if len(turn.answer_logprobs) == len(answer_ids) else base_lp.tolist()
    confidence = _confidence(turn, logprobs, pieces, [turn.sources[s.ref if s.ref is not None else i]
                                                      for i, s in enumerate(source_segments)],
                             [s.ablation_importance for s in source_scores],
                             sum(s.attention_share for s in source_scores), config)
    timings["render"] = time.perf_counter() - t0
    timings["total"] = time.perf_counter() - started
    return Explanation(
        turn_id=turn.id, answer=answer.strip() or turn.answer, segments=segments, source_scores=source_scores,
        message_heat=message_heat, source_heat=source_heat, sentences=sentences, confidence=confidence,
        history_importance=float(history_effect.mean()) if history_effect is not None else None,
        method=method, layers=layers, timings=timings, notes=notes,
    )


# -- terminal ------------------------------------------------------------------

def _fmt(x: float | None, digits: int = 3) -> str:
    return "—" if x is None else f"{x:.{digits}f}"


def format_table(expl: Explanation) -> str:
    """Plain-text tables for ``/explain`` in the terminal chat."""
    lines = ["Prompt segments — attention: share of the answer's attention; "
             "ablation: how much less likely the answer becomes without it (nats/token)."]
    lines.append(f"{'segment':<12} {'tokens':>6} {'attention':>9} {'per-token':>9} {'ablation':>9}")
    for s in expl.segments:
        lines.append(f"{s.label:<12} {s.end - s.start:>6} {s.attention_share:>9.3f} {s.attention_per_token:>9.2f} "
                     f"{_fmt(s.ablation_importance):>9}")
    if expl.history_importance is not None:
        lines.append(f"{'(history)':<12} {'':>6} {'':>9} {'':>9} {expl.history_importance:>9.3f}")
    if expl.source_scores:
        lines.append("")
        lines.append(f"Sources (ablation: {expl.method})")
        lines.append(f"{'#':>3} {'retrieval':>9} {'attention':>9} {'ablation':>9}  document")
        for s in expl.source_scores:
            where = section_path(s.title, s.heading) or s.source
            lines.append(f"[{s.index}] {s.retrieval_score:>9.3f} {s.attention_share:>9.3f} "
                         f"{_fmt(s.ablation_importance):>9}  {where} ({s.source})")
    if expl.sentences:
        lines.append("")
        lines.append("Answer sentences and the source that supports each most:")
        for sent in expl.sentences:
            mark = f"[{sent.source}]" if sent.source else "[-]"
            lines.append(f"{mark:>4} {sent.text}  (support {sent.support:.3f})")
    c = expl.confidence
    lines.append("")
    lines.append(f"Confidence: {c.label} — mean token probability {c.mean_prob:.2f}, lowest {c.min_prob:.2f}; "
                 f"top retrieval score {_fmt(c.retrieval_top_score, 2)}; "
                 + ("grounded in the sources" if c.grounded else "NOT grounded in any source"))
    if c.low_confidence_spans:
        lines.append("Unsure about: " + "; ".join(repr(s) for s in c.low_confidence_spans[:6]))
    for note in expl.notes:
        lines.append(f"note: {note}")
    lines.append(f"({expl.timings.get('total', 0.0):.2f} s)")
    return "\n".join(lines)
