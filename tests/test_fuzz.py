"""Fuzzing with hypothesis: the message path, the document readers and the data loaders.

What every test holds, whatever the input: the code either succeeds or raises
one of the domain errors of ``assistant.errors`` (never a ``TypeError``, a
``RecursionError``, a stack trace), and nothing is written outside the data
folder the test gives it (``sandbox`` compares file trees before and after).

Each test is bounded (``max_examples``, no deadline) so the whole file runs in
well under a minute on two cores; ``--hypothesis-show-statistics`` prints how
many examples ran.
"""

from __future__ import annotations

import io
import json
import os
import string
import tempfile
from pathlib import Path

import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st
from hypothesis.configuration import set_hypothesis_home_dir

# Hypothesis keeps caches in .hypothesis/ of the working folder; keep the checkout clean.
set_hypothesis_home_dir(os.path.join(tempfile.gettempdir(), f"hypothesis-{os.getuid()}"))

from assistant.errors import AssistantError, ConfigError, DataFormatError, InputError

ROOT = Path(__file__).resolve().parent.parent
SKIP_DIRS = {".git", ".venv", ".hypothesis", ".pytest_cache", "__pycache__", ".assistant-home", "test-artifacts",
             "offline_assistant.egg-info"}

FUZZ = settings(max_examples=40, deadline=None, database=None,  # no .hypothesis folder in the checkout
                suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture,
                                       HealthCheck.data_too_large, HealthCheck.large_base_example])
FEW = settings(FUZZ, max_examples=25)

# Any code point, lone surrogates and control characters included (hypothesis leaves surrogates out by default).
ANY_CHAR = st.characters(exclude_categories=())
ANY_TEXT = st.text(ANY_CHAR, max_size=300)
MESSAGES = st.one_of(
    ANY_TEXT,
    st.text(st.sampled_from("\x00\x01\x07\x08\x0b\x0c\x1b\x7f\u200b\u200e\u202e\ufeff\ufffd\r\n\t "), max_size=50),
    st.tuples(st.sampled_from("aé中🙂\ud800"), st.integers(3_900, 30_000)).map(lambda t: t[0] * t[1]),  # huge
    st.just(""),
)


# -- the data-folder sandbox ---------------------------------------------------------------
def tree(folder: Path, skip: set[str] = frozenset()) -> set[str]:
    out = set()
    for dirpath, dirnames, filenames in os.walk(folder):
        dirnames[:] = [d for d in dirnames if d not in skip]
        rel = Path(dirpath).relative_to(folder)
        out.update(str(rel / f) for f in filenames)
    return out


@pytest.fixture
def sandbox(tmp_path, monkeypatch):
    """``tmp_path/home`` is the data folder; afterwards nothing new may exist outside it
    (in tmp_path or in the checkout)."""
    home = tmp_path / "home"
    home.mkdir()
    monkeypatch.setenv("ASSISTANT_HOME", str(home))
    before_tmp = tree(tmp_path)
    before_repo = tree(ROOT, SKIP_DIRS)
    yield home
    outside = {p for p in tree(tmp_path) - before_tmp if not p.startswith("home/")}
    assert not outside, f"files written outside the data folder: {sorted(outside)[:10]}"
    new_in_repo = tree(ROOT, SKIP_DIRS) - before_repo
    assert not new_in_repo, f"files written into the checkout: {sorted(new_in_repo)[:10]}"


# -- the message path ---------------------------------------------------------------------------
@FUZZ
@given(message=MESSAGES)
@example(message="a\ud800b")  # a lone surrogate (JSON allows "\ud800"): the tokenizer refused it
@example(message="\x00" * 10)
def test_engine_respond_any_message(engine, message):
    conv = engine.store.create("fuzz")
    try:
        turn = engine.run_turn(conv, message)
    except InputError as exc:
        assert str(exc)
        assert engine.store.get(conv.id, "fuzz").turns == []  # a refused message stores nothing
        return
    assert turn.finish_reason in ("stop", "length")
    stored = engine.store.get(conv.id, "fuzz").turns
    assert [t.id for t in stored] == [turn.id]
    assert stored[0].user == turn.user and stored[0].answer == turn.answer


