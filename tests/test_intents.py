"""Intents file parsing, the classifier, calibration, out-of-scope, persistence."""

import json
import textwrap

import numpy as np
import pytest

from assistant.errors import ConfigError, DataFormatError, ModelLoadError
from assistant.intents import (DEFAULT_SPEC_PATH, IntentModel, IntentResult, TrainConfig, default_model, load_spec,
                               parse_spec)
from retrieval.embedding import HashingEmbedder

REQUIRED = {"greeting", "goodbye", "thanks", "question", "complaint", "human_handoff", "feedback", "chitchat",
            "out_of_scope"}


@pytest.fixture(scope="module")
def spec():
    return load_spec()


@pytest.fixture(scope="module")
def hashing_model(spec):
    return IntentModel.train(spec, HashingEmbedder(dimension=256))


def test_shipped_file_has_required_intents_in_english_and_chinese(spec):
    assert REQUIRED <= set(spec.names)
    for intent in spec.intents:
        assert len(intent.examples.get("en", ())) >= 5, intent.name
        assert len(intent.examples.get("zh", ())) >= 5, intent.name
        if intent.action != "answer":
            assert {"en", "zh"} <= set(intent.replies), intent.name
    assert spec.get("question").action == "answer"
    assert spec.get("human_handoff").action == "handoff"
    assert spec.get("out_of_scope").action == "fallback"
    assert len(spec.sha256) == 64


def test_training_examples_are_classified_as_their_intent(spec, hashing_model):
    texts, labels = spec.training_data()
    results = hashing_model.classify_many(texts)
    best = [r.top[0][0] for r in results]
    assert np.mean([b == y for b, y in zip(best, labels)]) >= 0.9


def test_result_shape_and_probabilities(hashing_model):
    r = hashing_model.classify("hello there", k=3)
    assert isinstance(r, IntentResult)
    assert len(r.top) == 3
    scores = [s for _, s in r.top]
    assert scores == sorted(scores, reverse=True)
    assert all(0.0 <= s <= 1.0 for s in scores)
    full = hashing_model.probabilities(["hello there"])
    assert full.shape == (1, len(hashing_model.labels))
    assert abs(full.sum() - 1.0) < 1e-6
    assert 0.0 <= r.confidence <= 1.0


def test_calibration_is_reported(hashing_model):
    c = hashing_model.calibration
    assert c.temperature > 0
    assert 0.0 <= c.threshold < 1.0
    assert c.n_heldout > 0
    assert c.in_scope_accuracy is not None and c.oos_recall is not None


def test_out_of_scope_decision_follows_the_threshold(spec):
    model = IntentModel.train(spec, HashingEmbedder(dimension=128), TrainConfig(folds=0))
    text = "qwzx vvvv kkkk"
    model.calibration = type(model.calibration)(temperature=1.0, threshold=1.01)
    assert model.classify(text).out_of_scope and model.classify(text).intent == spec.out_of_scope
    model.calibration = type(model.calibration)(temperature=1.0, threshold=0.0)
    r = model.classify("thank you so much")
    assert r.out_of_scope == (r.top[0][0] == spec.out_of_scope)


def test_save_and_load_give_identical_probabilities(tmp_path, hashing_model):
    hashing_model.save(tmp_path / "m")
    assert {p.name for p in (tmp_path / "m").iterdir()} == {"model.json", "weights.npz"}
    loaded = IntentModel.load(tmp_path / "m", HashingEmbedder(dimension=256))
    texts = ["hi", "my order never arrived", "我要转人工", "what's the weather", ""]
    np.testing.assert_array_equal(hashing_model.probabilities(texts), loaded.probabilities(texts))
    assert loaded.calibration == hashing_model.calibration
    # No pickle: the arrays load with allow_pickle=False.
    with np.load(tmp_path / "m" / "weights.npz", allow_pickle=False) as arrays:
        assert "weights" in arrays.files


def test_load_rejects_another_embedder(tmp_path, hashing_model):
    hashing_model.save(tmp_path / "m")
    with pytest.raises(ModelLoadError, match="trained with embedder"):
        IntentModel.load(tmp_path / "m", HashingEmbedder(dimension=64))
    with pytest.raises(ModelLoadError, match="assistant intents train"):
        IntentModel.load(tmp_path / "missing", HashingEmbedder(dimension=256))


