"""Schema-Guided Dialogue (SGD) → chat JSONL: the worked example of bringing
real dialogue data to ``assistant finetune``.

An SGD file is a JSON list of dialogues, each with ``turns`` of
``{"speaker": "USER"|"SYSTEM", "utterance": ...}`` (plus annotations we drop).
Each dialogue becomes one OpenAI-format line: the assistant's system prompt
(the same text the app uses, from ``ChatConfig``), then the user / system
turns as user / assistant messages.  Dialogues are split into train / held-out
by a hash of their id, so the split is stable across runs and machines.

Knows nothing about models or training.
"""

from __future__ import annotations

import hashlib
import json
import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable, Sequence

from assistant.errors import DataFormatError

from .data import Dialogue, Message, write_jsonl

log = logging.getLogger(__name__)

SPEAKERS = {"USER": "user", "SYSTEM": "assistant"}


def default_system_prompt(language: str = "en") -> str:
    """The app's system prompt, exactly as the engine builds it (name → "Assistant")."""
    from assistant.config import ChatConfig
    from assistant.prompting import system_text

    chat = ChatConfig()
    return system_text(chat.system_prompt.format(name=chat.assistant_name), language)


def dialogue_from_sgd(item: dict, system: str = "") -> Dialogue:
    """One SGD dialogue object → ``Dialogue``; ``ValueError`` on a malformed one."""
    turns = item.get("turns")
    if not isinstance(turns, list) or not turns:
        raise ValueError(f"dialogue {item.get('dialogue_id')!r}: `turns` must be a non-empty list")
    msgs = [Message("system", system)] if system else []
    for i, t in enumerate(turns):
        speaker = t.get("speaker") if isinstance(t, dict) else None
        if speaker not in SPEAKERS or not isinstance(t.get("utterance"), str):
            raise ValueError(f"dialogue {item.get('dialogue_id')!r} turn {i}: needs `speaker` USER/SYSTEM "
                             "and a string `utterance`")
        role = SPEAKERS[speaker]
        text = t["utterance"].strip()
        if not text:  # a few SGD turns are empty; the dialogue reads the same without them
            continue
        if msgs and msgs[-1].role == role:  # two turns by the same speaker: join them
            msgs[-1] = Message(role, msgs[-1].content + " " + text)  # type: ignore[arg-type]
        else:
            msgs.append(Message(role, text))  # type: ignore[arg-type]
    # A dialogue must end on an assistant reply to be something to learn from.
    while msgs and msgs[-1].role != "assistant":
        msgs.pop()
    return Dialogue(tuple(msgs), "openai")


def is_held_out(dialogue_id: str, eval_fraction: float) -> bool:
    digest = hashlib.sha256(dialogue_id.encode()).digest()
    return int.from_bytes(digest[:4], "big") / 2**32 < eval_fraction


@dataclass
class ConvertResult:
    train: int
    held_out: int
    skipped: int
    train_path: Path
    eval_path: Path | None


def read_sgd(files: Iterable[str | Path]) -> list[dict]:
    items = []
    for f in files:
        p = Path(f)
        if p.name == "schema.json":
            continue
        try:
            data = json.loads(p.read_text(encoding="utf-8"))
        except (OSError, json.JSONDecodeError) as exc:
            raise DataFormatError(f"SGD file {p}: cannot read it as JSON: {exc}") from exc
        if not isinstance(data, list):
            raise DataFormatError(f"SGD file {p}: expected a JSON list of dialogues; got {type(data).__name__}")
        items += data
    return items


def sgd_files(path: str | Path) -> list[Path]:
    """The dialogue files of an SGD folder (or the one file given)."""
    p = Path(path)
    if p.is_file():
        return [p]
    files = sorted(f for f in p.glob("dialogues_*.json"))
    if not files:
        raise DataFormatError(f"{p}: no dialogues_*.json files there; point at an SGD split folder")
    return files


def convert(source: str | Path, out: str | Path, eval_out: str | Path | None = None,
            eval_fraction: float = 0.1, system: str | None = None,
            services: Sequence[str] = ()) -> ConvertResult:
    """Convert an SGD folder/file to chat JSONL.

    ``eval_out``: where held-out dialogues go (``None``: everything goes to
    ``out``).  ``services``: keep only dialogues touching these service-name
    prefixes (e.g. ``("Banks", "Payment")``); empty keeps all.
    """
    if not 0.0 <= eval_fraction < 1.0:
        raise DataFormatError(f"eval_fraction must be in [0, 1); got {eval_fraction}")
    system = default_system_prompt() if system is None else system
    train: list[Dialogue] = []
    held: list[Dialogue] = []
    skipped = 0
    for item in read_sgd(sgd_files(source)):
        if services and not any(s.startswith(tuple(services)) for s in item.get("services", [])):
            continue
        try:
            d = dialogue_from_sgd(item, system)
        except ValueError as exc:
            log.warning("skipping: %s", exc)
            skipped += 1
            continue
        if not any(m.role == "assistant" for m in d.messages):
            skipped += 1
            continue
        did = str(item.get("dialogue_id", len(train) + len(held)))
        (held if eval_out is not None and is_held_out(did, eval_fraction) else train).append(d)
    write_jsonl(train, out)
    if eval_out is not None:
        write_jsonl(held, eval_out)
    return ConvertResult(len(train), len(held), skipped, Path(out), Path(eval_out) if eval_out else None)
