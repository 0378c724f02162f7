"""RetrievalConfig: every tunable of chunking, indexing and search in one place.

Knows nothing about files or models; the values were chosen by measurement on
xquad-dev (see bench/retrieval.py and bench/results/retrieval.md).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from assistant.errors import ConfigError

ApproximateKind = Literal["hnsw", "ivf"]
Device = Literal["auto", "cpu", "cuda"]
APPROXIMATE_KINDS = ("hnsw", "ivf")
DEVICES = ("auto", "cpu", "cuda")


@dataclass
class RetrievalConfig:
    """How documents are chunked, indexed and searched."""

    chunk_tokens: int = 200
    """Upper bound of a chunk's length in tokens (words; one CJK/Thai character counts as one)."""
    overlap_tokens: int = 40
    """Tokens repeated from the end of a split chunk at the start of the next one."""
    approximate_above: int = 50_000
    """Collections with more vectors than this use an approximate FAISS index; smaller ones search exactly
    (exact search of 100k 384-d vectors took ~50 ms on 2 busy cores; see bench/results/retrieval.md)."""
    approximate_kind: ApproximateKind = "hnsw"
    """Approximate index type: ``hnsw`` (no training, best recall) or ``ivf`` (faster to build at millions)."""
    hnsw_m: int = 32
    """HNSW graph degree."""
    hnsw_ef_search: int = 128
    """HNSW search breadth; higher is slower and more exact."""
    ivf_nprobe: int = 32
    """IVF lists visited per query."""
    device: Device = "auto"
    """``auto`` moves the FAISS index to a GPU when faiss has one."""
    dense_weight: float = 0.5
    """Weight of the dense side for a query language the embedder fully covers (0..1); BM25 gets the rest."""
    uncertain_coverage: float = 0.5
    """Coverage assumed when the query's language cannot be told (short Latin-script messages)."""
    candidates: int = 50
    """Candidates taken from each side before fusion."""
    sentence_weight: float = 0.5
    """Share of a candidate's dense score that comes from its best-matching sentence (its sentences are
    embedded one by one beside the whole chunk, ``chunking.sentences``); the chunk's own cosine gets the
    rest.  A question asks about one fact, and a chunk's single vector blurs it among the others, most of all
    across languages.  0 embeds no sentences (ingestion about twice as fast) and ranks by whole chunks.
    Chosen on the dev half of xquad-dev's questions (dense R@1, paragraphs in English: 0.5 against 0 zh
    0.752 -> 0.826, ar 0.655 -> 0.752; same language zh 0.900 -> 0.929, ar 0.842 -> 0.887, hi 0.890 ->
    0.926; 0.3 was lower everywhere, 0.7 lower or equal except hi 0.929).  On the report half through the index (``bench/retrieval.py
    --split report``): cross-language hybrid R@1 zh 0.708 -> 0.792, ar 0.748 -> 0.780, mean of 11 0.822 ->
    0.869; same language ar 0.916 -> 0.932, en 0.988 -> 0.984; ingestion 6.5 -> 4.1 chunks/s.  The
    relevance floor still reads the chunk's own cosine."""
    min_relevance: float = 0.25
    """Relevance floor where the dense side counts fully: hits below it are dropped, so an unrelated
    question gets [].  Relevance = w x cosine + (1 - w) x share of the query's IDF mass found in the
    chunk, w the language-aware dense weight.  (xquad-dev English: keeps 99.5% of questions' best hit,
    rejects 93% of off-topic xSID requests.)"""
    min_relevance_words: float = 0.10
    """Relevance floor where only words count (languages the embedder does not serve); the floor
    moves linearly between the two with the dense weight.  Word overlap separates less well, so it is
    lower, and set to keep answers rather than to reject: xquad-dev Chinese keeps R@1 0.934 at 0.10
    (0.929 at 0.12) and rejects 36% of off-topic xSID requests (47% at 0.12); the intent classifier's
    out-of-scope decision is the engine's other guard.  ``python bench/retrieval.py`` measures both."""

    min_relevance_cross: float = 0.15
    """Relevance floor for a chunk in another language than the query (the dense side alone,
    its cosine rescaled from the embedder's ``cosine_baseline``), for cross-lingual embedders (``cross_lingual``, e5) that serve the
    query's language.  Cross-language cosines of right passages overlap those of off-topic
    requests (e5: 0.77-0.86 vs 0.78-0.82 on the user guide), so this floor lets them through
    and leaves the decline to the model's instruction and the intent classifier."""

    min_relevance_dense: float = 0.30
    """A chunk in the query's language whose rescaled cosine alone reaches this passes, whatever words it
    shares, for cross-lingual embedders.  Arabic, Russian and Turkish fuse articles, prepositions and
    case endings into words ("بكاليفورنيا", in California), so a right paragraph can share few exact words
    with the question and fall under the mixed floor: on the xquad-dev tuning half (60 questions each),
    the floor dropped the gold paragraph of 8 Arabic, 4 Russian, 4 Turkish and 1 English question;
    this floor brings back 4, 3, 0 and 1 of them and lets 2 of 240 off-topic questions' best chunk
    through (their highest rescaled cosines: ar 0.22, ru 0.39, tr 0.31, en 0.28).  1.0 turns it off."""

    min_spread_dense: float = 0.25
    """A chunk passing on its cosine alone (``min_relevance_dense``) must also stand out from the
    collection: (cosine - the query's median cosine over the chunks) / (1 - median) at least this
    (``fusion.spread``).  e5 gives a Chinese request about anything a cosine of 0.84-0.87 with
    every chunk, so the cosine rule let 99% of off-topic Chinese requests through.  Chosen on the tuning
    half of xquad-dev (``python -m bench.fusion_sweep``); on the report half, questions that keep a hit
    0.991 -> 0.989, off-topic xSID requests rejected 0.649 -> 0.848 (zh 0.020 -> 0.647)."""

    lexical_confidence_coverage: float = 0.5
    """In the fusion, BM25 counts fully when its best candidate holds at least this share of the query's
    IDF mass, proportionally less below (``fusion.fuse``): a question in another language than the
    documents shares only names and numbers with them.  Chosen on the tuning half of xquad-dev's
    questions (0.5 against no scaling: same-language R@1 0.937 -> 0.946, cross-language 0.737 -> 0.810)."""

    hold_flagged: bool = True
    """Leave chunks that ``retrieval.screening`` flagged (text addressing the assistant, hidden text) out of
    search until an administrator allows their document; False: flag and list them only."""

    def __post_init__(self) -> None:
        if self.chunk_tokens < 16:
            raise ConfigError(f"retrieval.chunk_tokens must be >= 16; got {self.chunk_tokens}")
        if not 0 <= self.overlap_tokens < self.chunk_tokens // 2:
            raise ConfigError(
                f"retrieval.overlap_tokens must be >= 0 and below half of chunk_tokens ({self.chunk_tokens}); "
                f"got {self.overlap_tokens}")
        if self.approximate_above < 1:
            raise ConfigError(f"retrieval.approximate_above must be >= 1; got {self.approximate_above}")
        if self.approximate_kind not in APPROXIMATE_KINDS:
            raise ConfigError(f"retrieval.approximate_kind must be one of {APPROXIMATE_KINDS}; got {self.approximate_kind!r}")
        if self.device not in DEVICES:
            raise ConfigError(f"retrieval.device must be one of {DEVICES}; got {self.device!r}")
        for name in ("dense_weight", "uncertain_coverage", "min_relevance", "min_relevance_words", "min_relevance_cross",
                     "min_relevance_dense", "min_spread_dense", "lexical_confidence_coverage", "sentence_weight"):
            value = getattr(self, name)
            if not 0.0 <= value <= 1.0:
                raise ConfigError(f"retrieval.{name} must be between 0 and 1; got {value!r}")
        if self.lexical_confidence_coverage <= 0:
            raise ConfigError("retrieval.lexical_confidence_coverage must be above 0; got 0")
        if self.candidates < 1:
            raise ConfigError(f"retrieval.candidates must be >= 1; got {self.candidates}")
