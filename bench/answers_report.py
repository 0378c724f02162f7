"""What ``bench/answers.py`` records per question (``Asked``) and the tables it prints from those
records: XQuAD, the user guide, the number check, routes, second tries and timing."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Iterable, Sequence

from bench.common import header, percentile, table

GUIDE_OWN_LANGUAGES = ("en", "zh")
"""The languages the shipped user guide is written in."""


@dataclass
class Asked:
    """One question asked through the engine, what came back, and how it scored."""

    section: str
    """``xquad`` (its paragraph indexed), ``xquad-absent`` (not indexed) or ``guide``."""
    setting: str
    """Model and adapter, e.g. ``gemma-3-270m +adapter``."""
    id: str
    language: str
    question: str
    answer: str
    route: str
    sources: list[str]
    """``folder/file`` of each source the model was shown, in prompt order."""
    generated: bool
    """False for the engine's fixed replies (no source found, greeting, out of scope, hand-off)."""
    first_token_s: float
    turn_s: float
    error: str | None = None
    declined: bool = False
    contains_gold: bool | None = None
    f1: float | None = None
    gold_shown: bool | None = None
    answer_language: str | None = None
    """Language of a non-declined XQuAD answer: detected, or the question's where the answer is
    a verbatim span of an indexed paragraph (``bench.answer_scoring.answer_language``); of a guide
    answer, its prose's, code and file names left out (``prose_language``)."""
    split: str | None = None
    correct: bool | None = None
    facts_matched: float | None = None
    withheld: str | None = None
    """The answer the number check replaced by the not-found reply (``assistant.grounding``), if it did."""
    withheld_right: bool | None = None
    """Whether that withheld answer was right: contained the gold answer (XQuAD) or every key fact (guide)."""
    unsupported: str | None = None
    """The answer the support check replaced by the not-found reply (``ChatConfig.check_support``), if it did."""
    unsupported_right: bool | None = None
    """Whether that answer was right, as for ``withheld_right``."""
    support: float | None = None
    """What the support check measured (``grounding.source_support``; None where it did not run), and
    ``support_first`` the same over the first tokens with none left out (its definition until 2026-12-07)."""
    support_first: float | None = None
    retried: bool = False
    """The model declined and the retry adapter answered again (``ChatConfig.retry_declines``)."""
    asked_again: bool = False
    """The answer began in a source's language instead of the question's and was asked again with "Answer
    in …" (``ChatConfig.answer_in_language``)."""


def rate(values: Iterable[float | bool | None]) -> float:
    kept = [float(v) for v in values if v is not None]
    return sum(kept) / len(kept) if kept else float("nan")


def xquad_tables(records: list[Asked], names: list[str]) -> str:
    rows, by_lang = [], []
    for s in names:
        present = [r for r in records if r.setting == s and r.section == "xquad"]
        absent = [r for r in records if r.setting == s and r.section == "xquad-absent"]
        named = [r for r in present if r.answer_language not in (None, "unknown")]
        rows.append([s, len(present), rate(r.contains_gold for r in present), rate(r.f1 for r in present),
                     rate(r.gold_shown for r in present), rate(r.declined for r in present),
                     rate(r.declined for r in present if r.gold_shown),
                     rate(r.answer_language == r.language for r in named), len(named), len(absent),
                     rate(r.declined for r in absent)])
    languages = list(dict.fromkeys(r.language for r in records if r.section.startswith("xquad")))
    for lang in languages:
        row: list[object] = [lang]
        for s in names:
            mine = [r for r in records if r.setting == s and r.language == lang]
            row += [rate(r.contains_gold for r in mine if r.section == "xquad"),
                    rate(r.declined for r in mine if r.section == "xquad-absent")]
        by_lang.append(row)
    return "\n".join([
        "### XQuAD held-out articles, end to end", "",
        table(["setting", "questions", "contains gold", "F1", "gold paragraph shown", "false refusals",
               "false refusals with gold shown",
               "answer in question's language", "(answers named)", "absent questions", "absent declined"], rows),
        "", table(["language"] + [f"{s} {m}" for s in names for m in ("contains gold", "absent declined")], by_lang)])


