"""What the loaded knowledge base covers, in words a reply can use.

The welcome text, the example prompts and the capabilities and out-of-scope replies name the
documents actually loaded (the shipped user guide, or a team's own), so that "what can you do?"
and "sorry, I can't help with that" never describe some other product.  A reply in the intents
file or the welcome message set in the admin area writes ``{topics}`` where that list belongs:

    out_of_scope reply, en: "Sorry, I can't help with that. I answer questions from my documents
    ({topics}), or connect you with a person."

becomes "… from my documents (Refund policy, Shipping times, Your account …), …".  With no
index or an empty one, a ``({topics})`` in brackets is dropped with the space before it.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Any

PLACEHOLDER = "{topics}"
from retrieval import DEFAULT_TAG  # the shipped user guide's tag

# The chat page's example prompts while the shipped user guide is what is loaded: questions it answers.
GUIDE_EXAMPLES = (
    "What can you help me with?",
    "How do I upload my own documents?",
    "What does the Explain button show?",
    "如何把助手嵌入我的网站？",
)


def _documents(index: Any) -> list:
    """The index's documents; none for no index, or for a search-only one (a remote retriever)."""
    documents = getattr(index, "documents", None)
    return list(documents()) if callable(documents) else []


def short_title(title: str) -> str:
    """A title as a list item: its part before a colon or dash ("The Explain view: why …" -> "The Explain
    view"), without a trailing full stop."""
    head = re.split(r"\s*(?::\s|：|\s[—–-]\s)", title.strip(), maxsplit=1)[0]
    return head.strip().rstrip(".。") or title.strip()


def topics(index: Any, language: str | None = None, limit: int = 3) -> tuple[list[str], int]:
    """Up to ``limit`` document titles, the largest documents first, those in ``language`` (else English)
    preferred; and how many other distinct titles there are."""
    docs = [d for d in _documents(index) if (d.title or "").strip() and getattr(d, "chunks", 1)]
    # the user's language, else English, else every document (a list in two scripts reads badly)
    for code in (language, "en"):
        if code:
            base = code.split("-")[0]
            in_language = [d for d in docs if base in {lang.split("-")[0] for lang in (d.languages or ())}]
            if in_language:
                docs = in_language
                break
    titles = _largest_first(docs)
    return titles[:limit], max(0, len(titles) - limit)


def _largest_first(docs: list) -> list[str]:
    """The documents' short titles, the largest document first, each title once (case aside)."""
    titles: list[str] = []
    for d in sorted(docs, key=lambda d: (-d.chunks, d.title.lower())):
        t = short_title(d.title)
        if t.lower() not in {x.lower() for x in titles}:
            titles.append(t)
    return titles


def topics_text(index: Any, language: str | None = None, limit: int = 3) -> str:
    """The titles as one phrase: "Refunds, Shipping, Your account …" (… when there are more)."""
    shown, more = topics(index, language, limit)
    sep = "、" if (language or "").split("-")[0] in ("zh", "ja") else ", "
    return sep.join(shown) + (" …" if more else "")


def fill(text: str | None, index: Any, language: str | None = None,
         escape: Callable[[str], str] | None = None) -> str | None:
    """``text`` with ``{topics}`` replaced by the loaded documents' titles (or dropped when there are none);
    ``escape`` makes the titles literal where ``text`` is Markdown."""
    if not text or PLACEHOLDER not in text:
        return text
    phrase = topics_text(index, language)
    if not phrase:
        text = re.sub(r"\s*[(（]\{topics\}[)）]", "", text)
        return re.sub(r"\s*\{topics\}", "", text)
    return text.replace(PLACEHOLDER, escape(phrase) if escape else phrase)


def only_the_guide(index: Any) -> bool:
    """True when the index holds the shipped user guide and nothing a team added (or nothing at all)."""
    return all(DEFAULT_TAG in (d.tags or ()) for d in _documents(index))


def example_prompts(index: Any, configured: tuple[str, ...] = ()) -> list[str]:
    """The chat page's examples: the configured ones; else the guide's own questions while only the guide is
    loaded; else a question about what the assistant covers and a summary of each of the two largest
    of the team's documents."""
    if configured:
        return list(configured)
    if only_the_guide(index):
        return list(GUIDE_EXAMPLES)
    team = [d for d in _documents(index) if DEFAULT_TAG not in (d.tags or ()) and (d.title or "").strip()]
    return ["What can you help me with?"] + [f"Summarise “{t}”" for t in _largest_first(team)[:2]]
