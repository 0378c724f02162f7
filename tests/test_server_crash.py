"""Durability: concurrent writes to the store, a ``kill -9`` of a real
``assistant serve`` mid-answer (no finished turn and no feedback lost), a
graceful shutdown that stores the turn in flight, and a ``kill -9`` during an
index rebuild (the previous index still loads and answers the same)."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from test_app import free_port

ROOT = Path(__file__).resolve().parent.parent
KEY = "crash-test-key"


def test_concurrent_writes_from_threads_and_connections(tmp_path):
    from assistant.store import Store
    from assistant.types import Turn

    path = tmp_path / "db.sqlite"
    stores = [Store(path), Store(path)]  # two connections, as two processes would have
    convs = [stores[i % 2].create(f"user{i}") for i in range(8)]
    errors: list[BaseException] = []

    def writer(i: int) -> None:
        try:
            store, conv = stores[i % 2], convs[i]
            for n in range(25):
                turn = Turn(user=f"q{i}-{n}", answer=f"a{i}-{n}")
                conv.turns.append(turn)
                store.append_turn(conv, turn)
                if n % 5 == 0:
                    store.set_feedback(turn.id, 1, "ok", owner=conv.owner)
                    store.record_event("no_source", conv.id, {"query": turn.user})
        except BaseException as exc:  # collected and re-raised in the test thread
            errors.append(exc)

    threads = [threading.Thread(target=writer, args=(i,)) for i in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors
    fresh = Store(path)
    for i, conv in enumerate(convs):
        stored = fresh.get(conv.id, f"user{i}")
        assert [t.user for t in stored.turns] == [f"q{i}-{n}" for n in range(25)]
    assert len(fresh.feedback()) == 8 * 5
    assert len(fresh.events("no_source")) == 8 * 5


def start_server(home: Path, model_dir: Path, port: int) -> subprocess.Popen:
    env = dict(os.environ, ASSISTANT_API_KEYS=KEY, ASSISTANT_HOME=str(home), HF_HUB_OFFLINE="1",
               PYTHONUNBUFFERED="1")
    cmd = [sys.executable, "-m", "assistant.cli.main", "serve", "--model", str(model_dir), "--quantization", "none",
           "--no-retrieval", "--no-intents", "--home", str(home), "--host", "127.0.0.1", "--port", str(port),
           "--max-new-tokens", "600"]
    log = open(home / "server.log", "ab")
    proc = subprocess.Popen(cmd, cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT)
    import httpx

    deadline = time.monotonic() + 180
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError("server exited:\n" + (home / "server.log").read_text()[-3000:])
        try:
            if httpx.get(f"http://127.0.0.1:{port}/health", timeout=1).status_code == 200:
                return proc
        except httpx.HTTPError:
            pass
        time.sleep(0.3)
    proc.kill()
    raise RuntimeError("server did not start:\n" + (home / "server.log").read_text()[-3000:])


def complete(port: int, text: str) -> dict:
    import httpx

    r = httpx.post(f"http://127.0.0.1:{port}/v1/chat/completions", timeout=120,
                   headers={"Authorization": f"Bearer {KEY}"},
                   json={"model": "tiny", "max_tokens": 16, "messages": [{"role": "user", "content": text}]})
    r.raise_for_status()
    return r.json()


def stream_some(port: int, chunks: int):
    """Open a long streaming answer and return (response, client) after ``chunks`` content chunks."""
    import httpx

    client = httpx.Client(timeout=120)
    req = client.build_request("POST", f"http://127.0.0.1:{port}/v1/chat/completions",
                               headers={"Authorization": f"Bearer {KEY}"},
                               json={"model": "tiny", "stream": True, "max_tokens": 600, "temperature": 1.0,
                                     "seed": 7, "messages": [{"role": "user", "content": "Tell me a long story"}]})
    resp = client.send(req, stream=True)
    got = 0
    for line in resp.iter_lines():
        if line.startswith("data: {"):
            data = json.loads(line[6:])
            assert data["choices"][0]["finish_reason"] is None, "the answer finished before the interruption"
            if data["choices"][0]["delta"].get("content"):
                got += 1
        if got >= chunks:
            break
    return resp, client


def gradio_event(port: int, session_hash: str, fn: str, data: list, event_data: dict | None = None) -> list:
    """Run one event of the chat page through Gradio's queue, as the browser does (the
    like event needs ``event_data``, which gradio_client cannot send); returns its output."""
    import httpx

    base = f"http://127.0.0.1:{port}"
    config = httpx.get(base + "/config", timeout=30).json()
    index, dep = next((i, d) for i, d in enumerate(config["dependencies"]) if d.get("api_name") == fn)
    with httpx.Client(base_url=base, timeout=120) as client:
        r = client.post("/gradio_api/queue/join", json={
            "data": data, "event_data": event_data, "fn_index": index, "trigger_id": dep["targets"][0][0],
            "session_hash": session_hash})
        r.raise_for_status()
        with client.stream("GET", "/gradio_api/queue/data", params={"session_hash": session_hash}) as stream:
            for line in stream.iter_lines():
                if not line.startswith("data:"):
                    continue
                msg = json.loads(line[5:])
                if msg.get("msg") == "process_completed":
                    assert msg.get("success"), msg
                    return msg["output"]["data"]
    raise AssertionError(f"{fn} did not complete")


@pytest.mark.slow
def test_kill_9_mid_answer_loses_no_finished_turn(tmp_path, tiny_model_dir):
    from assistant.web.api import key_owner
    from assistant.store import Store

    port = free_port()
    proc = start_server(tmp_path, tiny_model_dir, port)
    try:
        finished = [complete(port, f"Question {i}") for i in range(3)]
        # A chat turn in the web page, rated thumbs-up.
        state = gradio_event(port, "crash-page", "send", ["Is my rating kept?", {"session": "crash-visitor"}])[2]
        gradio_event(port, "crash-page", "like", [state, None],
                     {"index": 1, "value": "answer", "liked": True})
        resp, client = stream_some(port, chunks=5)
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait(timeout=30)
        client.close()
    finally:
        if proc.poll() is None:
            proc.kill()
    store = Store(tmp_path / "assistant.sqlite")  # opens (quick_check) after the crash
    owner = key_owner(KEY)
    for i, answer in enumerate(finished):
        conv = store.get(answer["conversation_id"], owner)
        assert conv is not None, f"finished turn {i} was lost"
        assert conv.turns[-1].user == f"Question {i}"
        assert conv.turns[-1].answer == answer["choices"][0]["message"]["content"]
    page = store.get(state["conversation"], "crash-visitor")
    assert [t.user for t in page.turns] == ["Is my rating kept?"]
    assert [(f.turn_id, f.rating) for f in store.feedback()] == [(page.turns[0].id, 1)]
    store.close()
    assert KEY not in (tmp_path / "server.log").read_text(errors="replace")  # no key in the server's log
    # The server starts again on the same database and keeps answering.
    proc = start_server(tmp_path, tiny_model_dir, port)
    try:
        again = complete(port, "After the crash")
        assert again["conversation_id"]
    finally:
        proc.kill()
        proc.wait(timeout=30)


@pytest.mark.slow
def test_graceful_shutdown_stores_the_turn_in_flight(tmp_path, tiny_model_dir):
    from assistant.store import Store

    port = free_port()
    proc = start_server(tmp_path, tiny_model_dir, port)
    try:
        resp, client = stream_some(port, chunks=3)
        proc.send_signal(signal.SIGTERM)
        proc.wait(timeout=60)
        client.close()
    finally:
        if proc.poll() is None:
            proc.kill()
    store = Store(tmp_path / "assistant.sqlite")
    rows = store.search_turns(text="Tell me a long story")
    assert len(rows) == 1
    turn = store.find_turn(rows[0]["turn_id"])[1]
    assert turn.finish_reason == "cancelled"
    assert turn.answer_ids, "the partial answer was not kept"


REBUILD = """
import sys
from assistant.web import admin
from retrieval.embedding import HashingEmbedder
from retrieval.index import KnowledgeIndex

