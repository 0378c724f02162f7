"""The remote generation backend against a real OpenAI-compatible server:
this assistant's own /v1 endpoint, started in the test on loopback."""

import socket
import threading
import time

import pytest

from assistant.config import AppConfig, ChatConfig, GenerationConfig
from assistant.engine import Engine
from assistant.errors import GenerationError
from assistant.generation.remote import RemoteBackend
from assistant.runtime import Runtime
from assistant.store import Store


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture
def server(tiny_lm, tmp_path):
    import uvicorn

    from assistant.web.server import create_app

    config = AppConfig(home=tmp_path, api_keys=("secret-key",), chat=ChatConfig(context_tokens=512),
                       generation=GenerationConfig(max_new_tokens=8))
    store = Store(tmp_path / "server.sqlite")
    engine = Engine(tiny_lm, store, chat=config.chat, generation=config.generation)
    rt = Runtime(config=config, lm=tiny_lm, store=store, engine=engine)
    port = _free_port()
    srv = uvicorn.Server(uvicorn.Config(create_app(rt), host="127.0.0.1", port=port, log_level="warning"))
    thread = threading.Thread(target=srv.run, daemon=True)
    thread.start()
    for _ in range(200):
        if srv.started:
            break
        time.sleep(0.05)
    yield f"http://127.0.0.1:{port}/v1", store
    srv.should_exit = True
    thread.join(timeout=10)


def test_remote_backend_streams_the_servers_answer_and_keeps_local_turn_data(server, tiny_lm):
    url, server_store = server
    local = Store(":memory:")
    engine = Engine(tiny_lm, local, chat=ChatConfig(context_tokens=512), generation=GenerationConfig(max_new_tokens=8),
                    backend=RemoteBackend(url, "default", api_key="secret-key"))
    conv = local.create("alice")
    turn = engine.run_turn(conv, "My order 48213 has not arrived, how do refunds work?")
    # the answer is what the remote server generated and stored
    remote_answers = [r["answer"] for r in server_store.search_turns()]
    assert turn.answer in remote_answers
    assert turn.model == "remote:default"
    # understanding and slots still happen locally
    assert conv.slots.get("order_id") == "48213"
    assert local.get(conv.id, "alice").turns[0].answer == turn.answer


def test_remote_backend_with_a_wrong_key_is_a_clear_error(server, tiny_lm):
    url, _ = server
    engine = Engine(tiny_lm, Store(":memory:"), chat=ChatConfig(context_tokens=512),
                    backend=RemoteBackend(url, "default", api_key="wrong"))
    conv = engine.store.create("alice")
    turn = engine.run_turn(conv, "hello there, how do refunds work?")
    assert turn.finish_reason == "error"
    # the user's message is kept even though the server refused
    assert engine.store.get(conv.id, "alice").turns[0].user == "hello there, how do refunds work?"


def test_remote_url_must_be_http():
    with pytest.raises(GenerationError, match="http"):
        RemoteBackend("ftp://example", "m")
