"""Finetuning data: every format parses, bad lines are reported with their
numbers, loss masks cover only the assistant's replies, SGD converts."""

from __future__ import annotations

import json

import pytest

from assistant.errors import ConfigError, DataFormatError
from finetune.data import Dialogue, Message, encode, load_dialogues, pack, parse_record, prompt_and_reference

SGD = __import__("pathlib").Path(__file__).resolve().parents[2] / "shared" / "datasets" / "sgd-dialogues"

RECORDS = {
    "openai": {"messages": [{"role": "system", "content": "Be brief."},
                            {"role": "user", "content": "How do refunds work?"},
                            {"role": "assistant", "content": "Refunds are paid back within five days."},
                            {"role": "user", "content": "Thanks"},
                            {"role": "assistant", "content": "You are welcome."}]},
    "sharegpt": {"conversations": [{"from": "human", "value": "Hi"}, {"from": "gpt", "value": "Hello!"}]},
    "alpaca": {"instruction": "Translate to German", "input": "Thank you", "output": "Danke",
               "system": "You translate."},
    "app": {"id": "c1", "turns": [{"user": "Where is my order?", "answer": "It ships tomorrow.", "language": "en"}]},
}


def write(tmp_path, lines, name="data.jsonl"):
    p = tmp_path / name
    p.write_text("\n".join(x if isinstance(x, str) else json.dumps(x) for x in lines) + "\n", encoding="utf-8")
    return p