def guide_table(records: list[Asked], names: list[str]) -> str:
    rows = []
    for s in names:
        for split in ("dev", "report", "all"):
            mine = [r for r in records if r.setting == s and r.section == "guide" and split in ("all", r.split)]
            ans = [r for r in mine if r.correct is not None]
            un = [r for r in mine if r.correct is None]
            named = [r for r in ans if r.answer_language not in (None, "unknown")]
            rows.append([s, split, len(ans), rate(r.correct for r in ans if r.language in GUIDE_OWN_LANGUAGES),
                         rate(r.correct for r in ans if r.language not in GUIDE_OWN_LANGUAGES),
                         rate(r.correct for r in ans), rate(r.facts_matched for r in ans),
                         rate(r.declined for r in ans), rate(r.answer_language == r.language for r in named),
                         len(named), len(un), rate(r.declined for r in un)])
    return "\n".join([
        "### User guide (knowledge/docs)", "",
        table(["setting", "split", "answerable", "correct en+zh", "correct other languages", "correct",
               "facts matched", "falsely declined", "answer in question's language", "(answers named)",
               "unanswerable", "declined"], rows)])


def check_table(records: list[Asked], names: list[str], title: str, field: str) -> str:
    """What an output check did: answers it replaced by the not-found reply (``field``: the replaced answer,
    ``field + "_right"``: whether it was right), per kind of question, and how many of those were right (a
    cost: a false refusal) or were answers to questions the documents do not answer (a gain)."""
    rows = []
    kinds = [("XQuAD, article indexed", lambda r: r.section == "xquad"),
             ("XQuAD, article not indexed", lambda r: r.section == "xquad-absent"),
             ("guide, answerable", lambda r: r.section == "guide" and r.correct is not None),
             ("guide, unanswerable", lambda r: r.section == "guide" and r.correct is None)]
    for s in names:
        for kind, pick in kinds:
            mine = [r for r in records if r.setting == s and pick(r)]
            held = [r for r in mine if getattr(r, field) is not None]
            right = sum(bool(getattr(r, field + "_right")) for r in held) \
                if "not" not in kind and "unanswerable" not in kind else "—"
            rows.append([s, kind, len(mine), len(held), right])
    return "\n".join([f"### {title}", "",
                      table(["setting", "kind of question", "n", "replaced", "of them right (a false refusal)"], rows)])


def route_table(records: list[Asked], names: list[str]) -> str:
    """How often a question the documents answer never reached the model: the intent model routed it to a
    canned reply (a greeting, "what can you do", feedback…) or, with no source found, to the out-of-scope
    reply.  Issue #20's target: under 2%."""
    rows = []
    answerable = [("XQuAD, article indexed", lambda r: r.section == "xquad"),
                  ("guide, answerable", lambda r: r.section == "guide" and r.correct is not None)]
    for s in names:
        for kind, pick in answerable:
            mine = [r for r in records if r.setting == s and pick(r)]
            canned = [r for r in mine if r.route not in ("answer", "fallback")]
            fallback = [r for r in mine if r.route == "fallback"]
            rows.append([s, kind, len(mine), len(canned), len(fallback),
                         rate([r.route != "answer" for r in mine]),
                         "; ".join(f"{r.id} ({r.language}) → {r.route}" for r in canned + fallback)[:300]])
    return "\n".join([
        "### Routes (questions the documents answer that got a canned reply instead of an answer)", "",
        table(["setting", "kind of question", "n", "canned reply", "out of scope, no source", "short-circuited",
               "which"], rows)])


