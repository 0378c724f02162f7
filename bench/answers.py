"""End-to-end answer benchmark: questions asked through the real engine (the one
``assistant chat`` / ``assistant serve`` build with ``assistant.runtime.build_runtime``),
each in a fresh conversation, for each model and adapter setting side by side.

1. XQuAD (dev half), held-out articles of ``finetune.xquad.split_articles`` (no
   question of the adapter's training articles is asked as answerable).  Per
   language, an index of that language's held-out paragraphs (built with the
   runtime's embedder, in a temporary folder); a seeded sample of their
   questions, drawn per language from one half of the question ids
   (``--split``: ``dev`` to tune on, ``report`` to report; an id is in the
   same half in every language, XQuAD being parallel).
   Scores: the answer contains a gold answer (normalised substring), SQuAD
   F1, the gold paragraph is among the sources shown, false refusals
   (declined although the paragraph is indexed; also among the questions
   whose gold paragraph was shown, where the model and not retrieval
   declined), the answer is in the question's language
   (``assistant.understanding.language.detect``; answers it cannot name, such as a bare
   number, are left out; an answer that is a verbatim span of an indexed
   paragraph is in that paragraph's language, which is the question's: a
   copied name such as "Los Angeles International Airport" is the right
   answer in every language, and the detector would call it English or
   Spanish).  Then a sample of questions of the *training*
   articles (``--absent-per-language``), asked against the same held-out
   index: their answer is not there, so the right outcome is to decline.
2. The shipped user guide (``knowledge/docs``, indexed as the app indexes it on
   first start): ``bench/data/guide_questions.jsonl``.  Correct = every key fact
   of the question is in the answer; facts matched = the share; unanswerable
   questions should be declined.  By split (dev: tune on it; report) and by
   English + Chinese (the guide's own languages) vs the others.
3. The number check (``assistant.grounding``): how many answers it replaced by the not-found
   reply, per kind of question, and how many of the replaced ones were right (its false refusals;
   the withheld answer is read from the engine's ``invented_number`` event).
4. Second tries: questions the model declined that the retry adapter was asked again
   (``ChatConfig.retry_declines``), how many it answered, and how many of those were right.
5. Timing: seconds from the message to the first answer text and to the end of
   the turn, p50 / p95, over turns that generated (fixed replies left out).

What it does not know: whether an answer that misses the gold string or a
fact is wrong (a paraphrase or another correct wording scores as a miss), or
whether a matched fact sits in an otherwise wrong answer; a refusal worded
freely by the model, rather than the engine's fixed replies, counts as an
answer (see ``bench/answer_scoring.py``).  Timings are of this machine, with
whatever else runs on it.  The answers repeat from run to run (greedy decoding, the data tag's key
fixed here, a cold prompt prefilled as a cached one is), so two runs differ where the code does.

    python -m bench.answers --model gemma-3-270m --adapter both --per-language 20
    python -m bench.answers --per-language 2 --absent-per-language 1 --languages en zh --limit-guide 6 --out a.json
"""

from __future__ import annotations

import argparse
import dataclasses
import gc
import hashlib
import json
import logging
import os
import random
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterable, Sequence

if __package__ in (None, ""):  # run as a file: python bench/answers.py
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
os.environ.setdefault("HF_HUB_OFFLINE", "1")

from bench.answer_scoring import GuideQuestion, answer_language, declined, facts_fraction, load_questions  # noqa: E402
from bench.common import DATASETS, header, percentile, save, table  # noqa: E402
from finetune.xquad import LANGUAGES, f1_score, load_language, normalize_answer, split_articles  # noqa: E402

log = logging.getLogger("bench.answers")

GUIDE_QUESTIONS = Path(__file__).parent / "data" / "guide_questions.jsonl"
GUIDE_OWN_LANGUAGES = ("en", "zh")


