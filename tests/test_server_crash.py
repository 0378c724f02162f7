"""Durability of the conversation store: concurrent writes, a ``kill -9`` of a
real ``assistant serve`` mid-answer (no finished turn lost), and a graceful
shutdown that stores the turn in flight."""

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


@pytest.fixture(scope="module")
def tiny_model_dir(tmp_path_factory, tiny_lm):
    folder = tmp_path_factory.mktemp("tiny-model")
    tiny_lm.model.save_pretrained(folder)
    tiny_lm.tokenizer.save_pretrained(folder)
    return folder


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


@pytest.mark.slow
def test_kill_9_mid_answer_loses_no_finished_turn(tmp_path, tiny_model_dir):
    from assistant.api import key_owner
    from assistant.store import Store

    port = free_port()
    proc = start_server(tmp_path, tiny_model_dir, port)
    try:
        finished = [complete(port, f"Question {i}") for i in range(3)]
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
    store.close()
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
