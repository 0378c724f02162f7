"""The answer-language check of one turn (``assistant.turn_checks.AnswerLanguage``); the engine's use of it
is in tests/test_engine.py."""

from assistant.turn_checks import AnswerLanguage
from assistant.types import Source


def test_answer_language_holds_an_answer_until_its_prose_shows_and_names_only_a_sources_language():
    english = Source("c1", "d1", "Upload documents in the admin area.", "guide/upload.md", language="en")
    german = Source("c2", "d2", "Dokumente laden Sie im Admin-Bereich hoch.", "guide/de/upload.md", language="de")
    check = AnswerLanguage("de", [english, german])
    assert check.watching
    assert check.pending("Run `assistant index add ./handbook.pdf`")  # commands and paths are no prose yet
    assert not check.pending("Run `assistant index add ./handbook.pdf` in the admin area, then wait")
    assert check.wrong("Run `assistant index add ./handbook.pdf` in the admin area, then wait.") == "en"
    assert check.wrong("Führen Sie im Admin-Bereich `assistant index add` aus und warten Sie.") == ""
    assert check.wrong("`ASSISTANT_ADMIN_KEY`") == ""  # no prose: nothing to tell
    assert AnswerLanguage("fr", [english]).wrong("Los documentos se suben en el área de administración.") == ""
    for quiet in (AnswerLanguage("en", [english]), AnswerLanguage("unknown", [german]), AnswerLanguage("de", [])):
        assert not quiet.watching and not quiet.pending("Upl") and quiet.wrong("Upload it in the admin area.") == ""


def test_answer_language_reads_on_while_the_detector_is_unsure_of_the_answers_language():
    # An answer that opens by copying an English list into a German sentence: after 24 letters it could be
    # either; it is held until it reads as one, then named as English.
    english = Source("c1", "d1", "Markdown (`.md`) and plain text (`.txt`)", "guide/upload.md", language="en")
    check = AnswerLanguage("de", [english])
    answer = "Markdown (`.md`) und plain text (`.txt`)\n- web pages (`.html`); menus, footers and other page"
    ends = [i for i in range(1, len(answer) + 1) if not check.pending(answer[:i])]
    assert ends, "held to the end"
    decided = answer[:ends[0]]
    assert len(decided) > len("Markdown (`.md`) und plain text (`.txt`)")
    assert check.wrong(decided) == "en"
    # a German answer is decided at the first letters that make it sure
    german = AnswerLanguage("de", [english])
    opening = "Sie können Markdown-Dateien und einfache Textdateien hochladen."
    first = next(i for i in range(1, len(opening) + 1) if not german.pending(opening[:i]))
    assert first < len(opening) and german.wrong(opening[:first]) == ""
