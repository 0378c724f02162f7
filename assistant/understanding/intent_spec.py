"""The intents file: what support teams edit to add or replace intents.

``knowledge/intents.yaml`` by default lists, per intent, a name, a
description, what the engine does with it (``action``), replies per language
and training examples per language, plus extra entity patterns.  This module
reads and checks that file (errors name the line and the key) and knows
nothing about classifiers, languages or the LLM; ``assistant.understanding.intents`` trains
on it and ``assistant.understanding.policy`` uses its actions and replies.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from ..errors import ConfigError, DataFormatError

Action = Literal["reply", "handoff", "fallback", "answer"]
ACTIONS: tuple[str, ...] = ("reply", "handoff", "fallback", "answer")
DEFAULT_SPEC_PATH = Path(__file__).resolve().parents[2] / "knowledge" / "intents.yaml"


@dataclass(frozen=True)
class IntentDef:
    """One intent of the intents file."""

    name: str
    description: str
    action: Action
    """What the engine does: ``reply`` (brief reply, no retrieval), ``handoff``, ``fallback`` or ``answer``."""
    examples: dict[str, tuple[str, ...]]
    """Training examples per language code."""
    replies: dict[str, str] = field(default_factory=dict)
    """Reply per language code (used by ``reply``, ``handoff`` and ``fallback``)."""


@dataclass(frozen=True)
class IntentSpec:
    """The parsed intents file."""

    intents: tuple[IntentDef, ...]
    out_of_scope: str = "out_of_scope"
    """Name of the intent that stands for "not something this assistant does"."""
    default_language: str = "en"
    """Language of replies when the file has none in the user's language."""
    entity_patterns: dict[str, str] = field(default_factory=dict)
    """Extra entity kinds (``order_id``, ``ticket_id``...) as regular expressions."""
    validation: tuple[tuple[str, str], ...] = ()
    """(message, intent) pairs not trained on; when present the out-of-scope threshold and the
    temperature are chosen on them instead of on cross-validation folds of the examples."""
    validation_source: str = ""
    source: str = "<memory>"
    sha256: str = ""
    """Hash of the file's text; a saved model trained on another text is retrained."""

    def __post_init__(self) -> None:
        names = [i.name for i in self.intents]
        if len(set(names)) != len(names):
            dup = sorted({n for n in names if names.count(n) > 1})
            raise DataFormatError(f"{self.source}: intent name(s) {dup} appear more than once; names must be unique")
        if len(names) < 2:
            raise DataFormatError(f"{self.source}: at least 2 intents are needed to train a classifier; got {len(names)}")

    @property
    def names(self) -> tuple[str, ...]:
        return tuple(i.name for i in self.intents)

    def get(self, name: str) -> IntentDef | None:
        return next((i for i in self.intents if i.name == name), None)

    def training_data(self) -> tuple[list[str], list[str]]:
        """(texts, labels) of every example in every language."""
        texts: list[str] = []
        labels: list[str] = []
        for intent in self.intents:
            for examples in intent.examples.values():
                texts.extend(examples)
                labels.extend([intent.name] * len(examples))
        return texts, labels


def _line_loader():
    import yaml

    class LineLoader(yaml.SafeLoader):
        """SafeLoader whose mappings remember the line they start on."""

    def construct_mapping(loader, node, deep=False):
        mapping = yaml.SafeLoader.construct_mapping(loader, node, deep=True)
        mapping["__line__"] = node.start_mark.line + 1
        return mapping

    LineLoader.add_constructor(yaml.resolver.BaseResolver.DEFAULT_MAPPING_TAG, construct_mapping)
    return LineLoader


def load_spec(path: str | Path | None = None) -> IntentSpec:
    """Read and check an intents file (default ``knowledge/intents.yaml``); errors name the line and key."""
    import yaml

    path = Path(path) if path else DEFAULT_SPEC_PATH
    if not path.is_file():
        raise ConfigError(f"intents file {path} does not exist; pass an existing YAML file")
    text = path.read_text(encoding="utf-8")
    try:
        data = yaml.load(text, Loader=_line_loader())  # noqa: S506 - a SafeLoader subclass
    except yaml.YAMLError as exc:
        raise DataFormatError(f"intents file {path} is not valid YAML: {exc}") from exc
    spec = parse_spec(data, source=str(path))
    digest = hashlib.sha256(text.encode("utf-8"))
    if isinstance(data, dict) and data.get("validation"):
        vpath = path.parent / str(data["validation"])
        if not vpath.is_file():
            raise DataFormatError(f"{path} line {data.get('__line__', '?')}: validation file {vpath} does not exist")
        vtext = vpath.read_text(encoding="utf-8")
        digest.update(vtext.encode("utf-8"))  # a changed validation file retrains the model too
        pairs = read_validation(vtext, str(vpath), spec.names)
        spec = dataclasses.replace(spec, validation=pairs, validation_source=str(vpath))
    return dataclasses.replace(spec, sha256=digest.hexdigest())


