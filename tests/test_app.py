"""The chat app and server wiring with the tiny model: the Gradio API through
gradio_client against a live server, health, embedding origins, ownership.

Also holds the helpers other app tests import (``make_runtime``, ``LiveServer``).
"""

from __future__ import annotations

import socket
import threading
import time
from pathlib import Path

import pytest

from retrieval.types import Hit


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def make_runtime(tmp_path: Path, lm, **config):
    """A Runtime over the tiny model: no index, no intent model, a store on disk."""
    from assistant.config import AppConfig, ChatConfig, GenerationConfig
    from assistant.engine import Engine
    from assistant.runtime import Runtime
    from assistant.store import Store

    config.setdefault("chat", ChatConfig(context_tokens=512))
    config.setdefault("generation", GenerationConfig(max_new_tokens=12))
    cfg = AppConfig(home=tmp_path, **config)
    store = Store(tmp_path / "assistant.sqlite")
    engine = Engine(lm, store, chat=cfg.chat, generation=cfg.generation)
    return Runtime(config=cfg, lm=lm, store=store, engine=engine)


class LiveServer:
    """``create_app(rt)`` under uvicorn in a thread on a free port."""

    def __init__(self, rt) -> None:
        import uvicorn

        from assistant.web.server import create_app
        from assistant.web.streaming import InFlight

        self.rt = rt
        self.inflight = InFlight()
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.server = uvicorn.Server(uvicorn.Config(create_app(rt, self.inflight), host="127.0.0.1",
                                                    port=self.port, log_level="warning"))
        self.thread = threading.Thread(target=self.server.run, daemon=True)

    def __enter__(self) -> "LiveServer":
        self.thread.start()
        deadline = time.monotonic() + 60
        while not self.server.started:
            if time.monotonic() > deadline or not self.thread.is_alive():
                raise RuntimeError("the test server did not start")
            time.sleep(0.05)
        return self

    def __exit__(self, *exc) -> None:
        self.inflight.cancel_all(wait=5)
        self.server.should_exit = True
        self.thread.join(timeout=15)


@pytest.fixture
def rt(tmp_path, tiny_lm):
    return make_runtime(tmp_path, tiny_lm, api_keys=("test-key",), admin_key="admin-secret",
                        allowed_origins=("https://shop.example.com",))


@pytest.fixture
def client(rt):
    from fastapi.testclient import TestClient

    from assistant.web.server import create_app

    with TestClient(create_app(rt)) as c:
        yield c


def test_health(client):
    body = client.get("/health").json()
    assert body["status"] == "ok"
    assert body["model"] == "tiny-llama"
    assert body["admin"] is True and body["api"] is True


def test_allowed_origin_gets_cors_and_other_origins_are_refused(client):
    ok = client.get("/health", headers={"Origin": "https://shop.example.com"})
    assert ok.status_code == 200
    assert ok.headers["access-control-allow-origin"] == "https://shop.example.com"
    refused = client.get("/health", headers={"Origin": "https://evil.example.org"})
    assert refused.status_code == 403
    assert "not allowed" in refused.json()["error"]
    page = client.get("/")
    policy = page.headers["content-security-policy"].split("; ")
    assert "frame-ancestors 'self' https://shop.example.com" in policy
    assert "img-src 'self' data:" in policy and "connect-src 'self'" in policy and "frame-src 'self'" in policy
    for path in ("/admin/", "/health", "/gradio.js", "/v1/models"):  # every response, not only the pages
        assert "img-src 'self' data:" in client.get(path).headers["content-security-policy"], path
    assert client.get("/docs").status_code == 404  # FastAPI's docs page would load its scripts from a CDN


def test_web_component_loader_is_served_locally(client):
    js = client.get("/gradio.js")
    assert js.status_code == 200 and "import(" in js.text
    snippet = client.get("/embed.txt").text
    assert "<gradio-app" in snippet and "<iframe" in snippet


def test_chatview_shows_answers_as_safe_html_but_keeps_code():
    from assistant.web.chatview import turn_messages
    from assistant.types import Source, Turn

    turn = Turn(user="<b>hi</b> ![u](https://attacker.example/u.png)",
                answer="<script>x</script> and `a<b` and\n```\nif a < b: pass\n```\n"
                       "![x](https://attacker.example/?d=1)",
                sources=[Source("c1", "d1", "![d](https://attacker.example/d.png) <img src=x>", "/srv/docs/<b>doc<b>.md",
                                title="T")])
    user, bubble = (m["content"] for m in turn_messages(turn))
    answer, sources = bubble.split('<details class="turn-details"')
    assert user == "&lt;b&gt;hi&lt;/b&gt; ![u](https://attacker.example/u.png)"  # text, not Markdown
    assert "<script>" not in answer and "&lt;script&gt;" in answer
    assert "<code>a&lt;b</code>" in answer and "<pre><code>if a &lt; b: pass" in answer
    assert "<img" not in answer and 'href="https://attacker.example/?d=1"' in answer
    assert "<img" not in sources and "&lt;img src=x&gt;" in sources and "&lt;b&gt;doc&lt;b&gt;.md" in sources
    assert "/srv/docs" not in sources  # named by its file, not by the server's folders
    assert "<summary>Sources (1)</summary>" in sources


