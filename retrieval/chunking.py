"""Chunking: sections → chunks that follow structure and stay within a token bound.

Paragraphs under the same heading (and page) are packed together up to
``chunk_tokens``; a paragraph longer than that is split into windows that
overlap by ``overlap_tokens``; an FAQ entry is one chunk.  Tokens are words,
with one CJK/Thai character counted as one (see ``text.count_tokens``), a
close, model-independent stand-in for sub-word counts.  Knows nothing about
embeddings or indexes.
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import replace
from pathlib import Path

from .text import count_tokens, detect_language, token_spans
from .types import Chunk, ExtractedDocument, Section


def make_doc_id(source: str) -> str:
    """Stable, readable id: the file's stem plus a short hash of the full source."""
    stem = Path(source.split(":", 1)[-1] if source.startswith("upload:") else source).stem
    slug = re.sub(r"[^a-z0-9]+", "-", stem.lower()).strip("-")[:40] or "doc"
    return f"{slug}-{hashlib.sha1(source.encode('utf-8')).hexdigest()[:8]}"


def embedding_text(chunk: Chunk) -> str:
    """What the models see: heading context, then the passage."""
    context = " > ".join(part for part in (chunk.title, *chunk.heading) if part)
    if context and not chunk.text.startswith(context):
        return f"{context}\n{chunk.text}"
    return chunk.text


def chunk_document(doc: ExtractedDocument, doc_id: str, *, chunk_tokens: int, overlap_tokens: int,
                   tags: tuple[str, ...] = (), language: str | None = None) -> list[Chunk]:
    """Cut one extracted document into chunks, in reading order."""
    pieces: list[tuple[str, tuple[str, ...], int | None]] = []
    for group in _group(doc.sections):
        first = group[0]
        if first.atomic:
            pieces.extend((t, first.heading, first.page) for t in split_text(first.text, chunk_tokens, overlap_tokens))
            continue
        buffer: list[str] = []
        size = 0
        for paragraph in (p for s in group for p in re.split(r"\n\s*\n", s.text) if p.strip()):
            n = count_tokens(paragraph)
            if buffer and size + n > chunk_tokens:
                pieces.append(("\n\n".join(buffer), first.heading, first.page))
                buffer, size = [], 0
            if n > chunk_tokens:
                windows = split_text(paragraph, chunk_tokens, overlap_tokens)
                pieces.extend((w, first.heading, first.page) for w in windows)
                continue
            buffer.append(paragraph.strip())
            size += n
        if buffer:
            pieces.append(("\n\n".join(buffer), first.heading, first.page))
    chunks = []
    for position, (text, heading, page) in enumerate(pieces):
        chunk = Chunk(chunk_id=f"{doc_id}:{position}", doc_id=doc_id, text=text, source=doc.source,
                      title=doc.title, heading=heading, page=page,
                      language=language or detect_language(text), content_hash="", position=position, tags=tags)
        digest = hashlib.sha256(embedding_text(chunk).encode("utf-8")).hexdigest()
        chunks.append(replace(chunk, content_hash=digest))
    return chunks


def _group(sections: tuple[Section, ...]) -> list[list[Section]]:
    """Consecutive sections sharing heading and page (FAQ entries stay alone)."""
    groups: list[list[Section]] = []
    for section in sections:
        if (groups and not section.atomic and not groups[-1][0].atomic
                and groups[-1][0].heading == section.heading and groups[-1][0].page == section.page):
            groups[-1].append(section)
        else:
            groups.append([section])
    return groups


def split_text(text: str, chunk_tokens: int, overlap_tokens: int) -> list[str]:
    """Windows of at most ``chunk_tokens`` tokens overlapping by ``overlap_tokens``, cut between tokens."""
    spans = token_spans(text)
    if len(spans) <= chunk_tokens:
        return [text.strip()]
    windows = []
    step = chunk_tokens - overlap_tokens
    start = 0
    while start < len(spans):
        end = min(start + chunk_tokens, len(spans))
        begin_char = 0 if start == 0 else spans[start][0]
        end_char = len(text) if end == len(spans) else spans[end][0]
        windows.append(text[begin_char:end_char].strip())
        if end == len(spans):
            break
        start += step
    return [w for w in windows if w]


_SENTENCE_BREAK = re.compile(r"(?<=[.!?])[\"'”’)\]]*\s+|(?<=[。！？；])|(?<=[।؟۔])\s*|\s*\n(?:\s*\n|(?=\s*(?:[-*+] |\d+[.)] |#|```|\|)))\s*")
MIN_SENTENCE_TOKENS = 5
"""A piece shorter than this (a heading, a list marker, "e.g.") joins the next one."""
MAX_SENTENCES = 16
"""Sentences kept per chunk (the first ones): a chunk is at most ``chunk_tokens`` long, so this is rarely reached."""


def sentences(text: str) -> list[str]:
    """The sentences of a chunk's text, for the index's sentence vectors (``KnowledgeIndex``): cut after
    a full stop, question or exclamation mark followed by a space, after the CJK ones, the Devanagari
    danda and the Arabic question mark, at blank lines and before a list item, heading, code fence or
    table row (a hard-wrapped line goes on in the same sentence); a piece of fewer than ``MIN_SENTENCE_TOKENS``
    tokens is joined to the next.  [] when the text is one sentence (the chunk's own vector stands for it).
    Scripts written without sentence punctuation (Thai) stay one piece."""
    out: list[str] = []
    pending = ""
    for piece in _SENTENCE_BREAK.split(text):
        piece = piece.strip()
        if not piece:
            continue
        pending = f"{pending} {piece}" if pending else piece
        if count_tokens(pending) >= MIN_SENTENCE_TOKENS:
            out.append(pending)
            pending = ""
    if pending:
        if out:
            out[-1] = f"{out[-1]} {pending}"
        else:
            out.append(pending)
    return out[:MAX_SENTENCES] if len(out) > 1 else []
