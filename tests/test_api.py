"""The OpenAI-compatible API, driven by the official ``openai`` client against
a live server (tiny model; a fake index supplies sources)."""

from __future__ import annotations

from dataclasses import dataclass

import pytest

from test_app import LiveServer, make_runtime


@dataclass
class FakeHit:
    chunk_id: str
    doc_id: str
    text: str
    source: str
    title: str = ""
    heading: str = ""
    score: float = 0.0


class FakeIndex:
    """Always returns the refund policy passage."""

    def search(self, query, k=4, language=None):
        return [FakeHit("c1", "d1", "Refunds are paid back to the card within five days.", "policies/refunds.md",
                        title="Refund policy", heading="Timing", score=0.87)]


@pytest.fixture
def server(tmp_path, tiny_lm):
    rt = make_runtime(tmp_path, tiny_lm, api_keys=("key-one", "key-two"), rate_limit_per_minute=5)
    rt.engine.index = FakeIndex()
    with LiveServer(rt) as s:
        yield s


def openai_client(server, key="key-one"):
    from openai import OpenAI

    return OpenAI(base_url=server.url + "/v1", api_key=key, max_retries=0)


def test_models_lists_the_loaded_model(server):
    models = openai_client(server).models.list()
    assert [m.id for m in models.data] == ["tiny-llama"]


def test_plain_completion_with_history_and_sources(server):
    client = openai_client(server)
    resp = client.chat.completions.create(
        model="tiny-llama",
        messages=[{"role": "system", "content": "ignored"}, {"role": "user", "content": "Hello"},
                  {"role": "assistant", "content": "Hi, how can I help?"},
                  {"role": "user", "content": "How long do refunds take?"}],
        max_tokens=8,
    )
    assert resp.object == "chat.completion"
    assert resp.choices[0].message.role == "assistant"
    assert resp.choices[0].finish_reason in ("stop", "length")
    assert resp.usage.completion_tokens <= 8
    sources = resp.model_extra["sources"]
    assert sources == [{"title": "Refund policy", "heading": "Timing", "source": "policies/refunds.md",
                        "score": 0.87, "text": "Refunds are paid back to the card within five days."}]
    # The conversation is stored under a hash of the key, seeded with the prior pair.
    from assistant.api import key_owner

    conv = server.rt.store.get(resp.model_extra["conversation_id"], key_owner("key-one"))
    assert conv is not None
    assert [t.user for t in conv.turns] == ["Hello", "How long do refunds take?"]
    assert conv.turns[0].answer == "Hi, how can I help?"
    assert conv.turns[1].answer == resp.choices[0].message.content
    assert "key-one" not in conv.owner


def test_streaming_completion_sends_sources_in_the_last_chunk(server):
    client = openai_client(server)
    stream = client.chat.completions.create(model="tiny-llama", stream=True, max_tokens=8,
                                            messages=[{"role": "user", "content": "Refund please"}])
    chunks = list(stream)
    assert chunks[0].choices[0].delta.role == "assistant"
    text = "".join(c.choices[0].delta.content or "" for c in chunks)
    last = chunks[-1]
    assert last.choices[0].finish_reason in ("stop", "length")
    assert last.model_extra["sources"][0]["title"] == "Refund policy"
    conv = server.rt.store.get(last.model_extra["conversation_id"], None)
    assert conv.turns[-1].answer == text.strip()  # the engine stores the answer trimmed


def test_missing_and_wrong_keys_are_refused(server):
    import openai

    with pytest.raises(openai.AuthenticationError, match="invalid API key"):
        openai_client(server, key="nope").models.list()
    import httpx

    r = httpx.post(server.url + "/v1/chat/completions", json={"messages": [{"role": "user", "content": "x"}]})
    assert r.status_code == 401
    assert "Bearer" in r.json()["error"]["message"]


def test_bad_request_is_a_400_naming_the_field(server):
    import openai

    client = openai_client(server)
    with pytest.raises(openai.BadRequestError, match="last message must have role 'user'"):
        client.chat.completions.create(model="m", messages=[{"role": "assistant", "content": "hi"}])
    with pytest.raises(openai.BadRequestError, match="temperature"):
        client.chat.completions.create(model="m", temperature=5, messages=[{"role": "user", "content": "hi"}])


def test_rate_limit_per_key_gives_429_with_retry_after(server):
    import openai

    client = openai_client(server)
    for _ in range(5):
        client.models.list()
    with pytest.raises(openai.RateLimitError) as info:
        client.models.list()
    retry_after = int(info.value.response.headers["retry-after"])
    assert 1 <= retry_after <= 60
    # Another key has its own budget.
    assert openai_client(server, key="key-two").models.list().data


def test_rate_limiter_window():
    from assistant.api import RateLimiter

    limiter = RateLimiter(2, window=60)
    assert limiter.check("a", now=0) == 0
    assert limiter.check("a", now=1) == 0
    assert limiter.check("a", now=2) == 58
    assert limiter.check("b", now=2) == 0
    assert limiter.check("a", now=60.5) == 0


def test_api_disabled_without_keys(tmp_path, tiny_lm):
    from fastapi.testclient import TestClient

    from assistant.server import create_app

    rt = make_runtime(tmp_path, tiny_lm)
    with TestClient(create_app(rt)) as c:
        r = c.get("/v1/models", headers={"Authorization": "Bearer anything"})
    assert r.status_code == 401
    assert "ASSISTANT_API_KEYS" in r.json()["error"]["message"]


def test_openai_messages_mapping():
    from assistant.api import ChatMessage, to_exchange
    from assistant.errors import InputError

    ex = to_exchange([ChatMessage(role="system", content="s"), ChatMessage(role="user", content="a"),
                      ChatMessage(role="assistant", content="b"),
                      ChatMessage(role="user", content=[{"type": "text", "text": "c"}])])
    assert ex.history == [("a", "b")] and ex.message == "c"
    with pytest.raises(InputError, match="role 'user'"):
        to_exchange([ChatMessage(role="user", content="a"), ChatMessage(role="assistant", content="b")])