@pytest.mark.parametrize("fmt", sorted(RECORDS))
def test_every_format_parses(fmt):
    d = parse_record(RECORDS[fmt], 3)
    assert d.format == fmt and d.line == 3
    assert d.messages[-1].role == "assistant"
    roles = [m.role for m in d.messages if m.role != "system"]
    assert roles == ["user", "assistant"] * (len(roles) // 2)


def test_alpaca_joins_instruction_and_input_and_keeps_system():
    d = parse_record(RECORDS["alpaca"])
    assert d.messages[0] == Message("system", "You translate.")
    assert d.messages[1].content == "Translate to German\n\nThank you"


def test_bad_lines_reported_with_numbers(tmp_path):
    p = write(tmp_path, [RECORDS["openai"], '{"messages": "hello"}', "", "{not json",
                         {"messages": [{"role": "user", "content": "q"}]}, RECORDS["sharegpt"],
                         {"messages": [{"role": "assistant", "content": "a"}, {"role": "user", "content": "q"}]},
                         {"foo": 1}])
    with pytest.raises(DataFormatError) as info:
        load_dialogues(p)
    msg = str(info.value)
    assert "5 invalid line(s)" in msg
    assert "data.jsonl line 2: `messages` must be a non-empty list of {role, content}; got a string" in msg
    assert "line 4: not valid JSON" in msg
    assert "line 5: `messages` has no assistant message" in msg
    assert "line 7: `messages[0]` should be a user message" in msg
    assert "line 8: unknown format" in msg
    assert "line 1:" not in msg and "line 6:" not in msg


def test_skip_invalid_keeps_good_lines_and_counts_skipped(tmp_path):
    p = write(tmp_path, [RECORDS["openai"], '{"messages": "hello"}', RECORDS["alpaca"]])
    result = load_dialogues(p, skip_invalid=True)
    assert [d.line for d in result.dialogues] == [1, 3]
    assert [e.line for e in result.skipped] == [2]


def test_file_of_only_bad_lines_is_refused_even_with_skip(tmp_path):
    p = write(tmp_path, ["[1, 2]"])
    with pytest.raises(DataFormatError, match="no usable dialogue"):
        load_dialogues(p, skip_invalid=True)


def test_loss_mask_covers_only_assistant_replies(tiny_lm):
    tok = tiny_lm.tokenizer
    d = parse_record(RECORDS["openai"])
    enc = encode(tok, d, 1024)
    trained = tok.decode([i for i, l in zip(enc.input_ids, enc.labels) if l != -100])
    assert "Refunds are paid back within five days." in trained and "You are welcome." in trained
    assert "How do refunds work" not in trained and "Be brief" not in trained and "Thanks" not in trained
    assert trained.count("<|im_end|>") == 2  # the model learns to stop
    last = encode(tok, d, 1024, last_turn_only=True)
    assert "Refunds" not in tok.decode([i for i, l in zip(last.input_ids, last.labels) if l != -100])
    prompt, ref = prompt_and_reference(tok, d)
    assert ref == "You are welcome." and tok.decode(prompt).endswith("<|im_start|>assistant\n")
    assert enc.input_ids[: len(prompt)] == prompt


def test_truncation_keeps_whole_replies_only_and_packing(tiny_lm):
    tok = tiny_lm.tokenizer
    d = parse_record(RECORDS["openai"])
    full = encode(tok, d, 1024)
    start = next(i for i, l in enumerate(full.labels) if l != -100)
    first_reply_end = full.labels.index(-100, start)  # just past the first reply's tokens
    # room for the first reply but not the second: cut right after the first reply
    cut = encode(tok, d, len(full.input_ids) - 1)
    assert len(cut.input_ids) == first_reply_end and cut.labels[-1] != -100
    assert "Refunds are paid back within five days." in tok.decode([i for i, l in zip(cut.input_ids, cut.labels) if l != -100])
    assert "You are welcome." not in tok.decode(cut.input_ids)
    # not even the first reply fits: nothing to train on (the trainer drops it)
    assert encode(tok, d, first_reply_end - 1).trained_tokens == 0
    full = [full] * 5
    blocks = pack(full, 64)
    assert all(len(b.input_ids) == 64 for b in blocks[:-1])
    assert sum(len(b.input_ids) for b in blocks) <= sum(len(e.input_ids) for e in full)


def test_train_config_rejects_impossible_settings():
    from finetune.config import TrainConfig

    with pytest.raises(ConfigError, match="lora_r"):
        TrainConfig(data="d.jsonl", out="o", lora_r=0)
    with pytest.raises(ConfigError, match="lora_dropout"):
        TrainConfig(data="d.jsonl", out="o", lora_dropout=1.0)
    with pytest.raises(ConfigError, match="early_stopping_patience"):
        TrainConfig(data="d.jsonl", out="o", early_stopping_patience=2, eval_fraction=0.0)
    with pytest.raises(ConfigError, match="save_steps"):
        TrainConfig(data="d.jsonl", out="o", early_stopping_patience=2, eval_steps=20, save_steps=30)
    with pytest.raises(ConfigError, match="quantization"):
        TrainConfig(data="d.jsonl", out="o", quantization="int3")  # type: ignore[arg-type]


@pytest.mark.skipif(not SGD.is_dir(), reason="shared datasets not present")
def test_sgd_converts_to_valid_chat_jsonl(tmp_path):
    from finetune.sgd import convert, default_system_prompt

    r = convert(SGD / "dialogues_001.json", tmp_path / "t.jsonl", tmp_path / "e.jsonl", eval_fraction=0.2)
    assert r.train > 0 and r.held_out > 0 and r.skipped == 0
    train = load_dialogues(r.train_path).dialogues
    held = load_dialogues(r.eval_path).dialogues
    assert len(train) == r.train and len(held) == r.held_out
    assert train[0].messages[0] == Message("system", default_system_prompt())
    assert train[0].messages[1].content.startswith("Hi, could you get me a restaurant")
    again = convert(SGD / "dialogues_001.json", tmp_path / "t2.jsonl", tmp_path / "e2.jsonl", eval_fraction=0.2)
    assert (tmp_path / "e2.jsonl").read_text() == (tmp_path / "e.jsonl").read_text()  # stable split
    assert again.held_out == r.held_out


def test_text_metrics():
    from finetune.evaluate import bleu, distinct_n, rouge_l, words

    assert words("退款需要 five days!") == ["退", "款", "需", "要", "five", "days"]
    assert rouge_l(["the cat sat"], ["the cat sat"]) == pytest.approx(1.0)
    assert rouge_l(["a b"], ["c d"]) == 0.0
    assert bleu(["the cat sat on the mat"], ["the cat sat on the mat"]) == pytest.approx(100.0)
    assert distinct_n(["a a a a"], 1) == pytest.approx(0.25)
    assert distinct_n(["a b", "c d"], 2) == pytest.approx(1.0)


def test_store_export_becomes_dialogues(store):
    from assistant.types import Turn
    from finetune.data import dialogues_from_store

    conv = store.create("owner")
    store.append_turn(conv, Turn(user="Where is my order?", answer="It ships tomorrow."))
    store.append_turn(conv, Turn(user="cancelled one", answer=""))
    [d] = dialogues_from_store(store, system="sys")
    assert [m.role for m in d.messages] == ["system", "user", "assistant"]
    assert isinstance(d, Dialogue)


XQUAD = SGD.parent / "xquad-dev"


@pytest.mark.skipif(not XQUAD.is_dir(), reason="shared datasets not present")
def test_xquad_examples_split_by_article_and_use_the_engine_prompt():
    from assistant.prompting import SOURCES_HEADER, source_block
    from finetune.xquad import NOT_FOUND, build_examples, prompt_messages, split_articles, to_dialogue

    train_a, eval_a = split_articles()
    assert train_a.isdisjoint(eval_a) and len(train_a | eval_a) == 24
    train = build_examples(XQUAD, train_a, languages=("en", "zh"), per_language=20, absent_fraction=0.3)
    held = build_examples(XQUAD, eval_a, languages=("en", "zh"), per_language=20)
    assert {e.article for e in train}.isdisjoint({e.article for e in held})
    assert {s.doc_id.rsplit("-", 1)[1] for e in train for s in e.sources} <= {str(a) for a in train_a}
    ex = next(e for e in train if e.answerable and e.language == "zh")
    user = prompt_messages(ex)[-1]["content"]
    assert user.startswith(SOURCES_HEADER + "\n\n<docs-") and user.endswith("Question: " + ex.question)
    assert source_block(1, ex.sources[0]) in user
    assert "Always answer in Chinese" in prompt_messages(ex)[0]["content"]
    assert any(ex.answers[0] in s.text for s in ex.sources)
    absent = [e for e in train if not e.answerable]
    assert absent and all(to_dialogue(e).messages[-1].content == NOT_FOUND[e.language] for e in absent)


def test_squad_scores():
    from finetune.xquad import exact_match, f1_score, says_not_found

    assert exact_match("The Broncos!", ["Broncos"], "en") == 1.0
    assert f1_score("Denver Broncos team", ["Denver Broncos"], "en") == pytest.approx(0.8)
    assert f1_score("五个工作日", ["五个工作日内"], "zh") == pytest.approx(2 * 1 * 5 / 6 / (1 + 5 / 6))
    assert f1_score("x", ["y"], "de") == 0.0
    assert says_not_found("That is not in my documents.", "en") and not says_not_found("Paris", "en")


@pytest.mark.skipif(not SGD.is_dir(), reason="shared datasets not present")
def test_cli_convert_sgd(tmp_path, capsys):
    from assistant.cli.main import main

    assert main(["convert-sgd", str(SGD / "dialogues_002.json"), "--out", str(tmp_path / "t.jsonl"),
                 "--eval-out", str(tmp_path / "e.jsonl"), "--services", "Flights"]) == 0
    assert "held out" in capsys.readouterr().out
    kept = load_dialogues(tmp_path / "t.jsonl").dialogues
    assert kept and all(d.messages[0].role == "system" for d in kept)


def test_sgd_dialogue_drops_empty_turns_and_ends_on_the_assistant():
    from finetune.sgd import dialogue_from_sgd

    item = {"dialogue_id": "x", "turns": [
        {"speaker": "USER", "utterance": "I need a hotel."}, {"speaker": "SYSTEM", "utterance": "Where?"},
        {"speaker": "USER", "utterance": "Paris."}, {"speaker": "SYSTEM", "utterance": "  "},
        {"speaker": "USER", "utterance": "Thanks."}]}
    d = dialogue_from_sgd(item, "sys")
    assert [m.content for m in d.messages] == ["sys", "I need a hotel.", "Where?"]
    with pytest.raises(ValueError, match="turn 1"):
        dialogue_from_sgd({"dialogue_id": "y", "turns": [{"speaker": "USER", "utterance": "a"}, {"speaker": "BOT"}]})