def retry_table(records: list[Asked], names: list[str]) -> str:
    """The second tries: declines the retry adapter was asked about again, what it answered, and whether
    that was right (answerable) or should have stayed a decline (not answerable)."""
    rows = []
    kinds = [("XQuAD, article indexed", lambda r: r.section == "xquad", lambda r: r.contains_gold),
             ("XQuAD, article not indexed", lambda r: r.section == "xquad-absent", None),
             ("guide, answerable", lambda r: r.section == "guide" and r.correct is not None, lambda r: r.correct),
             ("guide, unanswerable", lambda r: r.section == "guide" and r.correct is None, None)]
    for s in names:
        for kind, pick, right in kinds:
            mine = [r for r in records if r.setting == s and pick(r)]
            tried = [r for r in mine if r.retried]
            answered = [r for r in tried if not r.declined]
            rows.append([s, kind, len(mine), len(tried), len(answered),
                         sum(bool(right(r)) for r in answered) if right else "—",
                         "—" if right else len(answered)])
    return "\n".join([
        "### Second tries (the model declined; the retry adapter was asked again)", "",
        table(["setting", "kind of question", "n", "retried", "answered", "of them right",
               "answered, should have declined"], rows)])


def language_retry_table(records: list[Asked], names: list[str]) -> str:
    """Answers that began in a source's language and were asked again in the question's: how many, and
    how the second answer came out."""
    rows = []
    kinds = [("XQuAD", lambda r: r.section.startswith("xquad"), lambda r: r.contains_gold),
             ("guide", lambda r: r.section == "guide", lambda r: r.correct)]
    for s in names:
        for kind, pick, right in kinds:
            mine = [r for r in records if r.setting == s and pick(r)]
            again = [r for r in mine if r.asked_again]
            rows.append([s, kind, len(mine), len(again), sum(r.answer_language == r.language for r in again),
                         sum(r.declined for r in again), sum(bool(right(r)) for r in again)])
    return "\n".join([
        "### Asked again in the question's language (the answer began in a source's language)", "",
        table(["setting", "questions", "n", "asked again", "then in the question's language", "then declined",
               "then right"], rows)])


def timing_table(records: list[Asked], names: list[str]) -> str:
    rows = []
    for s in names:
        gen = [r for r in records if r.setting == s and r.generated]
        first, turn = [r.first_token_s for r in gen], [r.turn_s for r in gen]
        rows.append([s, len(gen), sum(r.setting == s for r in records), percentile(first, 50),
                     percentile(first, 95), percentile(turn, 50), percentile(turn, 95)])
    return "\n".join([
        "### Timing (turns that generated; seconds from the message)", "",
        table(["setting", "generated turns", "all turns", "first text p50", "first text p95", "turn p50",
               "turn p95"], rows)])


def report(records: list[Asked], names: list[str], argv: Sequence[str]) -> str:
    parts = [header("Answers end to end (engine.respond, fresh conversation per question)"),
             f"`python -m bench.answers {' '.join(argv)}`. Rates are shares of the questions in the row "
             "(nan: none). Declined = the engine's fixed not-found reply, or its out-of-scope / hand-off "
             "route. What these figures cannot tell: see bench/answers.py's docstring."]
    if any(r.section.startswith("xquad") for r in records):
        parts.append(xquad_tables(records, names))
    if any(r.section == "guide" for r in records):
        parts.append(guide_table(records, names))
    parts.append(check_table(records, names, "Number check (answers stating a number no source gives, replaced by "
                                               "the not-found reply)", "withheld"))
    if any(r.unsupported is not None for r in records):
        parts.append(check_table(records, names, "Support check (answers the sources hardly made more likely, "
                                                   "replaced by the not-found reply)", "unsupported"))
    parts.append(route_table(records, names))
    if any(r.retried for r in records):
        parts.append(retry_table(records, names))
    if any(r.asked_again for r in records):
        parts.append(language_retry_table(records, names))
    parts.append(timing_table(records, names))
    return "\n\n".join(parts)
