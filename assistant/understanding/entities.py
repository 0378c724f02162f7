"""Entities in a message: e-mails, URLs, phone numbers, dates, amounts, and
configurable ids (order and ticket numbers by default).

Pure regular expressions, no model: extraction takes well under a millisecond.
Kinds are tried in priority order (URL, e-mail, configured ids, date, amount,
phone); a span already taken by an earlier kind is not reused, so a date is not
also a phone number.  A configured pattern with a capturing group yields the
group (``order #A-12345`` gives ``A-12345``).

This module knows nothing about intents or the conversation; the engine puts
the entities into the conversation's slots.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Mapping

from ..errors import ConfigError, InputError


@dataclass(frozen=True)
class Entity:
    """One entity found in a message; ``text[start:end] == value``."""

    kind: str
    """``email``, ``url``, ``phone``, ``date``, ``amount`` or a configured kind (``order_id``...)."""
    value: str
    start: int
    end: int


DEFAULT_PATTERNS: dict[str, str] = {
    "order_id": r"(?:(?:\b[Oo]rder|订单号?)\s*(?:#|no\.?|number|id|:|：)?\s*([A-Z]{0,3}-?\d{5,12})(?![\dA-Za-z])|\b(ORD-?\d{5,12})\b)",
    "ticket_id": r"\b(?:TCK|TKT|[Tt]icket)\s*(?:#|no\.?|number|id|:)?\s*-?(\d{4,10})\b",
}
"""Used when ``extract`` gets no patterns; the intents file's ``entities:`` section replaces them."""

_MONTHS = (r"(?:jan(?:uary)?|feb(?:ruary)?|mar(?:ch)?|apr(?:il)?|may|jun(?:e)?|jul(?:y)?|aug(?:ust)?|"
           r"sep(?:t(?:ember)?)?|oct(?:ober)?|nov(?:ember)?|dec(?:ember)?|januar|februar|märz|mai|juni|juli|"
           r"oktober|dezember|janvier|février|mars|avril|juin|juillet|août|septembre|octobre|novembre|décembre|"
           r"enero|febrero|marzo|abril|mayo|junio|julio|agosto|septiembre|octubre|noviembre|diciembre)")
_CURRENCY = r"(?:[$€£¥￥₹₩₽]|US\$|HK\$|RMB|CNY|USD|EUR|GBP|JPY|CHF)"
_CURRENCY_WORD = (r"(?:usd|eur|gbp|cny|rmb|jpy|chf|dollars?|euros?|pounds?|yuan|yen|bucks|元|块钱?|美元|欧元|英镑|"
                  r"日元|人民币)")
_NUMBER = r"\d{1,3}(?:[,.\s]\d{3})+(?:[.,]\d{1,2})?|\d+(?:[.,]\d{1,2})?"

_BUILTIN: tuple[tuple[str, re.Pattern[str]], ...] = (
    ("url", re.compile(r"\b(?:https?://|www\.)[^\s<>\"'，。）)]+[^\s<>\"'，。）).,!?;:]", re.IGNORECASE)),
    ("email", re.compile(r"\b[\w.+-]+@[\w-]+(?:\.[\w-]+)*\.[A-Za-z]{2,}\b")),
)
_LATE: tuple[tuple[str, re.Pattern[str]], ...] = (
    ("date", re.compile(
        r"\b\d{4}-\d{1,2}-\d{1,2}\b"                                  # 2024-05-01
        r"|\b\d{1,2}[./]\d{1,2}[./]\d{2,4}\b"                          # 01/05/2024, 1.5.24
        r"|\d{4}年\d{1,2}月\d{1,2}[日号]|\d{1,2}月\d{1,2}[日号]"          # 2024年5月1日, 5月1日
        rf"|\b\d{{1,2}}(?:st|nd|rd|th|\.)?\s+(?:of\s+)?{_MONTHS}\.?(?:,?\s+\d{{4}})?\b"  # 3 May 2024, 3. Mai
        rf"|\b{_MONTHS}\.?\s+\d{{1,2}}(?:st|nd|rd|th)?(?:,?\s+\d{{4}})?\b"              # May 3, 2024
        r"|\b(?:today|tomorrow|yesterday|heute|morgen|gestern|aujourd'hui|demain|hier|hoy|mañana|ayer)\b"
        r"|今天|明天|昨天|后天|前天",
        re.IGNORECASE)),
    ("amount", re.compile(
        rf"{_CURRENCY}\s?(?:{_NUMBER})(?:\s?(?:k|m))?\b"
        rf"|(?<![\d.,])(?:{_NUMBER})\s?(?:{_CURRENCY_WORD}|{_CURRENCY})(?![a-z])",
        re.IGNORECASE)),
    ("phone", re.compile(
        r"(?<![A-Za-z0-9_+])(?:\+\d{1,3}[\s.-]?)?(?:\(\d{1,4}\)[\s.-]?)?\d{2,5}(?:[\s.-]?\d{2,5}){1,4}(?![A-Za-z0-9_])")),
)


def _compile(patterns: Mapping[str, str]) -> list[tuple[str, re.Pattern[str]]]:
    compiled = []
    for kind, pattern in patterns.items():
        try:
            compiled.append((str(kind), re.compile(pattern)))
        except (re.error, TypeError) as exc:
            raise ConfigError(f"entity pattern {kind!r} is not a valid regular expression: {exc}") from None
    return compiled


def extract(text: str, patterns: Mapping[str, str] | None = None) -> list[Entity]:
    """Entities of ``text``, in order of position.

    ``patterns`` maps extra kinds to regular expressions (default:
    :data:`DEFAULT_PATTERNS`, order and ticket ids); e-mails, URLs, phones,
    dates and amounts are always extracted.
    """
    if not isinstance(text, str):
        raise InputError(f"entities.extract: text must be a string; got {type(text).__name__}")
    custom = _compile(DEFAULT_PATTERNS if patterns is None else patterns)
    taken: list[tuple[int, int]] = []
    found: list[Entity] = []
    for kind, regex in (*_BUILTIN, *custom, *_LATE):
        for match in regex.finditer(text):
            group = next((g for g in range(1, match.re.groups + 1) if match.group(g) is not None), 0)
            start, end = match.span(group)
            value = text[start:end]
            if not value.strip() or any(start < e and s < end for s, e in taken):
                continue
            if kind == "phone" and not 7 <= sum(ch.isdigit() for ch in value) <= 15:
                continue
            taken.append(match.span())
            found.append(Entity(kind, value, start, end))
    return sorted(found, key=lambda e: (e.start, e.end))