def read_validation(text: str, source: str, names: tuple[str, ...]) -> tuple[tuple[str, str], ...]:
    """(message, intent) pairs of a JSONL validation file: one ``{"text": ..., "intent": ...}`` per line."""
    pairs = []
    for number, line in enumerate(text.splitlines(), 1):
        if not line.strip():
            continue
        try:
            row = json.loads(line)
        except json.JSONDecodeError as exc:
            raise DataFormatError(f"{source} line {number}: not valid JSON ({exc.msg})") from None
        if not isinstance(row, dict) or not isinstance(row.get("text"), str) or not row["text"].strip():
            raise DataFormatError(f"{source} line {number}: expected an object with a non-empty \"text\"")
        if row.get("intent") not in names:
            raise DataFormatError(f"{source} line {number}: \"intent\" must be one of {list(names)}; "
                                  f"got {row.get('intent')!r}")
        pairs.append((row["text"].strip(), row["intent"]))
    if not pairs:
        raise DataFormatError(f"{source}: the validation file has no messages")
    return tuple(pairs)


def parse_spec(data: Any, *, source: str = "<memory>", sha256: str = "") -> IntentSpec:
    """Build an :class:`IntentSpec` from parsed YAML (mappings may carry ``__line__``)."""
    if not isinstance(data, dict):
        raise DataFormatError(f"{source}: the top level must be a mapping with an `intents:` list")
    where = lambda m: f"{source} line {m.get('__line__', '?')}" if isinstance(m, dict) else source  # noqa: E731
    known = {"version", "default_language", "out_of_scope", "entities", "intents", "validation", "__line__"}
    unknown = set(data) - known
    if unknown:
        raise DataFormatError(f"{where(data)}: unknown key(s) {sorted(map(str, unknown))}; "
                              f"known: {sorted(known - {'__line__'})}")
    raw_intents = data.get("intents")
    if not isinstance(raw_intents, list) or not raw_intents:
        raise DataFormatError(f"{where(data)}: `intents` must be a non-empty list of intents")
    patterns = data.get("entities") or {}
    if not isinstance(patterns, dict):
        raise DataFormatError(f"{where(data)}: `entities` must map an entity kind to a regular expression")
    patterns = {k: v for k, v in patterns.items() if k != "__line__"}
    for kind, pattern in patterns.items():
        try:
            re.compile(str(pattern))
        except re.error as exc:
            raise DataFormatError(f"{where(data)}: entities.{kind}: invalid regular expression: {exc}") from None
    intents = tuple(_parse_intent(raw, where) for raw in raw_intents)
    spec = IntentSpec(
        intents=intents,
        out_of_scope=str(data.get("out_of_scope", "out_of_scope")),
        default_language=str(data.get("default_language", "en")),
        entity_patterns={str(k): str(v) for k, v in patterns.items()},
        source=source,
        sha256=sha256,
    )
    if spec.get(spec.out_of_scope) is None:
        raise DataFormatError(f"{where(data)}: out_of_scope names intent {spec.out_of_scope!r}, which is not defined")
    return spec


def _parse_intent(raw: Any, where) -> IntentDef:
    if not isinstance(raw, dict):
        raise DataFormatError(f"{where(raw)}: each item of `intents` must be a mapping; got {raw!r}")
    allowed = {"name", "description", "action", "examples", "reply", "__line__"}
    unknown = set(raw) - allowed
    if unknown:
        raise DataFormatError(f"{where(raw)}: unknown key(s) {sorted(unknown, key=repr)} in intent; known: {sorted(allowed - {'__line__'})}")
    name = raw.get("name")
    if not isinstance(name, str) or not name.strip():
        raise DataFormatError(f"{where(raw)}: intent needs a `name` (a non-empty string)")
    action = raw.get("action", "answer")
    if action not in ACTIONS:
        raise DataFormatError(f"{where(raw)}: intent {name!r}: `action` must be one of {ACTIONS}; got {action!r}")
    examples = raw.get("examples")
    if isinstance(examples, list):
        examples = {"en": examples}
    if not isinstance(examples, dict) or not any(k != "__line__" for k in examples):
        raise DataFormatError(
            f"{where(raw)}: intent {name!r}: `examples` must map a language code to a list of example messages"
        )
    parsed: dict[str, tuple[str, ...]] = {}
    for lang, items in examples.items():
        if lang == "__line__":
            continue
        if not isinstance(items, list):
            raise DataFormatError(f"{where(raw)}: intent {name!r}: examples.{lang} must be a list of messages")
        bad = next((x for x in items if not (isinstance(x, str) and x.strip())), None)
        if bad is not None or any(not isinstance(x, str) for x in items):
            bad = {k: v for k, v in bad.items() if k != "__line__"} if isinstance(bad, dict) else bad
            raise DataFormatError(f"{where(raw)}: intent {name!r}: examples.{lang} must hold non-empty strings; "
                                  f"got {bad!r} (quote examples that contain ': ' or start with a YAML symbol)")
        parsed[str(lang)] = tuple(x.strip() for x in items)
    if sum(len(v) for v in parsed.values()) < 2:
        raise DataFormatError(f"{where(raw)}: intent {name!r} needs at least 2 examples")
    reply = raw.get("reply") or {}
    if isinstance(reply, str):
        reply = {"en": reply}
    if not isinstance(reply, dict):
        raise DataFormatError(f"{where(raw)}: intent {name!r}: `reply` must map a language code to a text")
    replies = {str(k): str(v).strip() for k, v in reply.items() if k != "__line__"}
    if action in ("reply", "handoff", "fallback") and not replies:
        raise DataFormatError(f"{where(raw)}: intent {name!r} has action {action!r} but no `reply`; add reply: {{en: ...}}")
    return IntentDef(name=name.strip(), description=str(raw.get("description", "")).strip(),
                     action=action, examples=parsed, replies=replies)