index = KnowledgeIndex.load(sys.argv[1], HashingEmbedder(dimension=256))
print("rebuilding", flush=True)
print(admin.rebuild_index(index), flush=True)
"""


@pytest.mark.slow
def test_kill_9_during_index_rebuild_keeps_the_previous_index(tmp_path):
    """The admin area's "Rebuild index" (``admin.rebuild_index``) in a process killed with
    SIGKILL while it writes the new generation: the index folder still opens, with the
    previous documents, and every query returns the same hits as before."""
    from retrieval.embedding import HashingEmbedder
    from retrieval.index import KnowledgeIndex

    docs = tmp_path / "docs"
    docs.mkdir()
    topics = ["refunds", "shipping", "passwords", "invoices", "warranty", "kangaroos", "marmalade", "zebrafish"]
    for i in range(400):
        topic = topics[i % len(topics)]
        (docs / f"doc{i:03d}.md").write_text(
            f"# {topic.title()} note {i}\n\n" + "\n\n".join(
                f"Paragraph {j} about {topic}: item {i * 31 + j} costs {j * 7} euros and ships in {j % 5} days."
                for j in range(12)), encoding="utf-8")
    folder = tmp_path / "index"
    embedder = HashingEmbedder(dimension=256)
    index = KnowledgeIndex.create(folder, embedder)
    index.add_paths([docs])
    index.save()
    queries = [f"{t} item {n}" for t in topics for n in (5, 77)]
    before = {q: [(h.chunk_id, round(h.score, 6)) for h in index.search(q, k=5)] for q in queries}
    manifest_before = (folder / "manifest.json").read_text()
    n_docs = len(index.documents())
    # Every document changes, so the rebuild re-chunks and re-embeds all of them.
    for path in docs.iterdir():
        path.write_text(path.read_text() + "\n\nUpdated: prices changed.\n", encoding="utf-8")

    proc = subprocess.Popen([sys.executable, "-c", REBUILD, str(folder)], cwd=ROOT, stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, env=dict(os.environ, HF_HUB_OFFLINE="1"))
    caught = False
    deadline = time.monotonic() + 300
    while time.monotonic() < deadline and proc.poll() is None:
        if any(p.name.startswith(".tmp-gen-") for p in folder.iterdir()):
            os.kill(proc.pid, signal.SIGKILL)
            caught = True
            break
        time.sleep(0.001)
    proc.wait(timeout=30)
    output = proc.stdout.read().decode(errors="replace")
    assert caught, f"the rebuild was not caught mid-write (it ended first):\n{output[-2000:]}"
    assert proc.returncode == -signal.SIGKILL
    assert "Index rebuilt" not in output

    assert (folder / "manifest.json").read_text() == manifest_before
    again = KnowledgeIndex.load(folder, HashingEmbedder(dimension=256))
    assert len(again.documents()) == n_docs
    after = {q: [(h.chunk_id, round(h.score, 6)) for h in again.search(q, k=5)] for q in queries}
    assert after == before
    assert all(after[q] for q in queries)
    # The next save clears the half-written generation and switches to a complete one.
    again.add_paths([docs])
    again.save()
    assert not [p for p in folder.iterdir() if p.name.startswith(".tmp-")]
    assert len(KnowledgeIndex.load(folder, HashingEmbedder(dimension=256)).documents()) == n_docs
