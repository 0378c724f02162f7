"""Turn the engine's conversations into what a chat widget shows, and back.

Converts ``Conversation``/``Turn`` values into Gradio ``messages`` dicts whose
content is ready-made HTML: the answer with its ``[n]`` citation markers, its
actions (copy, regenerate, Explain) and, folded under it, its sources and the language and
intent the assistant read.  Every piece of model or document text goes through
``assistant.safe_markdown`` here; the chat shows the HTML as it is (no second
Markdown pass).  Knows nothing about Gradio's components; the engine knows
nothing about this.
"""

from __future__ import annotations

import html
import re
from typing import Any, Sequence

from ..explain import citations
from ..safe_markdown import escape_attr, escape_html, render_markdown
from ..types import Conversation, Turn, section_path, shown_source


CITE_OPEN, CITE_CLOSE = "\ue000", "\ue001"
"""Private-use characters that stand for a citation marker until the answer is HTML (removed from
the model's own text first, so it cannot forge one)."""


def sources_html(turn: Turn) -> str:
    """The retrieved passages of a turn as HTML: title, page, file, score and a short snippet (as text),
    each an anchor (``cite-<turn>-<n>``) its ``[n]`` markers open."""
    blocks = []
    for i, s in enumerate(turn.sources, start=1):
        where = escape_html(section_path(s.title, s.heading, " › ") or shown_source(s.source))
        page = f", page {s.page}" if s.page else ""
        snippet = escape_html(" ".join(s.text.split())[:240])
        blocks.append(f'<div class="passage" id="cite-{escape_attr(turn.id)}-{i}"><p><strong>[{i}] {where}</strong>{page}'
                      f" — <code>{escape_html(shown_source(s.source))}</code> (score {s.score:.2f})</p>\n"
                      f"<blockquote>{snippet}</blockquote></div>")
    return "\n".join(blocks)


def meta_line(turn: Turn) -> str:
    bits = []
    if turn.language and turn.language != "unknown":
        bits.append(f"language: {turn.language}")
    if turn.intent:
        bits.append(f"intent: {turn.intent}")
    if turn.query_rewrite:
        bits.append(f"also searched as: {turn.query_rewrite}")
    if turn.dropped_turns:
        bits.append(f"{len(turn.dropped_turns)} older messages are outside the model's context")
    return " · ".join(bits)


def _cite_link(turn: Turn, n: int) -> str:
    if not 1 <= n <= len(turn.sources):
        return ""
    s = turn.sources[n - 1]
    title = escape_attr(section_path(s.title, s.heading, " › ") or shown_source(s.source))
    tid = escape_attr(turn.id)
    return (f'<sup class="cite"><a href="#cite-{tid}-{n}" class="cite-link" data-turn="{tid}" data-n="{n}" '
            f'title="{title}">[{n}]</a></sup>')


def answer_html(turn: Turn, text: str, image_origins: Sequence[str] = (), cited: bool = True) -> str:
    """The answer as safe HTML, with ``[n]`` links after the sentences ``turn.citations`` names."""
    text = text.replace(CITE_OPEN, "").replace(CITE_CLOSE, "")
    if cited and turn.citations and turn.sources:
        text = citations.mark(text, turn.citations, CITE_OPEN, CITE_CLOSE)
    out = render_markdown(text, image_origins) or "…"
    return re.sub(f"{CITE_OPEN}(\\d+){CITE_CLOSE}", lambda m: _cite_link(turn, int(m.group(1))), out)


REGENERATE_TIP = {
    True: "Answer this question again",
    False: "Answer this question again in a new conversation that ends here; this one stays as it is",
}


def details_html(turn: Turn, last: bool = True) -> str:
    """What sits under a finished answer: its actions (copy; regenerate, in place for the ``last`` answer,
    else in a branch; Explain for an answer the model wrote) and, folded, its sources and the language
    and intent the assistant read."""
    tid = escape_attr(turn.id)
    actions = [f'<button type="button" class="answer-action copy-answer" data-turn="{tid}">Copy</button>',
               f'<button type="button" class="answer-action regenerate-turn" data-turn="{tid}" '
               f'title="{REGENERATE_TIP[last]}">Regenerate</button>']
    if turn.answer_ids:
        actions.append(f'<button type="button" class="answer-action explain-turn" data-turn="{tid}">Explain</button>')
    label = f"Sources ({len(turn.sources)})" if turn.sources else "Details"
    meta = meta_line(turn)
    body = (f'<p class="turn-meta">{escape_html(meta)}</p>\n' if meta else "") + sources_html(turn)
    return (f'<div class="answer-actions">{" ".join(actions)}</div>\n'
            f'<details class="turn-details" id="details-{tid}"><summary>{label}</summary>\n{body}\n</details>')


def turn_messages(turn: Turn, streaming_text: str | None = None,
                  image_origins: Sequence[str] = (), last: bool = True) -> list[dict[str, Any]]:
    """The chat bubbles of one turn as HTML: the user's (text), then the answer (Markdown made safe;
    images load only from ``image_origins``; ``[n]`` markers) with its actions and folded details."""
    finished = streaming_text is None
    answer = turn.answer if finished else streaming_text
    if turn.finish_reason == "cancelled" and finished:
        answer += " …(stopped)"
    body = f'<div class="answer" data-turn="{escape_attr(turn.id)}">{answer_html(turn, answer, image_origins, finished)}</div>'
    if finished:
        body += "\n" + details_html(turn, last)
    return [
        {"role": "user", "content": escape_html(turn.user)},
        {"role": "assistant", "content": body},
    ]


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
    """``user`` / ``answer`` for each bubble of ``conversation_messages(conv)``."""
    roles: list[str] = []
    for turn in conv.turns if conv else []:
        roles.extend(["user", "answer"][: len(turn_messages(turn))])
    return roles


def conversation_messages(conv: Conversation | None, image_origins: Sequence[str] = ()) -> list[dict[str, Any]]:
    """Every bubble of a conversation (see ``turn_messages``)."""
    if conv is None:
        return []
    out: list[dict[str, Any]] = []
    for turn in conv.turns:
        out.extend(turn_messages(turn, image_origins=image_origins, last=turn is conv.turns[-1]))
    return out
