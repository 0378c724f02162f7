"""Render an ``Explanation`` for the web UI: data for a grouped bar chart
(``gr.BarPlot``), HTML with highlighted tokens, and Markdown with the
confidence, a plain-language sentence per chart, source cards and the answer
with ``[n]`` citation markers.

Pure functions: they know nothing about Gradio components or the model, and
every piece of model or document text goes through ``assistant.safe_markdown``
before it reaches the page (sources are untrusted data): escaped in the HTML,
literal in the Markdown (no link, image or tag can form).
"""

from __future__ import annotations

from typing import Any

from ..safe_markdown import escape_html, literal_markdown
from ..types import section_path, shown_source
from .types import Explanation

ATTENTION_SENTENCE = (
    "**Attention** — the share of the model's attention that went to each source while it wrote the answer: "
    "what it looked at, not necessarily what changed its answer."
)
ABLATION_SENTENCE = (
    "**Effect of removing it** — how much less likely the model's answer becomes when that source is taken out "
    "of the prompt (0 = no effect, negative = the answer got more likely without it). This is the more faithful measure."
)
HEAT_SENTENCE = "Darker words drew more of the model's attention while it wrote the answer."
CONFIDENCE_WORDS = {
    "high": "High confidence: the model was sure of its words and a source supports the answer.",
    "medium": "Medium confidence: check the cited sources before relying on the answer.",
    "low": "Low confidence: the model was unsure or no source supports the answer; treat it with care.",
}


def importance_chart(expl: Explanation) -> Any:
    """A DataFrame with columns ``source``, ``method``, ``value`` for a grouped ``gr.BarPlot``.

    Both methods are scaled to a share of their total over the sources (positive
    ablation effects only) so that the bars sit on one axis; raw values are in
    the summary and in ``/explain``.
    """
    import pandas as pd

    rows = []
    att_total = sum(s.attention_share for s in expl.source_scores) or 1.0
    abl = [max(s.ablation_importance or 0.0, 0.0) for s in expl.source_scores]
    abl_total = sum(abl) or 1.0
    for s, a in zip(expl.source_scores, abl):
        name = f"[{s.index}] {s.title or shown_source(s.source)}"[:40]
        rows.append({"source": name, "method": "attention", "value": s.attention_share / att_total})
        if s.ablation_importance is not None:
            rows.append({"source": name, "method": "effect of removing it", "value": a / abl_total})
    return pd.DataFrame(rows, columns=["source", "method", "value"])


def _heat_spans(tokens: list[tuple[str, float]], scale: float) -> str:
    out = []
    for text, weight in tokens:
        alpha = min(1.0, weight / scale) if scale > 0 else 0.0
        safe = escape_html(text).replace("\n", "<br>")
        out.append(f'<span style="background: rgba(255, 140, 0, {alpha * 0.85:.2f})" '
                   f'title="{weight:.4f}">{safe}</span>')
    return "".join(out)


def highlight_html(expl: Explanation) -> str:
    """The message and each source with every token shaded by its attention weight."""
    all_weights = [w for _, w in expl.message_heat] + [w for heat in expl.source_heat for _, w in heat]
    scale = max(all_weights, default=0.0)
    parts = [f'<div class="explain-heat"><p><em>{escape_html(HEAT_SENTENCE)}</em></p>',
             "<h4>Your message</h4>", f"<p>{_heat_spans(expl.message_heat, scale)}</p>"]
    for score, heat in zip(expl.source_scores, expl.source_heat):
        title = section_path(score.title, score.heading) or shown_source(score.source)
        parts.append(f"<h4>[{score.index}] {escape_html(title)}</h4>")
        parts.append(f"<p>{_heat_spans(heat, scale)}</p>")
    parts.append("</div>")
    return "\n".join(parts)


def _num(x: float | None, digits: int = 2) -> str:
    return "—" if x is None else f"{x:.{digits}f}"


def cited_answer(expl: Explanation) -> str:
    """The answer as Markdown, each sentence followed by its ``[n]`` marker (escaped text)."""
    if not expl.sentences:
        return literal_markdown(expl.answer)
    out = []
    for sent in expl.sentences:
        mark = f" \\[{sent.source}\\]" if sent.source else ""
        out.append(literal_markdown(sent.text) + mark)
    return " ".join(out)


def summary_markdown(expl: Explanation) -> str:
    """Confidence, what each chart means, source cards and the answer with citations."""
    c = expl.confidence
    lines = [f"### Confidence: {c.label}", CONFIDENCE_WORDS[c.label], ""]
    lines.append(f"- average word probability {c.mean_prob:.0%}, lowest {c.min_prob:.0%}")
    lines.append(f"- best retrieval score {_num(c.retrieval_top_score)}")
    lines.append("- " + ("the answer is supported by the sources" if c.grounded
                         else "**the answer is not grounded in any source**"))
    if c.low_confidence_spans:
        lines.append("- unsure about: " + ", ".join(f"“{literal_markdown(s)}”" for s in c.low_confidence_spans[:5]))
    lines += [f"- {literal_markdown(note)}" for note in expl.notes]  # e.g. which weights wrote and explained it
    lines += ["", "### Answer with citations", cited_answer(expl), "", "### What the charts mean",
              "- " + ATTENTION_SENTENCE, "- " + ABLATION_SENTENCE, "- " + HEAT_SENTENCE, ""]
    if expl.source_scores:
        lines.append("### Sources")
        for s in expl.source_scores:
            title = section_path(s.title, s.heading) or shown_source(s.source)
            lines.append(f"**[{s.index}] {literal_markdown(title)}** — {literal_markdown(shown_source(s.source))}  ")
            lines.append(f"retrieval {s.retrieval_score:.2f} (dense {s.dense_score:.2f}, keyword {s.bm25_score:.2f}) · "
                         f"attention {s.attention_share:.0%} · effect of removing it {_num(s.ablation_importance, 3)}")
            lines.append("")
    if expl.history_importance is not None:
        lines.append(f"Earlier conversation: effect of removing it {expl.history_importance:.3f}")
    return "\n".join(lines).rstrip() + "\n"
