"""One chat message as a turn reads it: its text made safe and checked (``clean_text``, ``validate``), what
it says flattened into the fields a ``Turn`` keeps (``read``), and whether a message routed to a fixed
reply is looked up in the documents first (``looked_up``).

The engine calls these at the start of every turn; the API cleans history with ``clean_text``.  Knows
nothing about retrieval, the LLM or the store.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any, Sequence

from ..config import ChatConfig
from ..errors import InputError

_SURROGATE = re.compile("[\ud800-\udfff]")


def clean_text(text: str) -> str:
    """Text as the tokenizer and SQLite can take it: NUL bytes dropped, lone surrogates
    (JSON can carry ``"\\ud800"``) replaced by U+FFFD."""
    return _SURROGATE.sub("\ufffd", text.replace("\x00", ""))


def validate(message: Any, max_chars: int) -> str:
    """``message`` cleaned and stripped; an ``InputError`` saying what is wrong when it is not text, is
    empty or is longer than ``max_chars``."""
    if not isinstance(message, str):
        raise InputError(f"the message must be text; got {type(message).__name__}")
    text = clean_text(message).strip()
    if not text:
        raise InputError("the message is empty: type a question")
    if len(text) > max_chars:
        raise InputError(f"the message is too long ({len(text)} characters; the limit is {max_chars})")
    return text


def looked_up(route: str, intent_confidence: float, chat: ChatConfig) -> bool:
    """Whether a message routed to a fixed reply is looked up in the documents first, and answered from
    them when they cover it: an "out of scope" one always, one taken for small talk when the intent model
    is unsure (``ChatConfig.reply_confidence``: "what are cilia used for?" is not "what is this bot
    for?").  A request for a person never is."""
    return route == "fallback" or (route == "reply" and intent_confidence < chat.reply_confidence)


@dataclass
class Understanding:
    """What a message says, as the turn keeps it."""

    language: str = "unknown"
    language_confidence: float = 0.0
    intent: str = "question"
    intent_confidence: float = 0.0
    intents: list[tuple[str, float]] = field(default_factory=list)
    entities: list[dict[str, Any]] = field(default_factory=list)
    route: str = "answer"
    reply: str | None = None


def read(message: str, prior: Sequence[str], intents: Any = None, spec: Any = None) -> Understanding:
    """Language, intents, entities and route through ``understanding.pipeline`` (the same call the CLI
    makes), ``prior`` the conversation's recent languages; without an intent model or spec, language and
    entities (and intents, where a model is given) only, and the message is answered."""
    from . import understand
    from .entities import extract
    from .language import detect

    if intents is not None and spec is not None:
        full = understand(message, intents, spec, prior=prior)
        lang, found = full.language, full.entities
        result, route = full.intent, full.route
    else:
        lang, found = detect(message, prior=prior), extract(message)
        result = intents.classify(message, k=3) if intents is not None else None
        route = None
    u = Understanding(language=lang.language, language_confidence=lang.confidence)
    u.entities = [{"kind": e.kind, "value": e.value, "start": e.start, "end": e.end} for e in found]
    if result is not None:
        u.intent, u.intent_confidence = result.intent, result.confidence
        u.intents = [(name, float(score)) for name, score in result.top]
    if route is not None:
        u.route, u.reply = route.action, route.reply
    return u
