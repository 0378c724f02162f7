"""The answer benchmark's scoring helpers (bench/answer_scoring.py) and its guide question file."""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path

import pytest

from assistant.errors import DataFormatError
from assistant.prompting import NOT_FOUND
from bench.answer_scoring import (answer_language, contains, declined, facts_fraction, load_questions, normalize, parse_question)
from bench.common import DATASETS

ROOT = Path(__file__).resolve().parent.parent
QUESTIONS = ROOT / "bench" / "data" / "guide_questions.jsonl"
GUIDE_LANGUAGES = ("en", "zh", "de", "es", "fr", "ja")


def test_facts_match_across_case_width_and_markup():
    formats = [["pdf"], ["docx", "word"], ["html"], ["md", "markdown"]]
    assert facts_fraction("You can upload **PDFs**, Word files (`.docx`), HTML and Markdown.", formats) == 1.0
    assert facts_fraction("支持 ＰＤＦ、Word 和 HTML。", formats) == 0.75  # full-width letters fold to ASCII
    assert facts_fraction("Only PDF files.", formats) == 0.25
    assert facts_fraction("anything", []) == 1.0


def test_code_strings_match_only_as_written():
    assert contains("Set `ASSISTANT_API_KEYS=abc` first", "ASSISTANT_API_KEYS")
    assert not contains("Set ASSISTANT API KEYS first", "ASSISTANT_API_KEYS")
    assert contains("Run assistant  index\nadd ./manual.pdf", "assistant index add")
    assert contains("POST to http://localhost:7860/v1/chat/completions", "/v1/chat/completions")
    assert contains("use the leave\u2011one\u2011out test", "leave-one-out")  # non-breaking hyphens


def test_ascii_alternatives_do_not_match_inside_another_word():
    assert not contains("run cmd.exe", "md")
    assert contains("files ending in .md", "md")
    assert contains("docs.md", ".md")
    assert contains("支持md文件", "md")  # no word boundary against Chinese characters
    assert contains("several PDFs", "pdf")


def test_declined_recognises_the_fixed_replies_in_any_language():
    assert declined(NOT_FOUND["en"], "en")
    assert declined(NOT_FOUND["zh"], "de")  # the Chinese refusal to a German question still declines
    assert declined("Das steht nicht in meinen Dokumenten", "de")  # without the final full stop
    assert declined("That is not in my documents. Please ask support.", "en")
    assert declined("Sorry, I can't help with that.", "en", route="fallback")
    assert declined("I'll connect you with a person.", "en", route="handoff")


def test_declined_is_false_for_answers():
    assert not declined("Set ASSISTANT_ADMIN_KEY before opening the admin area.", "en")
    assert not declined("1891", "de")
    assert not declined("Hello! How can I help?", "en", route="reply")
    assert not declined("设置 ASSISTANT_API_KEYS 即可。", "zh")


def test_normalize_keeps_code_punctuation():
    assert normalize("  `--index  DIR` ") == "--index dir"


def test_bad_lines_are_rejected_with_the_field_named():
    good = {"id": "x", "language": "en", "question": "q?", "facts": [["a"]], "answerable": True, "split": "dev"}
    assert parse_question(good, "l1").facts == (("a",),)
    with pytest.raises(DataFormatError, match="`language`"):
        parse_question({**good, "language": "xx"}, "l1")
    with pytest.raises(DataFormatError, match="`split`"):
        parse_question({**good, "split": "test"}, "l1")
    with pytest.raises(DataFormatError, match="needs facts"):
        parse_question({**good, "facts": []}, "l1")
    with pytest.raises(DataFormatError, match="needs facts"):
        parse_question({**good, "answerable": False}, "l1")
    with pytest.raises(DataFormatError, match="`facts`"):
        parse_question({**good, "facts": ["a"]}, "l1")


def test_guide_questions_are_well_formed_and_cover_the_languages():
    questions = load_questions(QUESTIONS)  # raises on any malformed line or repeated id
    lines = [json.loads(l) for l in QUESTIONS.read_text(encoding="utf-8").splitlines() if l.strip()]
    assert len(lines) == len(questions)
    answerable = [q for q in questions if q.answerable]
    per_language = Counter(q.language for q in answerable)
    assert len(answerable) >= 44
    assert all(per_language[lang] >= 6 for lang in GUIDE_LANGUAGES), per_language
    unanswerable = [q for q in questions if not q.answerable]
    assert len(unanswerable) >= 12
    assert len({q.language for q in unanswerable}) >= 3
    for lang in GUIDE_LANGUAGES:  # both splits get answerable questions of every language
        splits = Counter(q.split for q in answerable if q.language == lang)
        assert splits["dev"] >= 3 and splits["report"] >= 3, (lang, splits)


