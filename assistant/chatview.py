"""Turn the engine's conversations into what a chat widget shows, and back.

Converts ``Conversation``/``Turn`` values into Gradio ``messages`` dicts
(answers, collapsible sources, a discreet intent/language line).  Knows
nothing about Gradio's components; the engine knows nothing about this.
"""

from __future__ import annotations

import html
from typing import Any

from .types import Conversation, Turn


def escape(text: str) -> str:
    """Model output and document text are shown as text, never as HTML."""
    return html.escape(text, quote=False)


def sources_markdown(turn: Turn) -> str:
    lines = []
    for i, s in enumerate(turn.sources, start=1):
        where = " › ".join(escape(p) for p in (s.title, s.heading) if p) or escape(s.source)
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
        {"role": "assistant", "content": escape(answer) or "…"},
    ]
    if turn.sources and streaming_text is None:
        messages.append({
            "role": "assistant",
            "content": sources_markdown(turn),
            "metadata": {"title": f"Sources ({len(turn.sources)})", "status": "done", "id": f"src-{turn.id}"},
        })
    return messages


def conversation_messages(conv: Conversation | None) -> list[dict[str, Any]]:
    if conv is None:
        return []
    out: list[dict[str, Any]] = []
    for turn in conv.turns:
        out.extend(turn_messages(turn))
    return out
