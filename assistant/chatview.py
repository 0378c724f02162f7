"""Turn the engine's conversations into what a chat widget shows, and back.

Converts ``Conversation``/``Turn`` values into Gradio ``messages`` dicts whose
content is ready-made HTML (answers, collapsible sources) and a discreet
intent/language line.  Every piece of model or document text goes through
``assistant.safe_markdown`` here; the chat shows the HTML as it is (no second
Markdown pass).  Knows nothing about Gradio's components; the engine knows
nothing about this.
"""

from __future__ import annotations

import html
from typing import Any, Sequence

from .safe_markdown import escape_html, render_markdown
from .types import Conversation, Turn


def sources_html(turn: Turn) -> str:
    """The retrieved passages of a turn as HTML: title, page, file, score and a short snippet (as text)."""
    blocks = []
    for i, s in enumerate(turn.sources, start=1):
        parts = (s.heading,) if s.title and s.heading.startswith(s.title) else (s.title, s.heading)
        where = " › ".join(escape_html(p) for p in parts if p) or escape_html(s.source)
        page = f", page {s.page}" if s.page else ""
        snippet = escape_html(" ".join(s.text.split())[:240])
        blocks.append(f"<p><strong>[{i}] {where}</strong>{page} — <code>{escape_html(s.source)}</code> "
                      f"(score {s.score:.2f})</p>\n<blockquote>{snippet}</blockquote>")
    return "\n".join(blocks)


def meta_line(turn: Turn) -> str:
    bits = []
    if turn.language and turn.language != "unknown":
        bits.append(f"language: {turn.language}")
    if turn.intent:
        bits.append(f"intent: {turn.intent}")
    if turn.dropped_turns:
        bits.append(f"{len(turn.dropped_turns)} older messages are outside the model's context")
    return " · ".join(bits)


def turn_messages(turn: Turn, streaming_text: str | None = None,
                  image_origins: Sequence[str] = ()) -> list[dict[str, Any]]:
    """The chat bubbles of one turn as HTML: user (text), answer (Markdown made safe; images load only
    from ``image_origins``), then (collapsible) sources."""
    answer = streaming_text if streaming_text is not None else turn.answer
    if turn.finish_reason == "cancelled" and streaming_text is None:
        answer += " …(stopped)"
    messages: list[dict[str, Any]] = [
        {"role": "user", "content": escape_html(turn.user)},
        {"role": "assistant", "content": render_markdown(answer, image_origins) or "…"},
    ]
    if turn.sources and streaming_text is None:
        messages.append({
            "role": "assistant",
            "content": sources_html(turn),
            "metadata": {"title": f"Sources ({len(turn.sources)})", "status": "done", "id": f"src-{turn.id}"},
        })
    return messages


def edited_text(value: str) -> str:
    """The text of a user bubble the user edited: the bubble holds it HTML-escaped (``turn_messages``),
    and the edit box starts from that."""
    return html.unescape(value)


def message_turn_ids(conv: Conversation | None) -> list[str]:
    """The turn id behind each bubble of ``conversation_messages(conv)`` (same order and length)."""
    ids: list[str] = []
    for turn in conv.turns if conv else []:
        ids.extend(turn.id for _ in turn_messages(turn))
    return ids


def message_roles(conv: Conversation | None) -> list[str]:
    """``user`` / ``answer`` / ``sources`` for each bubble of ``conversation_messages(conv)``."""
    roles: list[str] = []
    for turn in conv.turns if conv else []:
        roles.extend(["user", "answer", "sources"][: len(turn_messages(turn))])
    return roles


def conversation_messages(conv: Conversation | None, image_origins: Sequence[str] = ()) -> list[dict[str, Any]]:
    """Every bubble of a conversation (see ``turn_messages``)."""
    if conv is None:
        return []
    out: list[dict[str, Any]] = []
    for turn in conv.turns:
        out.extend(turn_messages(turn, image_origins=image_origins))
    return out