@dataclass(frozen=True)
class XquadCase:
    """One XQuAD question and the file stem of its paragraph."""

    id: str
    language: str
    question: str
    answers: tuple[str, ...]
    paragraph: str


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
    a verbatim span of an indexed paragraph (``bench.answer_scoring.answer_language``)."""
    split: str | None = None
    correct: bool | None = None
    facts_matched: float | None = None
    withheld: str | None = None
    """The answer the number check replaced by the not-found reply (``assistant.grounding``), if it did."""
    withheld_right: bool | None = None
    """Whether that withheld answer was right: contained the gold answer (XQuAD) or every key fact (guide)."""
    retried: bool = False
    """The model declined and the retry adapter answered again (``ChatConfig.retry_declines``)."""


# --- what to run ---------------------------------------------------------------

def settings(models: Sequence[str], adapter: str | None) -> list[tuple[str, bool]]:
    """(model, with adapter) pairs: ``adapter`` None means both where the registry ships one, else off."""
    from assistant.generation.models import shipped_adapters

    out: list[tuple[str, bool]] = []
    for name in models:
        shipped = bool(shipped_adapters(name))
        choice = adapter or ("both" if shipped else "off")
        if choice in ("on", "both") and not shipped:
            log.warning("%s has no shipped adapter; running it without one", name)
            choice = "off"
        out += [(name, on) for on in (False, True) if choice == "both" or (choice == "on") == on]
    return out


def runtime_for(name: str, with_adapter: bool, args: argparse.Namespace) -> Any:
    """The app's runtime for one setting: its config (file + ``ASSISTANT_*`` env), this model and adapter
    choice; no knowledge index (each section sets its own) and an in-memory store."""
    from assistant.config import AppConfig
    from assistant.generation.models import shipped_adapters
    from assistant.runtime import build_runtime

    config = AppConfig.load(**({"home": args.home} if args.home else {}))
    adapters = shipped_adapters(name) if with_adapter else ()  # the shipped one even where it is off by default
    retry = {"retry_adapter": ""} if args.retry == "off" else {}
    config.model = dataclasses.replace(config.model, name=name, adapters=adapters, **retry,
                                       **({"threads": args.threads} if args.threads else {}))
    if args.max_new_tokens:
        config.generation = dataclasses.replace(config.generation, max_new_tokens=args.max_new_tokens)
    rt = build_runtime(config, retrieval=False, store_path=":memory:")
    if with_adapter and not rt.lm.adapters:
        log.warning("%s: no adapter was loaded", name)
    return rt


def retry_label(name: str, with_adapter: bool, args: argparse.Namespace) -> str:
    """", adapter on declines" for a setting whose declines the retry adapter answers again."""
    from assistant.config import AppConfig
    from assistant.generation.models import retry_adapter_of

    model = dataclasses.replace(AppConfig.load().model, name=name, **({"retry_adapter": ""} if args.retry == "off" else {}))
    return ", adapter on declines" if not with_adapter and retry_adapter_of(model) else ""


def guide_sample(questions: list[GuideQuestion], limit: int) -> list[GuideQuestion]:
    """The first ``limit`` questions (all when 0) taken round-robin over (language, answerable) groups,
    so that a short run still sees several languages and both kinds."""
    groups: dict[tuple[str, bool], list[GuideQuestion]] = {}
    for q in questions:
        groups.setdefault((q.language, q.answerable), []).append(q)
    order: list[GuideQuestion] = []
    for rank in range(max(map(len, groups.values()), default=0)):
        order += [g[rank] for g in groups.values() if rank < len(g)]
    return order[:limit] if limit else order


def question_split(qid: str) -> str:
    """``dev`` or ``report``, fixed per XQuAD question id (half each, by hash).  The id is the same in
    every language (XQuAD is parallel), so no question tuned on in one language is reported in another."""
    return "dev" if hashlib.sha256(qid.encode()).digest()[0] % 2 == 0 else "report"


def xquad_cases(language: str, per_language: int, absent: int, seed: int,
                split: str = "report") -> tuple[dict[str, str], list[XquadCase], list[XquadCase]]:
    """(held-out paragraphs by file stem, sampled held-out questions, sampled training-article questions),
    the questions drawn from ``split`` only, with a sample of its own per language."""
    _, held_out = split_articles()
    paragraphs = load_language(DATASETS / "xquad-dev", language)
    indexed: dict[str, str] = {}
    present: list[XquadCase] = []
    elsewhere: list[XquadCase] = []
    for k, p in enumerate(paragraphs):
        stem = f"{p.article:02d}-{k:03d}"
        if p.article in held_out:
            indexed[stem] = p.context
        for qa in p.qas:
            case = XquadCase(qa["id"], language, qa["question"], tuple(dict.fromkeys(a["text"] for a in qa["answers"])),
                             stem)
            if question_split(case.id) == split:
                (present if p.article in held_out else elsewhere).append(case)
    rng = random.Random(f"{seed}/{split}/{language}")
    return (indexed, rng.sample(present, min(per_language, len(present))),
            rng.sample(elsewhere, min(absent, len(elsewhere))))


def xquad_index(folder: Path, language: str, paragraphs: dict[str, str], embedder: Any) -> Any:
    """A knowledge index of ``paragraphs``, one ``STEM.txt`` file each, built as ``assistant index build`` does."""
    from retrieval.index import KnowledgeIndex

    docs = folder / "xquad" / language
    docs.mkdir(parents=True)
    for stem, text in paragraphs.items():
        (docs / f"{stem}.txt").write_text(text, encoding="utf-8")
    index = KnowledgeIndex.create(folder / f"index-{language}", embedder)
    index.add_paths([docs])
    return index


# --- asking and scoring ----------------------------------------------------------

def ask(rt: Any, message: str, section: str, setting: str, qid: str, language: str) -> tuple[Asked, Any]:
    """One question in a fresh conversation through ``Engine.respond``, timed as the user sees it."""
    from assistant.engine import TokenEvent, TurnFinished

    conv = rt.store.create("bench")
    started = time.perf_counter()
    first: float | None = None
    finished = None
    for event in rt.engine.respond(conv, message):
        if isinstance(event, TokenEvent) and event.text and first is None:
            first = time.perf_counter() - started
        elif isinstance(event, TurnFinished):
            finished = event
    total = time.perf_counter() - started
    rt.engine.forget(conv.id)
    assert finished is not None, "Engine.respond ends with TurnFinished"
    turn = finished.turn
    if finished.error:
        log.warning("%s %s: %s", setting, qid, finished.error)
    asked = Asked(section=section, setting=setting, id=qid, language=language, question=message,
                  answer=turn.answer, route=turn.route,
                  sources=[f"{Path(s.source).parent.name}/{Path(s.source).name}" for s in turn.sources],
                  generated="generate" in turn.timings, first_token_s=first if first is not None else total,
                  turn_s=total, error=finished.error, declined=declined(turn.answer, language, turn.route),
                  retried="declined_after" in turn.timings)
    withheld = [e for e in rt.store.events("invented_number") if e.conversation_id == conv.id]
    if withheld:
        asked.withheld = str(withheld[0].data.get("answer", ""))
    return asked, turn


def run_xquad(rt: Any, setting: str, args: argparse.Namespace, indexes: dict[str, Any], tmp: Path) -> list[Asked]:
    from assistant.understanding.language import detect

    out: list[Asked] = []
    for lang in args.languages:
        paragraphs, present, absent = xquad_cases(lang, args.per_language, args.absent_per_language, args.seed,
                                                  args.split)
        if not present and not absent:
            continue
        if lang not in indexes:
            indexes[lang] = xquad_index(tmp, lang, paragraphs, rt.embedder)
        rt.engine.index = indexes[lang]  # the engine reads its index on every turn
        for case, section in [(c, "xquad") for c in present] + [(c, "xquad-absent") for c in absent]:
            a, turn = ask(rt, case.question, section, setting, case.id, lang)
            if section == "xquad":
                answer = normalize_answer(a.answer, lang)
                a.contains_gold = any(normalize_answer(g, lang) in answer for g in case.answers)
                a.f1 = f1_score(a.answer, case.answers, lang)
                a.gold_shown = case.paragraph in [Path(s.source).stem for s in turn.sources]
                if a.withheld is not None:
                    withheld = normalize_answer(a.withheld, lang)
                    a.withheld_right = any(normalize_answer(g, lang) in withheld for g in case.answers)
            if not a.declined:
                a.answer_language = answer_language(a.answer, lang, paragraphs.values(), detect)
            log.info("%s %s %s %s: %r", setting, section, lang, case.id,
                     a.answer[:80] + ("" if section == "xquad-absent" else f" | gold {case.answers[0]!r}"))
            out.append(a)
    return out


def run_guide(rt: Any, setting: str, questions: list[GuideQuestion], index: Any) -> list[Asked]:
    out: list[Asked] = []
    rt.engine.index = index
    for q in questions:
        a, _ = ask(rt, q.question, "guide", setting, q.id, q.language)
        a.split = q.split
        if q.answerable:
            a.correct = q.correct(a.answer)
            a.facts_matched = facts_fraction(a.answer, q.facts)
            if a.withheld is not None:
                a.withheld_right = q.correct(a.withheld)
        log.info("%s guide %s: %r (%s)", setting, q.id, a.answer[:80],
                 ("correct" if a.correct else f"facts {a.facts_matched:.2f}") if q.answerable
                 else ("declined" if a.declined else "answered"))
        out.append(a)
    return out


# --- tables --------------------------------------------------------------------

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
            rows.append([s, split, len(ans), rate(r.correct for r in ans if r.language in GUIDE_OWN_LANGUAGES),
                         rate(r.correct for r in ans if r.language not in GUIDE_OWN_LANGUAGES),
                         rate(r.correct for r in ans), rate(r.facts_matched for r in ans),
                         rate(r.declined for r in ans), len(un), rate(r.declined for r in un)])
    return "\n".join([
        "### User guide (knowledge/docs)", "",
        table(["setting", "split", "answerable", "correct en+zh", "correct other languages", "correct",
               "facts matched", "falsely declined", "unanswerable", "declined"], rows)])


def number_check_table(records: list[Asked], names: list[str]) -> str:
    """What the number check did: answers it replaced, per kind of question, and how many of those were
    right (a cost: a false refusal) or were answers to questions the documents do not answer (a gain)."""
    rows = []
    kinds = [("XQuAD, article indexed", lambda r: r.section == "xquad"),
             ("XQuAD, article not indexed", lambda r: r.section == "xquad-absent"),
             ("guide, answerable", lambda r: r.section == "guide" and r.correct is not None),
             ("guide, unanswerable", lambda r: r.section == "guide" and r.correct is None)]
    for s in names:
        for kind, pick in kinds:
            mine = [r for r in records if r.setting == s and pick(r)]
            held = [r for r in mine if r.withheld is not None]
            right = sum(bool(r.withheld_right) for r in held) if "not" not in kind and "unanswerable" not in kind \
                else "—"
            rows.append([s, kind, len(mine), len(held), right])
    return "\n".join([
        "### Number check (answers stating a number no source gives, replaced by the not-found reply)", "",
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
    parts.append(number_check_table(records, names))
    parts.append(route_table(records, names))
    if any(r.retried for r in records):
        parts.append(retry_table(records, names))
    parts.append(timing_table(records, names))
    return "\n\n".join(parts)


# --- command line ----------------------------------------------------------------

def main(argv: list[str] | None = None) -> str:
    from assistant.generation.models import DEFAULT_MODEL

    argv = list(sys.argv[1:] if argv is None else argv)
    ap = argparse.ArgumentParser(prog="python -m bench.answers", description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", action="append", help=f"registry name or model path (repeatable; default {DEFAULT_MODEL})")
    ap.add_argument("--adapter", choices=("on", "off", "both"),
                    help="shipped adapter on, off or both (default: both where the registry ships one, else off)")
    ap.add_argument("--languages", nargs="+", default=list(LANGUAGES), choices=LANGUAGES, help="XQuAD languages")
    ap.add_argument("--per-language", type=int, default=20, help="XQuAD held-out questions per language (0: skip)")
    ap.add_argument("--absent-per-language", type=int, default=10,
                    help="XQuAD questions per language whose article is not indexed")
    ap.add_argument("--limit-guide", type=int, default=0, help="ask only this many guide questions (0: all)")
    ap.add_argument("--skip-guide", action="store_true", help="ask no guide questions")
    ap.add_argument("--split", choices=("dev", "report"), default="report",
                    help="which half of the XQuAD questions to ask (tune on dev; report on report)")
    ap.add_argument("--seed", type=int, default=0, help="picks the XQuAD questions within the split")
    ap.add_argument("--max-new-tokens", type=int, help="answer length limit (default: the app's)")
    ap.add_argument("--threads", type=int, help="CPU threads for torch (default: the app's)")
    ap.add_argument("--home", help="data folder for the model cache and intent model (default: $ASSISTANT_HOME); "
                                   "indexes and conversations go to a temporary folder")
    ap.add_argument("--out", type=Path, help="write every answer with its scores to this JSON file")
    ap.add_argument("--plain-sources", action="store_true",
                    help="sources under a plain 'Documents:' header instead of the shipped untrusted-data framing "
                         "(spotlighting off, as bench.injection's 'off'), to measure what the framing costs answers")
    ap.add_argument("--retry", choices=("on", "off"), default="on",
                    help="on (the app's default): a decline is asked again with the retry adapter where the registry "
                         "ships one for it (ModelSpec.adapter_on_decline); off: the model's first answer stands")
    args = ap.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s: %(message)s", stream=sys.stderr)
    from assistant import prompting

    # The data tags' suffix is keyed by a per-process secret (prompting.new_marker); a fixed key here makes
    # the same question get the same prompt in every run, so two runs differ only where the code does.
    prompting.MARKER_KEY = b"bench.answers"
    if args.plain_sources:
        prompting.SOURCES_HEADER = "Documents:"

    questions = [] if args.skip_guide else guide_sample(load_questions(GUIDE_QUESTIONS), args.limit_guide)
    runs = settings(args.model or [DEFAULT_MODEL], args.adapter)
    names = [f"{m} {'+adapter' if on else 'base'}{retry_label(m, on, args)}"
             f"{', plain sources' if args.plain_sources else ''}" for m, on in runs]
    records: list[Asked] = []
    indexes: dict[str, Any] = {}  # built once, with the first runtime's embedder (every setting loads the same)
    with tempfile.TemporaryDirectory(prefix="bench-answers-") as tmp:
        for (model, with_adapter), name in zip(runs, names):
            rt = runtime_for(model, with_adapter, args)
            records += run_xquad(rt, name, args, indexes, Path(tmp))
            if questions:
                if "guide" not in indexes:
                    from retrieval import default_index

                    indexes["guide"] = default_index(Path(tmp) / "guide-home", embedder=rt.embedder)
                records += run_guide(rt, name, questions, indexes["guide"])
            rt.store.close()
            del rt
            gc.collect()
    text = report(records, names, argv)
    print(text)
    save("answers", text)
    if args.out:
        args.out.write_text(json.dumps([dataclasses.asdict(r) for r in records], ensure_ascii=False, indent=1),
                            encoding="utf-8")
    return text


if __name__ == "__main__":
    main()
