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
