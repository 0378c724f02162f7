"""Typed values that flow through one turn: ``Segment``, ``Prompt``, ``Turn``,
``Conversation``, and the events ``Engine.respond`` yields.  Plain dataclasses with JSON round-trips (the store keeps
them as JSON); no behaviour beyond that.
"""

from __future__ import annotations

import time
import uuid
from dataclasses import asdict, dataclass, field
from typing import Any, Literal

SegmentKind = Literal["system", "summary", "history", "source", "message"]


@dataclass
class Segment:
    """A contiguous token span ``[start, end)`` of the prompt and what it holds."""

    kind: SegmentKind
    label: str
    start: int
    end: int
    text: str = ""
    """The content the segment carries (without template markup)."""
    ref: int | None = None
    """Index of the source (in ``Turn.sources``) or history turn it stands for."""


@dataclass
class Prompt:
    """A rendered prompt: chat messages, their token ids and the segment spans."""

    messages: list[dict[str, str]]
    input_ids: list[int]
    segments: list[Segment]
    dropped_turns: list[str] = field(default_factory=list)
    """Ids of history turns that did not fit the token budget."""
    budget: int = 0

    @property
    def shared_until(self) -> int:
        """Where the beginning every conversation shares ends: the system segment (chat template and
        system prompt; the sources' random data tag comes after it), or 0 when there is none to split at."""
        first = self.segments[0] if self.segments else None
        return first.end if first is not None and first.kind == "system" and first.end < len(self.input_ids) else 0

    def segment(self, label: str) -> Segment:
        for seg in self.segments:
            if seg.label == label:
                return seg
        raise KeyError(label)


def shown_source(source: str) -> str:
    """How a source is named to the person chatting: a web page by its address, a file by its name — not
    by the folders of the server it was indexed on (``/srv/acme/docs/en/refunds.md`` → ``refunds.md``)."""
    if "://" in source:
        return source
    return source.replace("\\", "/").rstrip("/").rsplit("/", 1)[-1] or source


def section_path(title: str, heading: str, separator: str = " > ") -> str:
    """Where a passage sits: its document's title, then its headings (``heading``, " > "-joined as the index
    keeps it), the title once.  A Markdown file's top heading is its title, so its heading path begins with
    the title again: "Refunds > Refunds > Card payments" is shown as "Refunds > Card payments".  Empty when
    neither is known."""
    parts = heading.split(" > ") if heading else []
    if parts and title and parts[0].strip() == title.strip():
        parts = parts[1:]
    return separator.join(p for p in (title, *parts) if p)


@dataclass
class Source:
    """A retrieved passage as a turn keeps it (decoupled from the index's ``Hit``)."""

    chunk_id: str
    doc_id: str
    text: str
    source: str
    title: str = ""
    heading: str = ""
    page: int | None = None
    language: str = ""
    dense_score: float = 0.0
    bm25_score: float = 0.0
    score: float = 0.0

    @classmethod
    def from_hit(cls, hit: Any) -> "Source":
        return cls(**{k: getattr(hit, k) for k in cls.__dataclass_fields__ if hasattr(hit, k)})


@dataclass
class Turn:
    """One exchange: the user's message, the answer and everything that shaped it."""

    user: str
    answer: str = ""
    id: str = field(default_factory=lambda: uuid.uuid4().hex[:16])
    created_at: float = field(default_factory=time.time)
    language: str = "unknown"
    language_confidence: float = 0.0
    intent: str = "question"
    intent_confidence: float = 0.0
    intents: list[tuple[str, float]] = field(default_factory=list)
    entities: list[dict[str, Any]] = field(default_factory=list)
    route: str = "answer"
    """``answer`` (retrieval + generation), ``reply``, ``handoff`` or ``fallback``."""
    query: str = ""
    """The retrieval query actually used (follow-up aware)."""
    query_rewrite: str = ""
    """``query`` rewritten into the documents' language and searched beside it (``assistant.crosslingual``),
    or "" where the question's language is the documents' own."""
    sources: list[Source] = field(default_factory=list)
    prompt_ids: list[int] = field(default_factory=list)
    segments: list[Segment] = field(default_factory=list)
    answer_ids: list[int] = field(default_factory=list)
    answer_logprobs: list[float] = field(default_factory=list)
    dropped_turns: list[str] = field(default_factory=list)
    finish_reason: str = "stop"
    model: str = ""
    timings: dict[str, float] = field(default_factory=dict)
    citations: list[tuple[int, int, int]] = field(default_factory=list)
    """(start, end, n): the answer's characters [start, end) come from ``sources[n - 1]``
    (``assistant.explain.citations``: word overlap when the answer is finished, Explain's once explained)."""
    citations_by: str = ""
    """Who placed the markers: "overlap" or "explain"."""

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> "Turn":
        data = dict(data)
        data["sources"] = [Source(**s) for s in data.get("sources", [])]
        data["segments"] = [Segment(**s) for s in data.get("segments", [])]
        data["intents"] = [tuple(x) for x in data.get("intents", [])]
        data["citations"] = [tuple(x) for x in data.get("citations", [])]
        known = cls.__dataclass_fields__
        return cls(**{k: v for k, v in data.items() if k in known})


@dataclass
class Conversation:
    """A conversation: its turns, carried-over slots and running summary."""

    id: str = field(default_factory=lambda: uuid.uuid4().hex)
    owner: str = ""
    """Session id of the browser/user that owns it; only the owner sees it."""
    title: str = ""
    turns: list[Turn] = field(default_factory=list)
    slots: dict[str, str] = field(default_factory=dict)
    """Entities carried over between turns (``order_id`` → ``48213``)."""
    summary: str = ""
    """Running summary of turns folded out of the context window."""
    summarized_turns: list[str] = field(default_factory=list)
    """Ids of the turns the summary stands for."""
    created_at: float = field(default_factory=time.time)

    @property
    def languages(self) -> list[str]:
        return [t.language for t in self.turns if t.language and t.language != "unknown"]

    @property
    def intent_history(self) -> list[str]:
        return [t.intent for t in self.turns]


@dataclass
class TurnStarted:
    """Understanding and retrieval are done; generation is about to start."""

    turn: Turn


@dataclass
class TokenEvent:
    text: str


@dataclass
class TurnFinished:
    turn: Turn
    error: str | None = None
    """Set when generation failed; the turn is stored with what was produced."""


EngineEvent = TurnStarted | TokenEvent | TurnFinished