@pytest.fixture(scope="module")
def api_client(tmp_path_factory, tiny_lm):
    from fastapi.testclient import TestClient

    from assistant.config import GenerationConfig
    from assistant.web.server import create_app
    from test_app import make_runtime

    rt = make_runtime(tmp_path_factory.mktemp("api-fuzz"), tiny_lm, api_keys=("fuzz-key",),
                      rate_limit_per_minute=100_000, generation=GenerationConfig(max_new_tokens=4))
    with TestClient(create_app(rt)) as client:
        yield client


JSON = st.recursive(st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | ANY_TEXT,
                    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(ANY_TEXT, inner, max_size=4),
                    max_leaves=12)
ROLES = st.sampled_from(["user", "assistant", "system", "developer", "tool", "robot", ""])
CHAT_BODIES = st.fixed_dictionaries(
    {"messages": st.lists(st.fixed_dictionaries({"role": ROLES, "content": st.one_of(MESSAGES, JSON)}),
                          max_size=4)},
    optional={"model": JSON, "max_tokens": st.integers(-5, 5000) | JSON, "temperature": JSON, "stream": st.just(False),
              "top_p": st.floats(allow_nan=False) | JSON, "seed": st.integers() | JSON},
)


@FEW
@given(body=st.one_of(CHAT_BODIES, JSON))
@example(body={"messages": [{"role": "user", "content": "a\ud800b"}]})
@example(body={"messages": [{"role": "user", "content": "hi"}], "max_tokens": 10**30})
@example(body={"messages": [], "model": float("inf")})  # Python's json reads Infinity; the 422 handler crashed
@example(body={"messages": [{"role": "user", "content": "\ud800"}, {"role": "assistant", "content": "\udfff\x00"},
                            {"role": "user", "content": "next"}]})
def test_api_chat_completions_any_body(api_client, body):
    raw = json.dumps(body)  # ASCII with \\u escapes: lone surrogates travel as JSON allows
    r = api_client.post("/v1/chat/completions", content=raw,
                        headers={"Authorization": "Bearer fuzz-key", "Content-Type": "application/json"})
    assert r.status_code in (200, 400), r.text[:500]
    data = r.json()
    if r.status_code == 200:
        assert data["choices"][0]["message"]["role"] == "assistant"
    else:
        assert data["error"]["message"] and data["error"]["type"] == "invalid_request_error"


@FEW
@given(raw=st.binary(max_size=300))
def test_api_any_bytes(api_client, raw):
    r = api_client.post("/v1/chat/completions", content=raw,
                        headers={"Authorization": "Bearer fuzz-key", "Content-Type": "application/json"})
    assert r.status_code in (200, 400), r.text[:500]


# -- document readers and uploads -----------------------------------------------------------------
SUFFIXES = (".md", ".markdown", ".txt", ".html", ".htm", ".pdf", ".docx", ".csv", ".json", ".jsonl")


def _docx_bytes() -> bytes:
    import docx

    document = docx.Document()
    document.add_heading("Returns policy", level=1)
    document.add_paragraph("Laptops can be returned within thirty days with the receipt.")
    buffer = io.BytesIO()
    document.save(buffer)
    return buffer.getvalue()


def _valid_documents() -> dict[str, bytes]:
    from test_retrieval_ingest import minimal_pdf

    return {
        ".pdf": minimal_pdf(["Refunds take five days.", "Second page about kangaroos."]),
        ".docx": _docx_bytes(),
        ".html": b"<html><head><title>Help</title></head><body><h1>Help</h1><p>Refunds take five days.</p>"
                 b"<script>alert(1)</script></body></html>",
        ".md": "# Guide\n\n## Setup\n\nInstall it. 退款需要五天。\n".encode(),
        ".json": json.dumps({"faq": [{"question": "How long?", "answer": "Five days."}]}).encode(),
        ".jsonl": b'{"question": "How long?", "answer": "Five days."}\n',
        ".csv": b"question,answer\nHow long?,Five days.\n",
        ".txt": "Plain text.\n\nSecond paragraph.\n".encode("utf-16"),
    }


VALID = _valid_documents()


def _check_extract(source: str, data: bytes) -> None:
    from retrieval.readers import extract

    try:
        doc = extract(source, data)
    except DataFormatError as exc:
        assert str(exc).startswith(source), str(exc)
        return
    assert doc.sections and all(s.text.strip() for s in doc.sections)


