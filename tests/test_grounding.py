"""Numbers an answer states that its sources do not give (``assistant.grounding``): the check itself,
and the engine replacing such an answer with the "not in my documents" reply before the number goes
out (a scripted backend stands in for a model that invents a detail; the tiny random model never would)."""

from __future__ import annotations

import pytest

from assistant.grounding import NumberCheck, numbers
from test_app import FakeHit, FakeIndex, make_runtime
from tiny_model import ScriptedBackend

GUIDE = ("Upload up to 5 files at once, 100 pages each. The server listens on port 7860 and needs Python 3.11. "
         "The Pro plan costs 1,500 EUR a year. 电话：400-123。Model: Qwen2.5-Coder-1.5B.")


@pytest.mark.parametrize("answer, invented", [
    ("Call us on 1-800-555-1234.", ["1-800-555-1234"]),
    ("The largest file you can upload is 10 MB.", ["10"]),
    ("最大可以上传10MB的文件。", ["10"]),  # a number after a CJK character is not part of a word
    ("It opened in 2024 with 100 pages.", ["2024"]),
    ("The Pro plan costs 1500 EUR.", []),  # separators dropped: 1,500 and 1500 are one number
    ("Use port 7860 with Python 3.11.", []),
    ("电话是400-123。", []),
    ("It reads up to ١٠٠ pages.", []),  # Arabic-Indic digits read as 0-9
    ("Steps: 1. open the admin area 2. click Upload", []),  # one-digit numbers are not checked
    ("The Qwen2.5 model and the e5 embedder.", []),  # digits glued to a name
])
def test_numbers_no_source_gives_are_found(answer, invented):
    assert NumberCheck([GUIDE]).unsupported(answer) == invented


def test_a_number_still_being_written_waits():
    check = NumberCheck([GUIDE])
    assert check.unsupported("The hotline is 1-800-55", final=False) == []
    assert check.pending("The hotline is 1-800-55") == len("The hotline is ")
    assert check.unsupported("It costs 10 ", final=False) == []  # "10 000" may follow
    assert check.unsupported("It costs 10 M", final=False) == ["10"]
    assert numbers("v2.5 and gpt-4 at 12:30") == ["12:30"]


def test_numbers_in_an_example_snippet_are_not_checked():
    """A code block illustrates; the numbers stated in the prose around it are still checked."""
    check = NumberCheck([GUIDE])
    snippet = 'Paste an iframe:\n```html\n<iframe src="http://localhost:8080" width="600"></iframe>\n```\n'
    assert check.unsupported(snippet) == []
    assert check.unsupported(snippet + "It loads in 30 seconds.") == ["30"]
    assert check.unsupported('Paste:\n```html\n<iframe width="600', final=False) == []  # a block still open
    assert check.unsupported("Set it to `8080`.") == ["8080"]  # inline code states a value: checked


class NumberedIndex(FakeIndex):
    def search(self, query, k=4, language=None):
        return [FakeHit("c1", "d1", "Refunds are paid back to the card within 14 days. Call 0800 1234 for help.",
                        "policies/refunds.md", title="Refund policy", heading="Timing", score=0.87)]


def _turn(rt, text: str, message: str = "How long do refunds take?"):
    from assistant.engine import TokenEvent, TurnFinished

    rt.engine.backend = ScriptedBackend(text, rt.lm.tokenizer, split=r".")  # one character at a time
    conv = rt.store.create("s")
    shown, finished = "", None
    for event in rt.engine.respond(conv, message):
        if isinstance(event, TokenEvent):
            shown += event.text
        elif isinstance(event, TurnFinished):
            finished = event
    return conv, shown, finished.turn


def test_an_invented_number_is_declined_before_it_goes_out(tmp_path, tiny_lm):
    from assistant.web.admin import invented_numbers

    rt = make_runtime(tmp_path, tiny_lm)
    rt.engine.index = NumberedIndex()
    conv, shown, turn = _turn(rt, "Refunds take 30 days; call 1-800-555-1234.")
    assert turn.answer == "That is not in my documents."
    assert turn.finish_reason == "filtered"
    assert "30" not in shown and "1-800" not in shown  # what streamed stopped before the number
    stored = rt.store.get(conv.id, None).turns[-1]
    assert stored.answer == "That is not in my documents."
    [row] = invented_numbers(rt.store)
    assert row["numbers"] == "30"
    assert row["withheld answer"].startswith("Refunds take 30")  # what the model had said when it was stopped
    assert row["question"] == "How long do refunds take?"


def test_numbers_from_the_sources_and_the_conversation_pass(tmp_path, tiny_lm):
    rt = make_runtime(tmp_path, tiny_lm)
    rt.engine.index = NumberedIndex()
    _, shown, turn = _turn(rt, "Within 14 days; call 0800 1234 about order 55123.",
                           message="How long do refunds take for my order 55123?")
    assert turn.answer == "Within 14 days; call 0800 1234 about order 55123."
    assert shown == turn.answer
    assert turn.finish_reason != "filtered"


def test_the_check_is_off_without_sources_or_when_turned_off(tmp_path, tiny_lm):
    from assistant.config import ChatConfig

    rt = make_runtime(tmp_path, tiny_lm)  # no index: a plain chat model, nothing to check against
    _, _, turn = _turn(rt, "We are open 24 hours a day.")
    assert turn.answer == "We are open 24 hours a day."
    rt = make_runtime(tmp_path / "off", tiny_lm, chat=ChatConfig(context_tokens=512, check_numbers=False))
    rt.engine.index = NumberedIndex()
    _, _, turn = _turn(rt, "Refunds take 30 days.")
    assert turn.answer == "Refunds take 30 days."
