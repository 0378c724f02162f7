"""Typed values that flow through retrieval: chunks, hits, documents, reports.

Plain frozen dataclasses; this module knows nothing about files, models or
indexes, only the shape of what they exchange.
"""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass(frozen=True)
class Section:
    """A piece of a document as a reader found it, before chunking."""

    text: str
    heading: tuple[str, ...] = ()
    """Heading path from the document's top, e.g. ("Install", "Windows")."""
    page: int | None = None
    """1-based page number (PDF only)."""
    atomic: bool = False
    """True for an FAQ entry: becomes exactly one chunk, never merged or split unless too long."""


@dataclass(frozen=True)
class ExtractedDocument:
    """What a reader returns for one file."""

    source: str
    """Path or URL the text came from (``upload:NAME`` for uploads)."""
    title: str
    sections: tuple[Section, ...]
    content_hash: str
    """sha256 of the raw bytes: decides whether a re-added file changed."""
    kind: str
    """Reader used: md, txt, html, pdf, docx, faq."""
    hidden: tuple[str, ...] = ()
    """Text the file styles so a reader cannot see it (white, zero-size, invisible), as the reader found
    it; ``retrieval.screening`` flags the chunks holding it."""


@dataclass(frozen=True)
class Chunk:
    """One retrievable passage with everything a citation needs."""

    chunk_id: str
    doc_id: str
    text: str
    source: str
    title: str
    heading: tuple[str, ...]
    page: int | None
    language: str
    """ISO 639-1 code detected for the chunk, or "und" when unsure."""
    content_hash: str
    """sha256 of ``text`` (with heading context): equal hashes reuse stored embeddings."""
    position: int
    """0-based order of the chunk within its document."""
    tags: tuple[str, ...] = ()
    flags: tuple[str, ...] = ()
    """Why ``retrieval.screening`` holds this chunk back ("instruction: “ignore all previous …”"); () when
    nothing was found.  A flagged chunk is left out of search until its document is allowed."""

    @property
    def heading_path(self) -> str:
        return " > ".join(self.heading)


@dataclass(frozen=True)
class Hit:
    """A search result: the chunk, its provenance and the scores of both sides."""

    chunk_id: str
    doc_id: str
    text: str
    source: str
    title: str
    heading: str
    """Heading path joined with " > " ("" when the chunk has none)."""
    page: int | None
    language: str
    dense_score: float
    """Cosine similarity of query and chunk embeddings (0.0 when not computed)."""
    bm25_score: float
    """Raw BM25 score (0.0 when no query term matched)."""
    score: float
    """Fused score in [0, 1]; higher is better.  Comparable within one query."""
    position: int = 0
    tags: tuple[str, ...] = ()


@dataclass(frozen=True)
class DocumentInfo:
    """One ingested document as listed by ``KnowledgeIndex.documents()``."""

    doc_id: str
    source: str
    title: str
    kind: str
    content_hash: str
    chunks: int
    languages: tuple[str, ...]
    tags: tuple[str, ...] = ()
    added_at: str = ""
    flagged: int = 0
    """Chunks that screening flagged."""
    allowed: bool = False
    """An administrator allowed its flagged chunks into answers."""


@dataclass(frozen=True)
class FlaggedPassage:
    """A chunk screening flagged, for an administrator to judge."""

    doc_id: str
    source: str
    title: str
    chunk_id: str
    position: int
    text: str
    flags: tuple[str, ...]
    allowed: bool
    """True: its document is allowed, so the passage is searched like any other."""


@dataclass(frozen=True)
class FileError:
    """A file that could not be ingested, and why."""

    path: str
    reason: str

    def __str__(self) -> str:
        return f"{self.path}: {self.reason}"


@dataclass
class IngestReport:
    """What one ``add_paths`` / ``add_upload`` call did."""

    added: list[str] = field(default_factory=list)
    """doc_ids of new documents."""
    updated: list[str] = field(default_factory=list)
    """doc_ids whose content changed and were re-chunked."""
    unchanged: list[str] = field(default_factory=list)
    """doc_ids skipped because their bytes did not change."""
    errors: list[FileError] = field(default_factory=list)
    chunks_added: int = 0
    chunks_embedded: int = 0
    """Chunks sent to the embedding model (chunks with a known hash reuse stored vectors)."""
    flagged: dict[str, int] = field(default_factory=dict)
    """doc_id -> chunks screening flagged in it (held out of answers until allowed)."""
    seconds: float = 0.0

    @property
    def ok(self) -> bool:
        return not self.errors

    def summary(self) -> str:
        parts = [
            f"{len(self.added)} added", f"{len(self.updated)} updated", f"{len(self.unchanged)} unchanged",
            f"{self.chunks_added} chunks ({self.chunks_embedded} embedded)", f"{len(self.errors)} failed",
        ]
        if self.flagged:
            parts.append(f"{sum(self.flagged.values())} passages in {len(self.flagged)} documents flagged "
                         f"and held out of answers (see: assistant index flagged)")
        return ", ".join(parts) + f" in {self.seconds:.1f}s"