@FUZZ
@given(suffix=st.sampled_from(SUFFIXES), data=st.binary(max_size=2000))
@example(suffix=".json", data=b"[" * 5_000)  # deep nesting: RecursionError inside json
@example(suffix=".jsonl", data=b"[" * 5_000)
def test_readers_random_bytes(suffix, data):
    _check_extract("doc" + suffix, data)


@FUZZ
@given(suffix=st.sampled_from(sorted(VALID)), cut=st.floats(0, 1), flips=st.lists(st.integers(0, 10**6), max_size=4))
def test_readers_truncated_and_damaged_documents(suffix, cut, flips):
    data = bytearray(VALID[suffix][: int(len(VALID[suffix]) * cut)])
    for at in flips:
        if data:
            data[at % len(data)] ^= 0x5A
    _check_extract("doc" + suffix, bytes(data))


TRAVERSAL_NAMES = ["../../etc/passwd.md", "..\\..\\boot.md", "/etc/cron.d/x.md", "a/../../b.txt", "..", ".md",
                   "ok\x00.md", "C:\\Windows\\x.txt", "~/.ssh/k.md", "faq.md/..", "a" * 300 + ".md"]
NAME = st.one_of(st.sampled_from(TRAVERSAL_NAMES),
                 st.tuples(st.text(ANY_CHAR, max_size=40), st.sampled_from(SUFFIXES + ("", ".exe", ".md/")))
                 .map("".join))


@pytest.fixture
def empty_index(sandbox):
    from retrieval.embedding import HashingEmbedder
    from retrieval.index import KnowledgeIndex

    return KnowledgeIndex.create(sandbox / "index", HashingEmbedder())


def _upload(index, name: str, data: bytes):
    try:
        return index.add_upload(name, data)
    except InputError as exc:
        assert str(exc)
        return None


@pytest.mark.parametrize("name", TRAVERSAL_NAMES)
def test_upload_names_with_paths_are_refused(empty_index, name):
    with pytest.raises(InputError, match="upload"):
        empty_index.add_upload(name, b"# Title\n\nSome text about refunds.\n")
    assert empty_index.documents() == []


@FUZZ
@given(name=NAME, data=st.one_of(st.binary(max_size=500), st.sampled_from(sorted(VALID.values()))))
def test_upload_any_name_and_bytes(empty_index, name, data):
    report = _upload(empty_index, name, data)
    if report is not None:
        doc_id = (report.added + report.updated + report.unchanged)[0]
        stored = next(d.source for d in empty_index.documents() if d.doc_id == doc_id)
        assert stored.startswith("upload:")
        bare = stored[len("upload:"):]
        assert "/" not in bare and "\\" not in bare and bare not in ("", ".", "..")
    empty_index.save()  # writes only inside the index folder (the sandbox checks)
    from retrieval.index import KnowledgeIndex

    again = KnowledgeIndex.load(empty_index.folder, empty_index.embedder)
    assert len(again.documents()) == len(empty_index.documents())


# -- data loaders --------------------------------------------------------------------------------
@FUZZ
@given(lines=st.lists(st.one_of(JSON.map(lambda v: json.dumps(v, ensure_ascii=False)), ANY_TEXT), max_size=6))
@example(lines=["[" * 5_000])
@example(lines=['{"messages": [{"role": "user", "content": "hi"}, {"role": "assistant", "content": "a\\ud800"}]}'])
def test_finetune_jsonl_lines(sandbox, lines):
    from finetune.data import Dialogue, LineError, iter_records, load_dialogues

    for _, record in iter_records(lines):
        assert isinstance(record, (Dialogue, LineError))
    path = sandbox / "data.jsonl"
    path.write_text("\n".join(lines), encoding="utf-8", errors="surrogatepass")
    try:
        result = load_dialogues(path, skip_invalid=True)
    except DataFormatError as exc:
        assert "data.jsonl" in str(exc)
        return
    assert result.dialogues


@FEW
@given(data=st.binary(max_size=500))
def test_finetune_jsonl_random_bytes(sandbox, data):
    from finetune.data import load_dialogues

    path = sandbox / "data.jsonl"
    path.write_bytes(data)
    for skip in (False, True):
        try:
            load_dialogues(path, skip_invalid=skip)
        except DataFormatError:
            pass