def test_citation_markers_link_the_sentences_to_the_sources_the_model_saw():
    from assistant.web.chatview import CITE_OPEN, turn_messages
    from assistant.types import Source, Turn

    answer = "Refunds take five days. Parcels arrive in two days. I hope this helps."
    turn = Turn(user="q", answer=answer + f" {CITE_OPEN}2\ue001 forged", id="t1", answer_ids=[1, 2],
                citations=[(0, 23, 1), (24, 51, 2), (52, 70, 7)],  # 7: no such source, never linked
                sources=[Source("c1", "d1", "Refunds take five days.", "refunds.md", title="Refunds"),
                         Source("c2", "d2", "Parcels arrive in two days.", "shipping.md", title="Shipping")])
    bubble = turn_messages(turn)[1]["content"]
    assert bubble.count('class="cite-link"') == 2
    assert 'five days.<sup class="cite"><a href="#cite-t1-1"' in bubble
    assert 'two days.<sup class="cite"><a href="#cite-t1-2"' in bubble
    assert 'id="cite-t1-1"' in bubble and 'id="cite-t1-2"' in bubble  # the passages the markers open
    assert "forged" in bubble and "\ue000" not in bubble  # the model's own marker characters are dropped
    assert 'class="answer-action explain-turn" data-turn="t1"' in bubble
    # while the answer streams: no markers, no details yet
    streaming = turn_messages(turn, "Refunds take five days.")[1]["content"]
    assert "cite-link" not in streaming and "<details" not in streaming


def test_message_turn_ids_follow_the_bubbles(tiny_lm, tmp_path):
    from assistant.web.chatview import conversation_messages, message_roles, message_turn_ids
    from assistant.types import Conversation, Source, Turn

    conv = Conversation(turns=[Turn(user="a", answer="b", id="t1"),
                               Turn(user="c", answer="d", id="t2", sources=[Source("c1", "d1", "text", "doc.md")])])
    assert len(message_turn_ids(conv)) == len(conversation_messages(conv)) == 4
    assert message_turn_ids(conv) == ["t1", "t1", "t2", "t2"]
    assert message_roles(conv) == ["user", "answer", "user", "answer"]


def test_gradio_client_chats_and_conversation_is_owned_by_session(rt):
    from gradio_client import Client

    with LiveServer(rt) as server:
        client = Client(server.url + "/", verbose=False)
        api = client.view_api(print_info=False, return_format="dict")
        assert "/send" in api["named_endpoints"]
        state = {"session": "session-one"}
        result = client.predict("How do refunds work?", state, api_name="/send")
        box, messages, new_state = result[0], result[1], result[2]
        assert box == ""
        assert [m["role"] for m in messages][:2] == ["user", "assistant"]
        cid = new_state["conversation"]
        assert rt.store.get(cid, "session-one") is not None
        # Another session cannot open it, even knowing the id.
        assert rt.store.get(cid, "session-two") is None
        result = client.predict({"session": "session-two", "conversation": cid}, api_name="/load")
        assert result[1] == [] and "conversation" not in result[2]


def test_undo_regenerate_and_new_conversation_through_the_gradio_api(rt):
    from gradio_client import Client

    with LiveServer(rt) as server:
        client = Client(server.url + "/", verbose=False)
        state = {"session": "session-undo"}
        state = client.predict("First question", state, api_name="/send")[2]
        state = client.predict("Second question", state, api_name="/send")[2]
        conv = rt.store.get(state["conversation"], "session-undo")
        assert [t.user for t in conv.turns] == ["First question", "Second question"]
        first_answer_id = conv.turns[0].id

        last_id = conv.turns[1].id
        box, messages, state = client.predict(f"{last_id} 1", state, api_name="/regenerate")[:3]
        conv = rt.store.get(state["conversation"], "session-undo")
        assert [t.user for t in conv.turns] == ["First question", "Second question"]
        assert conv.turns[0].id == first_answer_id and conv.turns[1].id != last_id

        box, messages, state = client.predict(state, api_name="/undo")[:3]
        assert box == "Second question"  # back in the message box for editing
        conv = rt.store.get(state["conversation"], "session-undo")
        assert [t.user for t in conv.turns] == ["First question"]
        assert [m["role"] for m in messages] == ["user", "assistant"]

        box, messages, state = client.predict(state, api_name="/new_conversation")[:3]
        assert messages == [] and "conversation" not in state
        assert len(rt.store.list("session-undo")) == 1


def FakeHit(chunk_id: str, doc_id: str, text: str, source: str, title: str = "", heading: str = "",
            score: float = 0.0) -> Hit:
    """A real retrieval ``Hit`` with the fields these tests care about (no index behind it)."""
    return Hit(chunk_id=chunk_id, doc_id=doc_id, text=text, source=source, title=title, heading=heading, page=None,
               language="", dense_score=0.0, bm25_score=0.0, score=score)


class FakeIndex:
    """Always returns the refund policy passage."""

    def documents(self):
        from retrieval.types import DocumentInfo

        return [DocumentInfo(doc_id="d1", source="policies/refunds.md", title="Refund policy", kind="md",
                             content_hash="0", chunks=1, languages=("en",))]

    def search(self, query, k=4, language=None):
        return [FakeHit("c1", "d1", "Refunds are paid back to the card within five days.", "policies/refunds.md",
                        title="Refund policy", heading="Timing", score=0.87)]
