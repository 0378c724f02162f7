"""Dialogue data for finetuning: the JSONL formats we read, their validation,
and turning a dialogue into token ids with loss on the assistant's tokens only.

Formats (one JSON object per line, detected per line by its keys):

* OpenAI ``{"messages": [{"role": "system"|"user"|"assistant", "content": "..."}]}``
* ShareGPT ``{"conversations": [{"from": "system"|"human"|"gpt", "value": "..."}]}``
* Alpaca ``{"instruction": "...", "input": "...", "output": "...", "system": "..."}``
* the app's export ``{"turns": [{"user": "...", "answer": "..."}], ...}`` (a
  ``Conversation`` as the store keeps it; see ``dialogues_from_store``)

Knows nothing about models beyond a tokenizer with a chat template, and
nothing about training or the UI.
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable, Iterator, Literal, Sequence

from assistant.errors import DataFormatError

log = logging.getLogger(__name__)

Role = Literal["system", "user", "assistant"]
FormatName = Literal["openai", "sharegpt", "alpaca", "app"]
FORMATS: tuple[str, ...] = ("openai", "sharegpt", "alpaca", "app")
SHAREGPT_ROLES = {"system": "system", "human": "user", "user": "user", "gpt": "assistant",
                  "assistant": "assistant", "chatgpt": "assistant", "bing": "assistant", "bard": "assistant"}
MAX_ERRORS_SHOWN = 20


@dataclass(frozen=True)
class Message:
    role: Role
    content: str


@dataclass(frozen=True)
class Dialogue:
    """One training example: a system prompt (optional) then alternating user/assistant turns."""

    messages: tuple[Message, ...]
    format: FormatName = "openai"
    line: int = 0
    """1-based line of the file it came from (0: built in memory)."""

    def as_dicts(self) -> list[dict[str, str]]:
        return [{"role": m.role, "content": m.content} for m in self.messages]


@dataclass(frozen=True)
class LineError:
    line: int
    reason: str

    def __str__(self) -> str:
        return f"line {self.line}: {self.reason}"


@dataclass
class LoadResult:
    dialogues: list[Dialogue]
    skipped: list[LineError] = field(default_factory=list)
    path: str = ""


def _kind(value: Any) -> str:
    return {str: "a string", list: "a list", dict: "an object", int: "a number", float: "a number",
            bool: "a boolean", type(None): "null"}.get(type(value), type(value).__name__)


def _message_list(items: Any, key: str, role_key: str, content_key: str,
                  roles: dict[str, str]) -> list[Message]:
    if not isinstance(items, list) or not items:
        got = "an empty list" if isinstance(items, list) else _kind(items)
        raise ValueError(f"`{key}` must be a non-empty list of {{{role_key}, {content_key}}}; got {got}")
    out = []
    for i, item in enumerate(items):
        if not isinstance(item, dict):
            raise ValueError(f"`{key}` must be a list of {{{role_key}, {content_key}}}; item {i} is {_kind(item)}")
        role = item.get(role_key)
        if role not in roles:
            raise ValueError(f"`{key}[{i}].{role_key}` must be one of {sorted(roles)}; got {role!r}")
        content = item.get(content_key)
        if not isinstance(content, str):
            raise ValueError(f"`{key}[{i}].{content_key}` must be a string; got {_kind(content)}")
        out.append(Message(roles[role], content))  # type: ignore[arg-type]
    return out


def _check_order(messages: Sequence[Message], key: str) -> None:
    body = list(messages)
    if body and body[0].role == "system":
        body = body[1:]
    for i, m in enumerate(messages):
        if m.role == "system" and i != 0:
            raise ValueError(f"`{key}[{i}]`: a system message may only come first")
        if not m.content.strip():
            raise ValueError(f"`{key}[{i}].content` is empty")
    if not body:
        raise ValueError(f"`{key}` has no user or assistant message")
    offset = len(messages) - len(body)
    for i, m in enumerate(body):
        want = "user" if i % 2 == 0 else "assistant"
        if m.role != want:
            raise ValueError(f"`{key}[{i + offset}]` should be a {want} message (turns alternate, "
                             f"starting with the user); got {m.role}")
    if not any(m.role == "assistant" for m in body):
        raise ValueError(f"`{key}` has no assistant message to learn from")


def parse_record(obj: Any, line: int = 0) -> Dialogue:
    """One decoded JSON object → ``Dialogue``; ``ValueError`` says what is wrong."""
    if not isinstance(obj, dict):
        raise ValueError(f"each line must be a JSON object; got {_kind(obj)}")
    if "messages" in obj:
        msgs = _message_list(obj["messages"], "messages", "role", "content",
                             {"system": "system", "user": "user", "assistant": "assistant"})
        _check_order(msgs, "messages")
        return Dialogue(tuple(msgs), "openai", line)
    if "conversations" in obj:
        msgs = _message_list(obj["conversations"], "conversations", "from", "value", SHAREGPT_ROLES)
        _check_order(msgs, "conversations")
        return Dialogue(tuple(msgs), "sharegpt", line)
    if "instruction" in obj or "output" in obj:
        for key in ("instruction", "output"):
            if not isinstance(obj.get(key), str) or not obj[key].strip():
                raise ValueError(f"`{key}` must be a non-empty string; got {_kind(obj.get(key))}")
        for key in ("input", "system"):
            if obj.get(key) is not None and not isinstance(obj[key], str):
                raise ValueError(f"`{key}` must be a string; got {_kind(obj[key])}")
        user = obj["instruction"].strip()
        if (obj.get("input") or "").strip():
            user += "\n\n" + obj["input"].strip()
        msgs = [Message("user", user), Message("assistant", obj["output"])]
        if (obj.get("system") or "").strip():
            msgs.insert(0, Message("system", obj["system"]))
        return Dialogue(tuple(msgs), "alpaca", line)
    if "turns" in obj:
        turns = obj["turns"]
        if not isinstance(turns, list) or not turns:
            raise ValueError(f"`turns` must be a non-empty list of {{user, answer}}; got {_kind(turns)}")
        msgs = []
        if isinstance(obj.get("system"), str) and obj["system"].strip():
            msgs.append(Message("system", obj["system"]))
        for i, t in enumerate(turns):
            if not isinstance(t, dict) or not isinstance(t.get("user"), str) or not isinstance(t.get("answer"), str):
                raise ValueError(f"`turns[{i}]` must be an object with string `user` and `answer`")
            msgs += [Message("user", t["user"]), Message("assistant", t["answer"])]
        _check_order(msgs, "turns")
        return Dialogue(tuple(msgs), "app", line)
    keys = ", ".join(sorted(obj)[:6]) or "none"
    raise ValueError("unknown format: expected `messages` (OpenAI), `conversations` (ShareGPT), "
                     f"`instruction`/`output` (Alpaca) or `turns` (app export); keys here: {keys}")


def iter_records(lines: Iterable[str]) -> Iterator[tuple[int, Dialogue | LineError]]:
    """(line number, Dialogue or LineError) for every non-blank line."""
    for n, raw in enumerate(lines, start=1):
        if not raw.strip():
            continue
        try:
            obj = json.loads(raw)
        except json.JSONDecodeError as exc:
            yield n, LineError(n, f"not valid JSON ({exc.msg} at column {exc.colno})")
            continue
        except RecursionError:
            yield n, LineError(n, "not valid JSON (nested too deeply)")
            continue
        try:
            yield n, parse_record(obj, n)
        except ValueError as exc:
            yield n, LineError(n, str(exc))


def load_dialogues(path: str | Path, skip_invalid: bool = False) -> LoadResult:
    """Read and validate a JSONL file.

    Every bad line is reported with its number; the whole file is refused
    (``DataFormatError``) unless ``skip_invalid``, which drops those lines and
    lists them in ``LoadResult.skipped``.
    """
    p = Path(path)
    if not p.is_file():
        raise DataFormatError(f"data file {p} does not exist")
    with p.open(encoding="utf-8") as fh:
        try:
            results = list(iter_records(fh))
        except UnicodeDecodeError as exc:
            raise DataFormatError(f"{p.name} is not UTF-8 text: {exc}") from exc
    good = [r for _, r in results if isinstance(r, Dialogue)]
    bad = [r for _, r in results if isinstance(r, LineError)]
    if bad and not skip_invalid:
        shown = "\n".join(f"{p.name} {e}" for e in bad[:MAX_ERRORS_SHOWN])
        more = f"\n... and {len(bad) - MAX_ERRORS_SHOWN} more" if len(bad) > MAX_ERRORS_SHOWN else ""
        raise DataFormatError(f"{p.name}: {len(bad)} invalid line(s) of {len(results)}; fix them or pass "
                              f"--skip-invalid:\n{shown}{more}")
    if not good:
        raise DataFormatError(f"{p.name} holds no usable dialogue ({len(bad)} invalid line(s))")
    if bad:
        log.warning("%s: skipped %d invalid line(s) of %d", p.name, len(bad), len(results))
    return LoadResult(good, bad, str(p))


def write_jsonl(dialogues: Iterable[Dialogue | dict[str, Any]], path: str | Path) -> int:
    """Write dialogues in the OpenAI ``messages`` format; returns the count."""
    p = Path(path)
    p.parent.mkdir(parents=True, exist_ok=True)
    n = 0
    with p.open("w", encoding="utf-8") as fh:
        for d in dialogues:
            obj = {"messages": d.as_dicts()} if isinstance(d, Dialogue) else d
            fh.write(json.dumps(obj, ensure_ascii=False) + "\n")
            n += 1
    return n


def dialogues_from_store(store: Any, system: str = "") -> list[Dialogue]:
    """The app's conversations (``Store.conversations_for_export``) as dialogues;
    turns without an answer (cancelled, failed) are left out."""
    out = []
    for conv in store.conversations_for_export():
        msgs = [Message("system", system)] if system.strip() else []
        for t in conv.turns:
            if t.user.strip() and t.answer.strip():
                msgs += [Message("user", t.user), Message("assistant", t.answer)]
        if len(msgs) >= 2:
            out.append(Dialogue(tuple(msgs), "app"))
    return out


def split_dialogues(dialogues: Sequence[Dialogue], eval_fraction: float, seed: int) -> tuple[list[Dialogue], list[Dialogue]]:
    """Deterministic shuffle then split; at least one eval dialogue when ``eval_fraction`` > 0."""
    import random

    items = list(dialogues)
    random.Random(seed).shuffle(items)
    if eval_fraction <= 0 or len(items) < 2:
        return items, []
    n_eval = max(1, int(round(len(items) * eval_fraction)))
    return items[n_eval:], items[:n_eval]


# --- tokenisation -----------------------------------------------------------

@dataclass
class Encoded:
    input_ids: list[int]
    labels: list[int]
    """-100 where no loss is taken (system, user, template markup)."""

    @property
    def trained_tokens(self) -> int:
        return sum(1 for x in self.labels if x != -100)


def _render(tokenizer: Any, messages: list[dict[str, str]], generation_prompt: bool) -> str:
    return tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=generation_prompt)


def encode(tokenizer: Any, dialogue: Dialogue, max_length: int, last_turn_only: bool = False) -> Encoded:
    """Render with the tokenizer's own chat template; labels cover only the
    assistant replies (their text and the template's end-of-turn marker).

    Each assistant reply's character span is found by rendering the prefix
    before it (with the generation prompt) and the prefix including it; a
    template that does not render prefixes consistently is refused.
    A sequence longer than ``max_length`` is cut after the last assistant
    reply that still fits whole, so no reply is trained on half; when not
    even the first fits, the result has no trained tokens (callers drop it).
    """
    msgs = dialogue.as_dicts()
    text = _render(tokenizer, msgs, False)
    spans: list[tuple[int, int]] = []
    idx = [i for i, m in enumerate(msgs) if m["role"] == "assistant"]
    if last_turn_only:
        idx = idx[-1:]
    for i in idx:
        before = _render(tokenizer, msgs[:i], True)
        through = _render(tokenizer, msgs[: i + 1], False)
        if not text.startswith(through) or not through.startswith(before):
            raise DataFormatError("the chat template does not render conversations prefix by prefix, so the "
                                  "assistant's tokens cannot be located; give the tokenizer a standard template")
        spans.append((len(before), len(through)))
    enc = tokenizer(text, add_special_tokens=False, return_offsets_mapping=True)
    ids: list[int] = enc["input_ids"]
    labels = [-100] * len(ids)
    span_end = [0] * len(spans)  # token index just past each reply
    for t, (a, b) in enumerate(enc["offset_mapping"]):
        for k, (s, e) in enumerate(spans):
            if b > a and s <= a < e:
                labels[t] = ids[t]
                span_end[k] = t + 1
    if len(ids) > max_length:
        cut = max((end for end in span_end if end <= max_length), default=0)
        return Encoded(ids[:cut], labels[:cut])
    return Encoded(ids, labels)


def prompt_and_reference(tokenizer: Any, dialogue: Dialogue) -> tuple[list[int], str]:
    """Prompt ids up to the last assistant reply (with the generation prompt), and that reply."""
    msgs = dialogue.as_dicts()
    last = max(i for i, m in enumerate(msgs) if m["role"] == "assistant")
    text = _render(tokenizer, msgs[:last], True)
    return tokenizer(text, add_special_tokens=False)["input_ids"], msgs[last]["content"]


def pack(examples: Sequence[Encoded], block: int) -> list[Encoded]:
    """Concatenate examples into blocks of exactly ``block`` tokens (the last, shorter
    one is kept).  Examples attend across their boundary inside a block: the usual
    packing trade-off of throughput for a little cross-talk."""
    out: list[Encoded] = []
    ids: list[int] = []
    labels: list[int] = []
    for ex in examples:
        ids += ex.input_ids
        labels += ex.labels
        while len(ids) >= block:
            out.append(Encoded(ids[:block], labels[:block]))
            ids, labels = ids[block:], labels[block:]
    if ids and any(x != -100 for x in labels):
        out.append(Encoded(ids, labels))
    return out
