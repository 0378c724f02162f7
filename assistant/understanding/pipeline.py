"""One call that understands a message: language, intent, entities and route.

A thin facade over ``language``, ``intents``, ``entities`` and ``policy`` for
the engine and the CLI.  Knows nothing about retrieval, the LLM or storage;
the conversation (its language and intent history, its slots) lives in the
engine, which passes the earlier languages in as ``prior``.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any, Sequence

from .entities import Entity, extract
from .intents import IntentModel, IntentResult, IntentSpec
from .language import LanguageResult, detect
from .policy import Route, route


@dataclass(frozen=True)
class Understanding:
    """Everything known about one message before retrieval."""

    language: LanguageResult
    intent: IntentResult
    entities: list[Entity]
    route: Route

    def to_json(self) -> dict[str, Any]:
        """The CLI's JSON shape (keys: language, language_confidence, intent, intent_confidence, intents, entities, action)."""
        return {
            "language": self.language.language,
            "language_confidence": self.language.confidence,
            "intent": self.intent.intent,
            "intent_confidence": self.intent.confidence,
            "out_of_scope": self.intent.out_of_scope,
            "intents": [{"intent": name, "score": score} for name, score in self.intent.top],
            "entities": [asdict(e) for e in self.entities],
            "action": self.route.action,
        }


def understand(text: str, model: IntentModel, spec: IntentSpec, prior: Sequence[str] = (), k: int = 3) -> Understanding:
    """Language (with the conversation's earlier languages as ``prior``), top-k intents, entities and route."""
    language = detect(text, prior)
    intent = model.classify(text, k=k)
    entities = extract(text, spec.entity_patterns or None)
    reply_language = language.language if language.language != "unknown" else spec.default_language
    return Understanding(language, intent, entities, route(intent, spec, reply_language))
