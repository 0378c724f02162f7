"""`assistant understand` and `assistant intents`, with the fast fake embedder."""

import io
import json

import pytest

from assistant.cli import main as cli
from retrieval.embedding import HashingEmbedder

KEYS = {"language", "language_confidence", "intent", "intent_confidence", "intents", "entities"}


@pytest.fixture
def fake_home(tmp_path, monkeypatch):
    monkeypatch.setenv("ASSISTANT_HOME", str(tmp_path))
    monkeypatch.setattr("retrieval.embedding.load_embedder", lambda *a, **k: HashingEmbedder(dimension=128))
    return tmp_path


def test_commands_are_registered():
    parser = cli.build_parser()
    choices = parser._subparsers._group_actions[0].choices
    assert "understand" in choices and "intents" in choices


def test_understand_prints_language_intents_and_entities(fake_home, capsys):
    assert cli.main(["understand", "Hallo, meine Bestellung ORD-1234567 ist nicht angekommen, mail: a@b.de"]) == 0
    out = capsys.readouterr().out
    assert "language:  de" in out
    assert "intents:" in out and "intent:" in out
    assert "order_id='ORD-1234567'" in out and "email='a@b.de'" in out
    assert (fake_home / "intents" / "model.json").is_file()


def test_jsonl_one_object_per_line(fake_home, capsys, monkeypatch):
    lines = ["hello", "谢谢", "", "😀😀", "print(x)", "Wo ist meine Bestellung vom 2024-05-01?"]
    monkeypatch.setattr("sys.stdin", io.StringIO("\n".join(lines) + "\n"))
    assert cli.main(["understand", "--jsonl"]) == 0
    rows = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert len(rows) == len(lines)
    for row in rows:
        assert KEYS <= set(row)
        assert 0.0 <= row["language_confidence"] <= 1.0
        assert row["intents"] and {"intent", "score"} <= set(row["intents"][0])
    assert rows[1]["language"] == "zh"
    assert rows[2]["language"] == "unknown" and rows[3]["language"] == "unknown"
    assert rows[4]["language"] == "unknown"
    assert {"kind": "date", "value": "2024-05-01"}.items() <= rows[5]["entities"][0].items()


def test_jsonl_conversation_uses_earlier_lines_as_prior(fake_home, capsys, monkeypatch):
    text = "Ich habe eine Frage zu meiner Rechnung\nDas Passwort funktioniert nicht mehr\nok\n"
    monkeypatch.setattr("sys.stdin", io.StringIO(text))
    assert cli.main(["understand", "--jsonl", "--conversation"]) == 0
    rows = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert [r["language"] for r in rows] == ["de", "de", "de"]


def test_prior_option(fake_home, capsys):
    assert cli.main(["understand", "--prior", "fr,fr", "ok"]) == 0
    assert "language:  fr" in capsys.readouterr().out


def test_usage_errors_exit_2(fake_home, capsys):
    assert cli.main(["understand"]) == 2
    assert "give a message" in capsys.readouterr().err
    assert cli.main(["understand", "-k", "0", "hi"]) == 2


def test_intents_train_reports_threshold_and_saves(fake_home, capsys):
    assert cli.main(["intents", "train"]) == 0
    out = capsys.readouterr().out
    assert "out-of-scope threshold" in out and "in-scope accuracy" in out
    assert "out-of-scope recall >= 0.9;" in out
    assert (fake_home / "intents" / "weights.npz").is_file()


def test_intents_train_required_recall(fake_home, capsys):
    assert cli.main(["intents", "train", "--min-oos-recall", "0.95"]) == 0
    out = capsys.readouterr().out
    assert "out-of-scope recall >= 0.95;" in out
    saved = json.loads((fake_home / "intents" / "model.json").read_text(encoding="utf-8"))
    assert saved["config"]["min_oos_recall"] == 0.95 and saved["calibration"]["oos_recall"] >= 0.95
    assert cli.main(["intents", "train", "--min-oos-recall", "0"]) == 0
    assert "maximises (in-scope accuracy + out-of-scope recall) / 2" in capsys.readouterr().out
    assert cli.main(["intents", "train", "--min-oos-recall", "1.5"]) == 2
    assert "--min-oos-recall must be between 0 and 1" in capsys.readouterr().err


def test_intents_train_bad_file_exits_2(fake_home, tmp_path, capsys):
    bad = tmp_path / "bad.yaml"
    bad.write_text("intents:\n  - name: a\n    action: dance\n    examples: [x, y]\n", encoding="utf-8")
    assert cli.main(["intents", "train", str(bad)]) == 2
    assert "line 2" in capsys.readouterr().err


def test_intents_list(capsys):
    assert cli.main(["intents", "list"]) == 0
    out = capsys.readouterr().out
    assert "human_handoff" in out and "handoff" in out
