"""What Explain is asked for and what it answers: ``ExplainConfig`` and the ``Explanation`` it returns
(segment shares, source scores, per-sentence citations, confidence).

Shared by the passes (``passes``), their driver (``explainer``) and the view (``view``);
it computes nothing.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal, NamedTuple

from ..errors import ConfigError


AblationMode = Literal["leave_one_out", "sampled", "auto", "none"]
HeadAggregation = Literal["mean", "max"]
ABLATION_MODES = ("leave_one_out", "sampled", "auto", "none")
HEAD_AGGREGATIONS = ("mean", "max")


@dataclass
class ExplainConfig:
    """How an explanation is computed."""

    layers: Literal["last_half", "all"] | list[int] = "last_half"
    """Layers whose attention is averaged: ``last_half``, ``all`` or a list of layer indices (negative allowed)."""
    heads: HeadAggregation = "mean"
    """How attention heads are combined within a layer."""
    ignore_sink: bool = True
    """Leave the first prompt token (an attention sink in most LLMs) out before renormalising."""
    ablation: AblationMode = "auto"
    """``leave_one_out`` (one pass per source), ``sampled`` (random subsets + linear fit), ``auto`` or ``none``."""
    max_leave_one_out: int = 8
    """``auto`` uses leave-one-out up to this many sources and sampled ablations beyond."""
    n_samples: int = 32
    """Number of random source subsets for ``sampled`` ablations."""
    seed: int = 0
    """Seed of the random subsets (explanations are reproducible)."""
    reuse_prefix_cache: bool = True
    """Reuse the full prompt's KV cache for the unchanged prefix of each ablated prompt."""
    cite_min: float = 0.05
    """Smallest per-token log-likelihood drop (nats) for a sentence to cite a source."""
    grounded_min: float = 0.05
    """Smallest per-token importance (nats) of the best source for the answer to count as grounded."""
    low_prob: float = 0.25
    """Answer tokens below this probability form the low-confidence spans."""

    def __post_init__(self) -> None:
        if isinstance(self.layers, str):
            if self.layers not in ("last_half", "all"):
                raise ConfigError(f"explain.layers must be 'last_half', 'all' or a list of ints; got {self.layers!r}")
        else:
            self.layers = list(self.layers)
            if not self.layers or not all(isinstance(i, int) for i in self.layers):
                raise ConfigError(f"explain.layers must be a non-empty list of layer indices; got {self.layers!r}")
        if self.heads not in HEAD_AGGREGATIONS:
            raise ConfigError(f"explain.heads must be one of {HEAD_AGGREGATIONS}; got {self.heads!r}")
        if self.ablation not in ABLATION_MODES:
            raise ConfigError(f"explain.ablation must be one of {ABLATION_MODES}; got {self.ablation!r}")
        if self.n_samples < 4:
            raise ConfigError(f"explain.n_samples must be at least 4; got {self.n_samples}")
        if self.max_leave_one_out < 0:
            raise ConfigError(f"explain.max_leave_one_out must be >= 0; got {self.max_leave_one_out}")
        if not 0.0 < self.low_prob < 1.0:
            raise ConfigError(f"explain.low_prob must be between 0 and 1; got {self.low_prob}")


@dataclass
class SegmentShare:
    """One prompt segment and how much the answer relied on it."""

    label: str
    kind: str
    start: int
    end: int
    attention_share: float
    """Fraction of the answer's attention to the prompt that went to this span (all shares sum to 1)."""
    attention_per_token: float
    """``attention_share`` divided by the span's length, relative to the prompt's average (1.0 = average)."""
    ablation_importance: float | None = None
    """Per-token log-likelihood drop when this source is left out (sources only)."""


@dataclass
class SourceScore:
    """One source in the prompt: retrieval scores next to attention and ablation."""

    index: int
    """Its number in the prompt, ``[index]`` (1-based)."""
    title: str
    heading: str
    source: str
    retrieval_score: float
    dense_score: float
    bm25_score: float
    attention_share: float
    ablation_importance: float | None


class SentenceCitation(NamedTuple):
    """A sentence of the answer, the source that supports it most (1-based) and by how much."""

    text: str
    source: int | None
    support: float
    """Per-token log-likelihood drop of this sentence without the cited source (nats)."""


@dataclass
class Confidence:
    mean_prob: float
    min_prob: float
    low_confidence_spans: list[str]
    retrieval_top_score: float | None
    grounded: bool
    """Whether some source measurably supports the answer (ablation; attention when ablation is off)."""
    label: Literal["high", "medium", "low"]


@dataclass
class Explanation:
    """Everything the Explain panel and ``/explain`` show for one answer."""

    turn_id: str
    answer: str
    segments: list[SegmentShare]
    source_scores: list[SourceScore]
    message_heat: list[tuple[str, float]]
    """Message tokens (decoded text, share of the answer's attention)."""
    source_heat: list[list[tuple[str, float]]]
    """Per source, in the order of ``source_scores``: its text's tokens with their attention share."""
    sentences: list[SentenceCitation]
    confidence: Confidence
    history_importance: float | None = None
    """Per-token log-likelihood drop when the whole history (and summary) is left out."""
    method: str = "none"
    """Ablation method used: ``leave_one_out``, ``sampled`` or ``none``."""
    layers: list[int] = field(default_factory=list)
    timings: dict[str, float] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)


# -- sentence splitting --------------------------------------------------------
