"""Routing: actions and replies come from the intents file, in the user's language."""

import pytest

from assistant.understanding.intents import IntentResult, load_spec, parse_spec
from assistant.understanding.policy import HandoffEvent, Route, pick_reply, route


@pytest.fixture(scope="module")
def spec():
    return load_spec()


def result(name, oos=False, confidence=0.9):
    return IntentResult(name, confidence, [(name, confidence)], oos)


@pytest.mark.parametrize("name", ["greeting", "thanks", "goodbye"])
def test_small_talk_gets_a_brief_reply_without_retrieval(spec, name):
    r = route(result(name), spec, "en")
    assert r.action == "reply"
    assert r.reply == spec.get(name).replies["en"]


@pytest.mark.parametrize("name", ["question", "complaint"])
def test_questions_and_complaints_go_to_retrieval(spec, name):
    assert route(result(name), spec, "en") == Route("answer", None, name)


def test_handoff(spec):
    r = route(result("human_handoff"), spec, "zh")
    assert r.action == "handoff"
    assert r.reply == spec.get("human_handoff").replies["zh"]
    event = HandoffEvent(conversation_id="c-1", message="转人工", language="zh", intent_confidence=0.9)
    assert event.conversation_id == "c-1" and event.created_at > 0


def test_out_of_scope_flag_gives_the_fallback_whatever_the_top_intent(spec):
    r = route(result("question", oos=True), spec, "en")
    assert r.action == "fallback"
    assert r.reply == spec.get(spec.out_of_scope).replies["en"]
    assert "help" in r.reply.lower()


@pytest.mark.parametrize("language,expected", [("zh", "zh"), ("en", "en"), ("de", "de"), ("sw", "en"),
                                               ("unknown", "en"), ("zh-tw", "zh")])
def test_reply_language(spec, language, expected):
    assert route(result("thanks"), spec, language).reply == spec.get("thanks").replies[expected]


# The languages of the default model's training data (XQuAD's 12) and other large chat languages.
REPLY_LANGUAGES = {"ar", "de", "el", "en", "es", "hi", "ro", "ru", "th", "tr", "vi", "zh",
                   "fr", "it", "pt", "nl", "ja", "ko", "id", "pl", "uk"}


def test_every_brief_reply_is_written_in_the_main_languages(spec):
    for intent in spec.intents:
        if intent.action != "answer":
            assert REPLY_LANGUAGES <= set(intent.replies), (intent.name, REPLY_LANGUAGES - set(intent.replies))


@pytest.mark.parametrize("message,language", [("teşekkürler", "tr"), ("спасибо", "ru"), ("ありがとう", "ja"),
                                              ("شكرا", "ar"), ("grazie mille", "it"), ("terima kasih", "id"),
                                              ("ευχαριστώ", "el"), ("감사합니다", "ko")])
def test_the_detected_language_picks_the_reply(spec, message, language):
    from assistant.understanding.language import detect

    detected = detect(message).language
    assert detected == language
    assert route(result("thanks"), spec, detected).reply == spec.get("thanks").replies[language]


def test_pick_reply_falls_back_to_default_then_any():
    assert pick_reply({"fr": "Salut"}, "de", "en") == "Salut"
    assert pick_reply({"en": "Hi", "fr": "Salut"}, "de", "fr") == "Salut"
    assert pick_reply({"zh": "你好"}, "zh-tw", "en") == "你好"
    assert pick_reply({}, "en") is None


def test_actions_are_configurable_in_the_file():
    spec = parse_spec({"intents": [
        {"name": "greeting", "action": "answer", "examples": ["hi", "hello"]},
        {"name": "out_of_scope", "action": "fallback", "reply": {"en": "Nope"}, "examples": ["x", "y"]},
    ]})
    assert route(result("greeting"), spec, "en").action == "answer"
    assert route(result("unknown-intent"), spec, "en").action == "answer"
