import subprocess
import sys
import threading

import pytest

from assistant.errors import StoreError
from assistant.store import Store
from assistant.types import Source, Turn


def test_turns_round_trip_and_owners_are_isolated(tmp_path):
    store = Store(tmp_path / "db.sqlite")
    alice = store.create("alice")
    turn = Turn(user="hello", answer="hi", sources=[Source(chunk_id="c", doc_id="d", text="t", source="s.md")],
                intents=[("greeting", 0.9)])
    alice.turns.append(turn)
    store.append_turn(alice, turn)
    store.close()
    reopened = Store(tmp_path / "db.sqlite")
    got = reopened.get(alice.id, "alice")
    assert got.turns[0] == turn
    assert reopened.get(alice.id, "mallory") is None
    assert reopened.list("mallory") == []
    assert [c[0] for c in reopened.list("alice")] == [alice.id]


def test_concurrent_writes_from_threads_all_land(tmp_path):
    store = Store(tmp_path / "db.sqlite")
    convs = [store.create(f"user{i}") for i in range(8)]

    def write(conv):
        for j in range(10):
            t = Turn(user=f"{conv.owner} {j}", answer="a")
            conv.turns.append(t)
            store.append_turn(conv, t)

    threads = [threading.Thread(target=write, args=(c,)) for c in convs]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    for conv in convs:
        got = store.get(conv.id, conv.owner)
        assert [t.user for t in got.turns] == [f"{conv.owner} {j}" for j in range(10)]


def test_feedback_is_owner_checked_and_validated(tmp_path):
    store = Store(tmp_path / "db.sqlite")
    conv = store.create("alice")
    t = Turn(user="q", answer="a")
    store.append_turn(conv, t)
    store.set_feedback(t.id, 1, "clear", owner="alice")
    assert store.feedback()[0].rating == 1
    with pytest.raises(StoreError, match="no turn"):
        store.set_feedback(t.id, -1, owner="mallory")
    with pytest.raises(StoreError, match="rating"):
        store.set_feedback(t.id, 5, owner="alice")


def test_a_corrupt_database_gives_a_clear_error(tmp_path):
    path = tmp_path / "db.sqlite"
    path.write_bytes(b"this is not a database" * 100)
    with pytest.raises(StoreError, match="unreadable"):
        Store(path)


def test_a_killed_writer_loses_no_committed_turn(tmp_path):
    path = tmp_path / "db.sqlite"
    code = f"""
import os, signal
from assistant.store import Store
from assistant.types import Turn
s = Store({str(path)!r})
c = s.create("alice")
for i in range(5):
    t = Turn(user=f"q{{i}}", answer=f"a{{i}}")
    c.turns.append(t)
    s.append_turn(c, t)
print(c.id, flush=True)
os.kill(os.getpid(), signal.SIGKILL)
"""
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert proc.returncode == -9
    conv_id = proc.stdout.strip()
    got = Store(path).get(conv_id, "alice")
    assert [t.answer for t in got.turns] == [f"a{i}" for i in range(5)]


def test_rename_keeps_the_title_through_later_turns_and_only_for_the_owner(tmp_path):
    from assistant.errors import InputError

    store = Store(tmp_path / "db.sqlite")
    conv = store.create("alice")
    first = Turn(user="How long do refunds take?\nThanks", answer="Five days.")
    conv.turns.append(first)
    store.append_turn(conv, first)
    assert store.list("alice")[0][1] == "How long do refunds take?"  # the first line of the first message
    assert store.rename(conv.id, "alice", "  Refund   timing ")
    assert not store.rename(conv.id, "mallory", "mine now")
    with pytest.raises(InputError, match="cannot be empty"):
        store.rename(conv.id, "alice", "   ")
    # the conversation object the engine holds still has the old title: a later turn must not undo the rename
    later = Turn(user="And for a gift card?", answer="The same.")
    conv.turns.append(later)
    store.append_turn(conv, later)
    store.save_state(conv)
    assert [t for _, t, _ in Store(tmp_path / "db.sqlite").list("alice")] == ["Refund timing"]


def test_a_branch_copies_the_turns_before_a_point_and_leaves_the_original_whole(tmp_path):
    from assistant.errors import InputError

    store = Store(tmp_path / "db.sqlite")
    conv = store.create("alice")
    turns = [Turn(user=f"question {i}", answer=f"answer {i}") for i in range(3)]
    turns[2].dropped_turns = [turns[0].id]
    for t in turns:
        conv.turns.append(t)
        store.append_turn(conv, t)
    conv.summary, conv.summarized_turns = "they asked question 0", [turns[0].id]
    store.save_state(conv)

    branch = store.branch(conv, 2, "Mine (branch)")
    again = Store(tmp_path / "db.sqlite")  # what was committed, not the objects in hand
    stored = again.get(branch.id, "alice")
    assert stored.title == "Mine (branch)" and again.get(branch.id, "mallory") is None
    assert [(t.user, t.answer) for t in stored.turns] == [("question 0", "answer 0"), ("question 1", "answer 1")]
    assert not {t.id for t in stored.turns} & {t.id for t in turns}  # copies: feedback on one is not on the other
    # the summary of turn 0 came along, pointing at its copy
    assert stored.summary == "they asked question 0" and stored.summarized_turns == [stored.turns[0].id]
    assert [t.user for t in again.get(conv.id, "alice").turns] == ["question 0", "question 1", "question 2"]
    # a branch before the summarised turns leaves the summary behind; dropped turns point at the copies
    assert store.branch(conv, 0).turns == [] and again.get(store.branch(conv, 0).id, "alice").summary == ""
    full = store.branch(conv, 3)
    assert full.turns[2].dropped_turns == [full.turns[0].id]
    with pytest.raises(InputError, match="0 to 3 turns"):
        store.branch(conv, 4)
