"""Routing policy: what the engine does with a classified message.

The intents file says, per intent, one of four actions:

- ``reply``: a brief reply from the file (greeting, thanks, goodbye...), no retrieval;
- ``handoff``: the file's handoff reply; the engine also records a
  :class:`HandoffEvent` with the conversation id for the support team;
- ``fallback``: a polite reply saying what the assistant can help with (out of scope);
- ``answer``: retrieval and generation.

Replies are taken in the user's language when the file has one, else in the
file's ``default_language``, else in any language it has.  This module knows
nothing about the store, retrieval or the LLM.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field
from typing import Literal

from .intents import IntentResult, IntentSpec

log = logging.getLogger(__name__)

RouteAction = Literal["reply", "handoff", "fallback", "answer"]


@dataclass(frozen=True)
class Route:
    """What to do with one message."""

    action: RouteAction
    reply: str | None
    """The text to send for ``reply``/``handoff``/``fallback``; None for ``answer``."""
    intent: str = ""
    """The intent this route was chosen for."""


@dataclass(frozen=True)
class HandoffEvent:
    """A user asked for a person; the engine stores this for the support team."""

    conversation_id: str
    message: str
    language: str
    intent_confidence: float
    created_at: float = field(default_factory=time.time)


def pick_reply(replies: dict[str, str], language: str, default_language: str = "en") -> str | None:
    """The reply in ``language``, else ``default_language``, else English, else any."""
    for code in (language, (language or "").split("-")[0], default_language, "en"):
        if code and replies.get(code):
            return replies[code]
    return next(iter(replies.values()), None)


def route(intent: IntentResult, spec: IntentSpec, language: str) -> Route:
    """Choose the action and reply for a classified message."""
    name = spec.out_of_scope if intent.out_of_scope else intent.intent
    definition = spec.get(name)
    if definition is None:
        # The model was trained on another intents file; answering is the safe default.
        log.warning("intent %r is not in %s; answering with retrieval", name, spec.source)
        return Route("answer", None, name)
    if definition.action == "answer":
        return Route("answer", None, name)
    reply = pick_reply(definition.replies, language, spec.default_language)
    return Route(definition.action, reply, name)
