"""Scoring helpers of ``bench/answers.py``: key facts found in an answer, answers
that decline, and the user-guide question file (``bench/data/guide_questions.jsonl``).

A fact is a list of acceptable alternative strings; it is matched when one of
them occurs in the answer after light normalisation (NFKC, case folded,
dashes unified, whitespace collapsed; code punctuation such as ``.``, ``/``,
``_`` and ``-`` is kept so ``ASSISTANT_API_KEYS`` or ``/v1/chat/completions``
match only as written).  An alternative that starts with an ASCII letter or
digit must not follow one (``md`` is not found in ``cmd``); its end is free
(``pdf`` is found in ``PDFs``).

Declined means the engine's own "I can't answer" outcomes: the fixed
not-found reply of any language (``assistant.prompting.NOT_FOUND``, also when
the model writes it close to but not exactly as trained: ``finetune.xquad.says_not_found``),
or the out-of-scope / hand-off routes of the intent policy.  A free-form
refusal a model words on its own ("Sorry, I have no information about...")
is not recognised.

The language of an XQuAD answer (``answer_language``): a verbatim span of the
indexed paragraphs is in their language; anything else is what the detector says.

Knows nothing about the engine or the model.
"""

from __future__ import annotations

import json
import re
import unicodedata
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Iterable, Sequence

from assistant.errors import DataFormatError
from assistant.prompting import LANGUAGE_NAMES, NOT_FOUND
from assistant.understanding.language import MIN_PROSE_LETTERS, prose_letters
from finetune.xquad import says_not_found

DECLINING_ROUTES = ("fallback", "handoff")
"""Engine routes that answer with a fixed "I can't help with that" / "let me get a person" reply."""
SPLITS = ("dev", "report")

_DASHES = re.compile("[\u2010-\u2015\u2212]")
_QUOTES = re.compile("[`\u201c\u201d\u201e\u00ab\u00bb\u300c\u300d\u2018\u2019]")


def normalize(text: str) -> str:
    """Light normalisation for fact matching (see the module docstring)."""
    text = unicodedata.normalize("NFKC", text).casefold()
    text = _QUOTES.sub(" ", _DASHES.sub("-", text))
    return " ".join(text.split())


def _is_ascii_word_char(ch: str) -> bool:
    return ch.isascii() and ch.isalnum()


def contains(answer: str, alternative: str) -> bool:
    """Whether ``alternative`` occurs in ``answer`` (normalised; ASCII words not glued to a preceding one)."""
    text, needle = normalize(answer), normalize(alternative)
    if not needle:
        return False
    start = text.find(needle)
    while start >= 0:
        if not (_is_ascii_word_char(needle[0]) and start > 0 and _is_ascii_word_char(text[start - 1])):
            return True
        start = text.find(needle, start + 1)
    return False


def fact_matched(answer: str, alternatives: Sequence[str]) -> bool:
    return any(contains(answer, a) for a in alternatives)


def facts_fraction(answer: str, facts: Sequence[Sequence[str]]) -> float:
    """Share of ``facts`` found in ``answer`` (1.0 when there are none)."""
    if not facts:
        return 1.0
    return sum(fact_matched(answer, f) for f in facts) / len(facts)


def declined(answer: str, language: str, route: str = "answer") -> bool:
    """Whether the turn declined to answer (see the module docstring)."""
    if route in DECLINING_ROUTES:
        return True
    text = normalize(answer)
    if any(normalize(reply).rstrip(".。।") in text for reply in NOT_FOUND.values()):
        return True
    return says_not_found(answer, language if language in NOT_FOUND else "en")


# --- the guide question file -------------------------------------------------

@dataclass(frozen=True)
class GuideQuestion:
    """One question about the shipped user guide (``knowledge/docs``)."""

    id: str
    language: str
    question: str
    facts: tuple[tuple[str, ...], ...]
    """Key facts a right answer contains; each a tuple of acceptable alternatives. Empty when unanswerable."""
    answerable: bool
    split: str
    """``dev`` (tune on it) or ``report`` (only report it)."""

    def correct(self, answer: str) -> bool:
        return self.answerable and facts_fraction(answer, self.facts) == 1.0


