"""Turn the engine's conversations into what a chat widget shows, and back.

Converts ``Conversation``/``Turn`` values into Gradio ``messages`` dicts
(answers, collapsible sources, a discreet intent/language line).  Knows
nothing about Gradio's components; the engine knows nothing about this.
"""

from __future__ import annotations

import html
import re
from typing import Any

from .types import Conversation, Turn


_CODE = re.compile(r"(```.*?(?:```|$)|`[^`\n]+`)", re.S)


def escape(text: str) -> str:
    """Model output and document text are shown as text, never as HTML."""
    return html.escape(text, quote=False)


def escape_markdown(text: str) -> str:
    """Escape HTML outside code spans and fences (inside them Markdown shows text verbatim already),
    so answers keep their Markdown and code rendering but never inject HTML."""
    parts = _CODE.split(text)
    return "".join(p if i % 2 else escape(p) for i, p in enumerate(parts))


def sources_markdown(turn: Turn) -> str:
    lines = []
    for i, s in enumerate(turn.sources, start=1):
        parts = (s.heading,) if s.title and s.heading.startswith(s.title) else (s.title, s.heading)
        where = " › ".join(escape(p) for p in parts if p) or escape(s.source)
        page = f", page {s.page}" if s.page else ""
        snippet = escape(" ".join(s.text.split())[:240])
        lines.append(f"**[{i}] {where}**{page} — `{escape(s.source)}` (score {s.score:.2f})\n\n> {snippet}")
    return "\n\n".join(lines)


def meta_line(turn: Turn) -> str:
    bits = []
    if turn.language and turn.language != "unknown":
        bits.append(f"language: {turn.language}")
    if turn.intent:
        bits.append(f"intent: {turn.intent}")
    if turn.dropped_turns:
        bits.append(f"{len(turn.dropped_turns)} older messages are outside the model's context")
    return " · ".join(bits)


def turn_messages(turn: Turn, streaming_text: str | None = None) -> list[dict[str, Any]]:
    """The chat bubbles of one turn: user, answer, then (collapsible) sources."""
    answer = streaming_text if streaming_text is not None else turn.answer
    if turn.finish_reason == "cancelled" and streaming_text is None:
        answer += " …(stopped)"
    messages: list[dict[str, Any]] = [
        {"role": "user", "content": escape(turn.user)},
        {"role": "assistant", "content": escape_markdown(answer) or "…"},
    ]
    if turn.sources and streaming_text is None:
        messages.append({
            "role": "assistant",
            "content": sources_markdown(turn),
            "metadata": {"title": f"Sources ({len(turn.sources)})", "status": "done", "id": f"src-{turn.id}"},
        })
    return messages


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


def conversation_messages(conv: Conversation | None) -> list[dict[str, Any]]:
    if conv is None:
        return []
    out: list[dict[str, Any]] = []
    for turn in conv.turns:
        out.extend(turn_messages(turn))
    return out
