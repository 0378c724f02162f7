"""Concurrency as outcomes (tiny model, live server): users in multi-turn
conversations at once through the API and the web page's Gradio API are all
answered and never see each other's turns; beyond the bounded queue each side
answers "busy, try again" and serves the accepted requests once capacity frees.

``bench/load.py`` measures the same with 20+ users against ``assistant serve``.
"""

from __future__ import annotations

import threading
import time

import pytest

from bench.load import cross_talk, run_users
from test_app import LiveServer, make_runtime


class GatedBackend:
    """The tiny model behind a gate: generation starts only once ``gate`` is set, so a test can
    hold requests in flight for as long as it needs (no timing involved)."""

    def __init__(self, inner) -> None:
        self.inner, self.name = inner, inner.name
        self.gate = threading.Event()

    def generate(self, prompt, settings, cancel, cache):
        gen = self.inner.generate(prompt, settings, cancel, cache)
        gate = self.gate

        class Gated:
            def __iter__(self):
                gate.wait(timeout=120)
                yield from gen

            @property
            def result(self):
                return gen.result

        return Gated()


def wait_for(condition, what: str, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.02)


def test_concurrent_users_are_all_answered_without_cross_talk(tmp_path, tiny_lm):
    from assistant.config import GenerationConfig

    keys = [f"load-key-{i}" for i in range(3)]
    rt = make_runtime(tmp_path, tiny_lm, api_keys=tuple(keys), rate_limit_per_minute=10_000, max_queue=16,
                      generation=GenerationConfig(max_new_tokens=6))
    with LiveServer(rt) as server:
        results = run_users(server.url, 6, 3, 6, keys)
    assert [r.errors for r in results] == [[]] * 6
    assert [len(r.latencies) for r in results] == [3] * 6
    assert {r.channel for r in results} == {"api", "gradio"}
    assert cross_talk(rt.store, results, 3) == []


def test_api_beyond_the_queue_answers_busy_then_serves_the_accepted(tmp_path, tiny_lm):
    import httpx

    rt = make_runtime(tmp_path, tiny_lm, api_keys=("k",), rate_limit_per_minute=10_000, max_queue=2)
    backend = rt.engine.backend = GatedBackend(rt.engine.backend)
    headers = {"Authorization": "Bearer k"}
    body = {"model": "m", "max_tokens": 6, "messages": [{"role": "user", "content": "hello"}]}
    with LiveServer(rt) as server:
        held: list[httpx.Response] = []

        def hold() -> None:
            held.append(httpx.post(server.url + "/v1/chat/completions", json=body, headers=headers, timeout=120))

        holders = [threading.Thread(target=hold) for _ in range(2)]
        for t in holders:
            t.start()
        wait_for(lambda: len(server.inflight) == 2, "two requests in flight")
        refused = [httpx.post(server.url + "/v1/chat/completions", json=body, headers=headers, timeout=30)
                   for _ in range(3)]
        for r in refused:
            assert r.status_code == 503
            assert "try again" in r.json()["error"]["message"]
            assert int(r.headers["retry-after"]) > 0
        backend.gate.set()
        for t in holders:
            t.join(timeout=120)
        assert [r.status_code for r in held] == [200, 200]
        assert all(r.json()["choices"][0]["finish_reason"] in ("stop", "length") for r in held)
        # The slots are free again.
        assert httpx.post(server.url + "/v1/chat/completions", json=body, headers=headers,
                          timeout=120).status_code == 200


def test_web_page_beyond_the_queue_answers_queue_full_then_serves_the_accepted(tmp_path, tiny_lm):
    from gradio_client import Client
    from gradio_client.utils import Status

    rt = make_runtime(tmp_path, tiny_lm, max_queue=2)  # the chat runs 2 turns at a time, 2 more may wait
    backend = rt.engine.backend = GatedBackend(rt.engine.backend)
    with LiveServer(rt) as server:
        client = Client(server.url + "/", verbose=False)

        def submit(i: int):
            return client.submit(f"hello {i}", {"session": f"visitor-{i}"}, api_name="/send")

        running = [submit(0), submit(1)]
        wait_for(lambda: len(server.inflight) == 2, "two turns generating")
        waiting = [submit(2), submit(3)]
        wait_for(lambda: all(j.status().code == Status.IN_QUEUE for j in waiting), "two turns in the queue")
        extra = submit(4)
        with pytest.raises(Exception, match="(?i)queue is full"):
            extra.result(timeout=60)
        backend.gate.set()
        for i, job in enumerate(running + waiting):
            box, messages, state = job.result(timeout=120)[:3]
            assert [m["role"] for m in messages][:2] == ["user", "assistant"]
            conv = rt.store.get(state["conversation"], f"visitor-{i}")
            assert [t.user for t in conv.turns] == [f"hello {i}"]
        assert rt.store.list("visitor-4") == []
        client.close()