YAML_SCALARS = st.one_of(st.none(), st.booleans(), st.integers(), st.text(string.printable, max_size=20))
YAML_VALUES = st.recursive(YAML_SCALARS, lambda inner: st.lists(inner, max_size=3)
                           | st.dictionaries(YAML_SCALARS, inner, max_size=4), max_leaves=15)


def _intents_like() -> st.SearchStrategy:
    intent = st.fixed_dictionaries({}, optional={
        "name": YAML_VALUES, "description": YAML_VALUES,
        "action": st.sampled_from(["reply", "answer", "x"]) | YAML_VALUES,
        "examples": st.dictionaries(st.sampled_from(["en", "zh", 1]), st.lists(YAML_SCALARS, max_size=3))
        | YAML_VALUES,
        "reply": st.dictionaries(st.sampled_from(["en", 2]), YAML_SCALARS) | YAML_VALUES})
    return st.fixed_dictionaries({}, optional={
        "intents": st.lists(intent, max_size=3) | YAML_VALUES, "out_of_scope": YAML_VALUES,
        "entities": st.dictionaries(YAML_SCALARS, st.sampled_from(["[0-9]+", "(", "a{2,1}"]) | YAML_SCALARS)
        | YAML_VALUES, "default_language": YAML_VALUES, "version": YAML_VALUES})


@FUZZ
@example(data={None: None, False: None}, raw=None)
@given(data=st.one_of(_intents_like(), YAML_VALUES),
       raw=st.none() | st.text(ANY_CHAR.filter(lambda c: not "\ud800" <= c <= "\udfff"), max_size=200))
def test_intents_file_loading(sandbox, data, raw):
    import yaml

    from assistant.understanding.intents import load_spec

    path = sandbox / "intents.yaml"
    path.write_text(raw if raw is not None else yaml.safe_dump(data, allow_unicode=True), encoding="utf-8")
    try:
        spec = load_spec(path)
    except (DataFormatError, ConfigError) as exc:
        assert str(exc)
        return
    assert len(spec.intents) >= 2


CONFIG_LIKE = st.fixed_dictionaries({}, optional={
    "model": st.dictionaries(st.sampled_from(["name", "quantization", "device", "threads", "adapters", "remote_url",
                                              "bogus"]), YAML_VALUES) | YAML_VALUES,
    "generation": st.dictionaries(st.sampled_from(["max_new_tokens", "temperature", "top_p", "seed"]), YAML_VALUES)
    | YAML_VALUES,
    "chat": st.dictionaries(st.sampled_from(["max_message_chars", "context_tokens", "retrieval_k", "x"]), YAML_VALUES)
    | YAML_VALUES,
    "port": YAML_VALUES, "api_keys": YAML_VALUES, "allowed_origins": YAML_VALUES, "max_queue": YAML_VALUES,
    "rate_limit_per_minute": YAML_VALUES, "admin_key": YAML_VALUES, "home": YAML_VALUES})


@FUZZ
@given(data=st.one_of(CONFIG_LIKE, YAML_VALUES), suffix=st.sampled_from([".yaml", ".json"]))
@example(data={"model": "abc"}, suffix=".yaml")
@example(data={"api_keys": 5}, suffix=".yaml")
def test_config_file_loading(sandbox, data, suffix):
    import yaml

    from assistant.config import AppConfig

    path = sandbox / ("config" + suffix)
    try:
        text = json.dumps(data) if suffix == ".json" else yaml.safe_dump(data)
    except (TypeError, ValueError):  # JSON cannot hold non-string keys; nothing to test
        return
    path.write_text(text, encoding="utf-8")
    try:
        config = AppConfig.load(path)
    except ConfigError as exc:
        assert str(exc)
        return
    assert all(isinstance(k, str) for k in config.api_keys)
    assert all(isinstance(o, str) for o in config.allowed_origins)


def test_domain_errors_are_the_only_errors_raised():
    """The fuzz tests above accept only these; keep them domain errors."""
    for cls in (ConfigError, DataFormatError, InputError):
        assert issubclass(cls, AssistantError)