def test_every_fact_is_in_the_shipped_guide():
    guide = normalize(" ".join(p.read_text(encoding="utf-8") for p in (ROOT / "knowledge" / "docs").rglob("*.md")))
    for q in load_questions(QUESTIONS):
        for fact in q.facts:
            assert any(contains(guide, a) for a in fact), (q.id, fact)


def test_an_answer_copied_from_the_paragraph_is_in_its_language():
    from assistant.understanding.language import detect

    paragraphs = ["Der Flughafen Los Angeles International Airport ist der größte der Region.",
                  "Newton veröffentlichte 1687 die Principia."]
    # a copied name: the detector alone would not call it German
    assert answer_language("Los Angeles International Airport.", "de", paragraphs, detect) == "de"
    assert answer_language("„Newton“", "de", paragraphs, detect) == "de"
    assert answer_language("1687.", "de", paragraphs, detect) == "unknown"  # unnamed stays unnamed
    # a sentence of its own is judged by the detector
    assert answer_language("The largest airport of the region is LAX.", "de", paragraphs, detect) == "en"


@pytest.mark.skipif(not (DATASETS / "xquad-dev").is_dir(), reason="shared datasets not present")
def test_xquad_dev_and_report_questions_never_share_an_id_in_any_language():
    from bench.answers import xquad_cases

    drawn = {}
    for split in ("dev", "report"):
        ids = set()
        for lang in ("en", "zh", "de"):
            paragraphs, present, absent = xquad_cases(lang, 40, 5, seed=0, split=split)
            assert len(present) == 40 and len(absent) == 5
            assert all(c.paragraph in paragraphs for c in present)  # answerable: its paragraph is indexed
            assert not any(c.paragraph in paragraphs for c in absent)
            ids |= {c.id for c in present + absent}
        drawn[split] = ids
    assert drawn["dev"] and drawn["report"] and not drawn["dev"] & drawn["report"]
    # a sample of its own per language, not the same question ids everywhere
    en = {c.id for c in xquad_cases("en", 10, 0, 0, "report")[1]}
    zh = {c.id for c in xquad_cases("zh", 10, 0, 0, "report")[1]}
    assert en != zh


def test_a_guide_answers_language_is_its_prose_without_code_and_file_names():
    from assistant.understanding.language import detect
    from bench.answer_scoring import prose_language

    assert prose_language("`ASSISTANT_ADMIN_KEY`", detect) == "unknown"  # a variable is in no language
    assert prose_language("`assistant index add ./new-manual.pdf`", detect) == "unknown"
    assert prose_language("Setzen Sie dafür die Umgebungsvariable `ASSISTANT_ADMIN_KEY` auf dem Server.", detect) == "de"
    copied = "Markdown (`.md`) y plain text (`.txt`), web pages (`.html`); menus, footers and other page furniture are removed"
    assert prose_language(copied, detect) == "en"  # the English source copied into a Spanish answer


def test_the_report_counts_answers_asked_again_in_the_questions_language():
    from bench.answers_report import Asked, report

    def asked(qid, section, language, answer_language, again, **kw):
        return Asked(section=section, setting="m", id=qid, language=language, question="q", answer="a", route="answer",
                     sources=[], generated=True, first_token_s=1.0, turn_s=2.0, answer_language=answer_language,
                     asked_again=again, **kw)

    records = [asked("ja-02", "guide", "ja", "ja", True, correct=True, split="report"),
               asked("es-02", "guide", "es", "en", True, correct=False, split="report"),
               asked("de-01", "guide", "de", "de", False, correct=True, split="report"),
               asked("x1", "xquad", "zh", "zh", False, contains_gold=True, f1=1.0, gold_shown=True)]
    text = report(records, ["m"], ["--split", "report"])
    section = text[text.index("### Asked again"):]
    assert "| m | guide | 3 | 2 | 1 | 0 | 1 |" in section and "| m | XQuAD | 1 | 0 | 0 | 0 | 0 |" in section
    assert "### Asked again" not in report(records[2:], ["m"], ["--split", "report"])