def test_default_model_trains_once_and_retrains_when_the_file_changes(tmp_path):
    emb = HashingEmbedder(dimension=64)
    spec_file = tmp_path / "intents.yaml"
    spec_file.write_text(DEFAULT_SPEC_PATH.read_text(encoding="utf-8"), encoding="utf-8")
    first = default_model(home=tmp_path, embedder=emb, spec_path=spec_file)
    meta = json.loads((tmp_path / "intents" / "model.json").read_text())
    assert meta["spec_sha256"] == load_spec(spec_file).sha256
    calls = emb.calls
    second = default_model(home=tmp_path, embedder=emb, spec_path=spec_file)
    assert emb.calls - calls <= 0  # loaded, not retrained (no training texts embedded)
    assert second.labels == first.labels
    spec_file.write_text(spec_file.read_text(encoding="utf-8") + "\n# edited\n", encoding="utf-8")
    default_model(home=tmp_path, embedder=emb, spec_path=spec_file)
    assert emb.calls > calls  # retrained


def _write(tmp_path, text):
    path = tmp_path / "bad.yaml"
    path.write_text(textwrap.dedent(text), encoding="utf-8")
    return path


def test_malformed_yaml_names_the_problem(tmp_path):
    with pytest.raises(DataFormatError, match="not valid YAML"):
        load_spec(_write(tmp_path, "intents: [\n  - name: a\n"))


def test_unknown_action_names_line_and_key(tmp_path):
    path = _write(tmp_path, """\
        intents:
          - name: a
            action: reply
            reply: {en: hi}
            examples: {en: [x, y]}
          - name: out_of_scope
            action: dance
            examples: {en: [x, y]}
        """)
    with pytest.raises(DataFormatError, match=r"line 6: intent 'out_of_scope': `action` must be one of"):
        load_spec(path)


def test_missing_examples_and_unknown_keys_are_errors(tmp_path):
    with pytest.raises(DataFormatError, match=r"line 2: intent 'a': `examples` must map a language"):
        load_spec(_write(tmp_path, "intents:\n  - name: a\n  - name: b\n    examples: [x, y]\n"))
    with pytest.raises(DataFormatError, match=r"unknown key\(s\) \['exmples'\]"):
        load_spec(_write(tmp_path, "intents:\n  - name: a\n    exmples: [x]\n"))
    with pytest.raises(DataFormatError, match=r"feature.*quote examples"):
        load_spec(_write(tmp_path, "intents:\n  - name: a\n    examples: {en: [x, feature: y]}\n"))


def test_reply_action_needs_a_reply_and_out_of_scope_must_exist(tmp_path):
    with pytest.raises(DataFormatError, match="no `reply`"):
        parse_spec({"intents": [{"name": "a", "action": "reply", "examples": {"en": ["x", "y"]}}]})
    with pytest.raises(DataFormatError, match="out_of_scope names intent"):
        parse_spec({"intents": [{"name": "a", "examples": ["x", "y"]}, {"name": "b", "examples": ["x", "y"]}]})
    with pytest.raises(DataFormatError, match="appear more than once"):
        parse_spec({"out_of_scope": "a", "intents": [{"name": "a", "examples": ["x", "y"]},
                                                      {"name": "a", "examples": ["x", "y"]}]})


def test_missing_file_is_a_config_error(tmp_path):
    with pytest.raises(ConfigError, match="does not exist"):
        load_spec(tmp_path / "nope.yaml")


def test_train_config_rejects_impossible_values():
    with pytest.raises(ConfigError, match="folds"):
        TrainConfig(folds=1)
    with pytest.raises(ConfigError, match="classifier"):
        TrainConfig(classifier="forest")  # type: ignore[arg-type]


def test_explicit_validation_set_chooses_threshold():
    emb = HashingEmbedder(dimension=64)
    texts = ["reset my password", "forgot password", "password reset link", "change password",
             "track my order", "where is my order", "order status", "order tracking"]
    labels = ["pw"] * 4 + ["order"] * 4
    val = ["password help", "my order", "pizza recipe", "football score"]
    val_labels = ["pw", "order", "oos", "oos"]
    model = IntentModel.fit(texts, labels, emb, val_texts=val, val_labels=val_labels)
    assert model.calibration.n_heldout == 4
    assert model.calibration.oos_recall is not None


@pytest.mark.slow
def test_minilm_model_puts_held_out_paraphrases_in_the_right_intent(spec):
    from retrieval.embedding import load_embedder

    model = IntentModel.train(spec, load_embedder())
    paraphrases = {
        "hey, good morning to you": "greeting",
        "thanks so much for the help!": "thanks",
        "alright, bye for now": "goodbye",
        "how can i change the email on my account?": "question",
        "the package came broken and nobody replies": "complaint",
        "please let me speak with a real human being": "human_handoff",
        "can you recommend a restaurant near me": "out_of_scope",
        "非常感谢你的帮助": "thanks",
        "我想跟人工客服聊": "human_handoff",
    }
    results = {text: model.classify(text) for text in paraphrases}
    correct = sum(r.intent == paraphrases[t] for t, r in results.items())
    assert correct >= len(paraphrases) - 1, {t: (r.intent, r.confidence) for t, r in results.items()}