def parse_question(row: object, where: str) -> GuideQuestion:
    """A ``GuideQuestion`` from one decoded JSON line; ``DataFormatError`` naming the field otherwise."""
    if not isinstance(row, dict):
        raise DataFormatError(f"{where}: expected a JSON object; got {type(row).__name__}")
    fields = ("id", "language", "question", "facts", "answerable", "split")
    missing = [f for f in fields if f not in row]
    if missing or set(row) - set(fields):
        raise DataFormatError(f"{where}: fields must be {list(fields)}; missing {missing}, "
                              f"unknown {sorted(set(row) - set(fields))}")
    for name in ("id", "question"):
        if not isinstance(row[name], str) or not row[name].strip():
            raise DataFormatError(f"{where}: `{name}` must be non-empty text; got {row[name]!r}")
    if row["language"] not in LANGUAGE_NAMES:
        raise DataFormatError(f"{where}: `language` must be one of {sorted(LANGUAGE_NAMES)}; got {row['language']!r}")
    if row["split"] not in SPLITS:
        raise DataFormatError(f"{where}: `split` must be one of {SPLITS}; got {row['split']!r}")
    if not isinstance(row["answerable"], bool):
        raise DataFormatError(f"{where}: `answerable` must be true or false; got {row['answerable']!r}")
    facts = row["facts"]
    if not isinstance(facts, list) or not all(
            isinstance(f, list) and f and all(isinstance(a, str) and a.strip() for a in f) for f in facts):
        raise DataFormatError(f"{where}: `facts` must be a list of non-empty lists of non-empty strings")
    if row["answerable"] != bool(facts):
        raise DataFormatError(f"{where}: an answerable question needs facts and an unanswerable one none "
                              f"(answerable={row['answerable']}, {len(facts)} facts)")
    return GuideQuestion(id=row["id"], language=row["language"], question=row["question"],
                         facts=tuple(tuple(f) for f in facts), answerable=row["answerable"], split=row["split"])


def load_questions(path: str | Path) -> list[GuideQuestion]:
    """All questions of a JSONL file; ids must be unique."""
    out: list[GuideQuestion] = []
    seen: set[str] = set()
    for n, line in enumerate(Path(path).read_text(encoding="utf-8").splitlines(), 1):
        if not line.strip():
            continue
        where = f"{path} line {n}"
        try:
            row = json.loads(line)
        except json.JSONDecodeError as exc:
            raise DataFormatError(f"{where}: not valid JSON ({exc})") from exc
        question = parse_question(row, where)
        if question.id in seen:
            raise DataFormatError(f"{where}: id {question.id!r} appears twice")
        seen.add(question.id)
        out.append(question)
    return out


def answer_language(answer: str, language: str, paragraphs: Iterable[str], detect: Callable[[str], Any]) -> str:
    """What ``detect`` names, except that an answer it calls another language than ``language``
    (the index's, which is the question's) is in ``language`` when, less surrounding quotes and a
    final full stop, it is a verbatim span of one of the paragraphs.  Answers the detector cannot
    name (a bare number) stay unnamed."""
    detected = detect(answer).language
    if detected in (language, "unknown"):
        return detected
    span = answer.strip().strip("\"'“”„‘’‚「」«»").rstrip(".。!！").strip()
    return language if span and any(span in p for p in paragraphs) else detected


def prose_language(answer: str, detect: Callable[[str], Any]) -> str:
    """The language of an answer's prose, with its code, commands, file names and variables left out
    (`` `ASSISTANT_ADMIN_KEY` `` is in no language); "unknown" when under ``MIN_PROSE_LETTERS`` letters
    remain (what the engine's answer-language check reads: ``assistant.understanding.language``)."""
    prose, letters = prose_letters(answer)
    if letters < MIN_PROSE_LETTERS:
        return "unknown"
    return detect(prose).language
