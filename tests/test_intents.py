"""Intents file parsing, the classifier, calibration, out-of-scope, persistence."""

import json
import textwrap

import numpy as np
import pytest

from assistant.errors import ConfigError, DataFormatError, ModelLoadError
from assistant.understanding.intents import (DEFAULT_SPEC_PATH, IntentModel, IntentResult, TrainConfig, default_model,
                                             load_spec, parse_spec)
from assistant.understanding.intent_calibration import KNN_WEIGHTS, calibrate
from intent_examples import ENGLISH_PARAPHRASES, MORE_PARAPHRASES, MULTILINGUAL_PARAPHRASES
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
    # The threshold is on the mixed out-of-scope score (standardised units), not on a probability.
    assert c.knn_weight in KNN_WEIGHTS
    assert np.isfinite(c.threshold) and all(s > 0 for s in c.scale)
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
    validation = DEFAULT_SPEC_PATH.parent / "intents_validation.jsonl"
    (tmp_path / validation.name).write_text(validation.read_text(encoding="utf-8"), encoding="utf-8")
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
    calls = emb.calls
    with (tmp_path / validation.name).open("a", encoding="utf-8") as f:
        f.write('{"text": "where is the invoice for march", "intent": "question"}\n')
    default_model(home=tmp_path, embedder=emb, spec_path=spec_file)
    assert emb.calls > calls  # an edited validation file retrains too


def test_shipped_validation_messages_are_not_training_examples(spec):
    examples = {e.lower() for i in spec.intents for ex in i.examples.values() for e in ex}
    assert len(spec.validation) >= 100 and not {t.lower() for t, _ in spec.validation} & examples
    assert set(spec.names) == {intent for _, intent in spec.validation}  # every intent is validated


def test_a_validation_file_chooses_the_threshold_and_its_errors_name_the_line(tmp_path):
    path = _write(tmp_path, """\
        out_of_scope: oos
        validation: val.jsonl
        intents:
          - {name: pw, examples: [reset my password, forgot password, password reset link, change password]}
          - {name: order, examples: [track my order, where is my order, order status, order tracking]}
          - {name: oos, action: fallback, reply: {en: no}, examples: [tell me a joke, weather today, sing a song]}
        """)
    val = tmp_path / "val.jsonl"
    val.write_text('{"text": "password help", "intent": "pw"}\n{"text": "my order", "intent": "order"}\n'
                   '\n{"text": "pizza recipe", "intent": "oos", "language": "en"}\n', encoding="utf-8")
    spec = load_spec(path)
    assert spec.validation == (("password help", "pw"), ("my order", "order"), ("pizza recipe", "oos"))
    model = IntentModel.train(spec, HashingEmbedder(dimension=64))
    assert model.calibration.n_heldout == 3  # chosen on the validation messages, not on folds of 11 examples
    val.write_text('{"text": "password help", "intent": "pw"}\n{"text": "x", "intent": "shipping"}\n', encoding="utf-8")
    with pytest.raises(DataFormatError, match=r"val.jsonl line 2: \"intent\" must be one of"):
        load_spec(path)
    val.write_text('{"text": "password help", "intent": "pw"}\n{"text": "oops"\n', encoding="utf-8")
    with pytest.raises(DataFormatError, match="val.jsonl line 2: not valid JSON"):
        load_spec(path)
    val.unlink()
    with pytest.raises(DataFormatError, match="validation file .*val.jsonl does not exist"):
        load_spec(path)


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


@pytest.fixture(scope="module")
def minilm_model(spec):
    from retrieval.embedding import load_embedder

    return IntentModel.train(spec, load_embedder())


@pytest.mark.slow
def test_minilm_model_puts_held_out_paraphrases_in_the_right_intent(minilm_model):
    paraphrases = {**ENGLISH_PARAPHRASES, **MORE_PARAPHRASES}
    results = {text: minilm_model.classify(text) for text in paraphrases}
    correct = sum(r.intent == paraphrases[t] for t, r in results.items())
    assert correct >= len(paraphrases) - 1, {t: (r.intent, r.confidence) for t, r in results.items()}


@pytest.mark.slow
def test_short_messages_in_many_languages_reach_their_intent(minilm_model):
    # Before the file had examples beyond en/zh/de/fr/es, most of these got the out-of-scope fallback.
    results = {text: minilm_model.classify(text) for text in MULTILINGUAL_PARAPHRASES}
    wrong = {t: (r.intent, round(r.confidence, 2)) for t, r in results.items() if r.intent != MULTILINGUAL_PARAPHRASES[t]}
    assert len(wrong) <= 2, wrong


@pytest.mark.slow
def test_the_chat_pages_example_prompts_reach_their_intents(minilm_model):
    from assistant.web.chat_page import EXAMPLES

    # The first one gets the capabilities reply; the others are questions about the assistant, answered from its guide.
    assert [minilm_model.classify(t).intent for t in EXAMPLES] == ["capabilities", "question", "question", "question"]


def test_one_message_path_gives_the_batch_scores(hashing_model):
    texts = ["hi there!", "my order 12345 never arrived", "我要转人工", "", "Ça ne marche pas, aidez-moi"]
    batch = hashing_model.logits(texts)
    for i, text in enumerate(texts):
        np.testing.assert_allclose(hashing_model.logits([text])[0], batch[i], rtol=1e-5, atol=1e-5)


def test_nearest_example_cosine_matches_brute_force(hashing_model):
    emb = HashingEmbedder(dimension=256)
    vectors = emb.embed(["hello", "refund please", "zzzz qqqq"])
    expected = (vectors @ hashing_model.anchors.T).max(axis=1)
    np.testing.assert_allclose(hashing_model.nearest(vectors), expected, rtol=1e-6)
    in_scope = np.array([label != hashing_model.oos_label for label in hashing_model.labels])
    # classify_many takes the out-of-scope score's nearest example from the per-intent cosines
    np.testing.assert_allclose(hashing_model.neighbours.cosines(vectors)[:, in_scope].max(axis=1), expected, rtol=1e-6)
    texts, labels = load_spec().training_data()
    n_in_scope = sum(label != hashing_model.oos_label for label in labels)
    assert hashing_model.anchors.shape == (n_in_scope, 256)


def test_message_far_from_every_example_is_out_of_scope_by_the_mixed_score(spec):
    model = IntentModel.train(spec, HashingEmbedder(dimension=256), TrainConfig(knn_weight=0.5))
    assert model.calibration.knn_weight == 0.5
    far = model.classify("qwzx vvvv kkkk jjjj")
    assert far.out_of_scope and far.intent == spec.out_of_scope
    without = IntentModel.train(spec, HashingEmbedder(dimension=256), TrainConfig(knn_weight=0.0))
    assert without.calibration.knn_weight == 0.0 and 0.0 <= without.calibration.threshold < 1.0


def test_train_config_rejects_a_knn_weight_outside_0_1():
    with pytest.raises(ConfigError, match="knn_weight"):
        TrainConfig(knn_weight=1.5)


def test_hashing_embedder_has_no_fast_path(hashing_model):
    assert not hashing_model.encoder.fast


@pytest.mark.slow
def test_fast_one_message_embedding_matches_the_embedder_and_is_cached():
    from assistant.understanding.intent_encoder import MessageEncoder
    from retrieval.embedding import load_embedder

    embedder = load_embedder("all-MiniLM-L6-v2")  # the fast path is for sentence-transformers models
    encoder = MessageEncoder(embedder)
    assert encoder.fast
    texts = ["where is my order?", "Ich habe mein Passwort vergessen", "谢谢", "ok"]
    reference = embedder.embed(texts)
    fast = np.vstack([encoder.embed([t]) for t in texts])
    assert fast.shape == reference.shape and fast.dtype == np.float32
    np.testing.assert_allclose(np.linalg.norm(fast, axis=1), 1.0, rtol=1e-5)
    assert (fast * reference).sum(axis=1).min() > 0.999
    again = encoder.embed([texts[0]])
    np.testing.assert_array_equal(again[0], fast[0])
    exact = MessageEncoder(embedder, precision="float32")
    np.testing.assert_allclose(np.vstack([exact.embed([t]) for t in texts]), reference, atol=1e-5)


def test_held_out_data_chooses_whether_the_nearest_example_cosine_helps():
    rng = np.random.default_rng(0)
    n_in, n_oos = 200, 40
    y = np.concatenate([rng.integers(0, 3, n_in), np.full(n_oos, 3)])  # label 3 is out-of-scope
    in_scope = np.array([True, True, True, False])
    logits = rng.normal(0, 1, (n_in + n_oos, 4))
    logits[np.arange(n_in), y[:n_in]] += 3.0  # in-scope rows lean to their label; OOS rows look the same ...
    logits[n_in:, rng.integers(0, 3, n_oos)] += 3.0
    informative = np.concatenate([rng.normal(0.8, 0.05, n_in), rng.normal(0.3, 0.05, n_oos)])  # ... but are far
    noise = rng.normal(0.5, 0.1, n_in + n_oos)
    chosen = calibrate(logits, y, in_scope, nearest=informative)
    assert chosen.knn_weight > 0 and chosen.oos_recall > 0.9 and chosen.in_scope_accuracy > 0.9
    assert calibrate(logits, y, in_scope, nearest=noise).knn_weight < chosen.knn_weight
    fixed = calibrate(logits, y, in_scope, nearest=informative, knn_weight=0.0)
    assert fixed.knn_weight == 0.0 and fixed.oos_recall < chosen.oos_recall


def test_required_oos_recall_is_reached_with_the_best_in_scope_accuracy_under_it():
    rng = np.random.default_rng(1)
    n_in, n_oos = 300, 60
    y = np.concatenate([rng.integers(0, 3, n_in), np.full(n_oos, 3)])
    in_scope = np.array([True, True, True, False])
    logits = rng.normal(0, 1, (n_in + n_oos, 4))
    logits[np.arange(n_in), y[:n_in]] += rng.normal(2.5, 1.0, n_in)  # confident in-scope, with a tail ...
    logits[n_in:, rng.integers(0, 3, n_oos)] += rng.normal(1.0, 1.0, n_oos)  # ... overlapping the OOS rows
    by_recall = {r: calibrate(logits, y, in_scope, knn_weight=0.0, min_oos_recall=r) for r in (0.5, 0.8, 0.95)}
    for r, c in by_recall.items():
        assert c.oos_recall >= r
    accuracies = [by_recall[r].in_scope_accuracy for r in (0.5, 0.8, 0.95)]
    assert accuracies == sorted(accuracies, reverse=True) and accuracies[0] > accuracies[-1]
    assert TrainConfig().min_oos_recall == 0.90
    balanced = calibrate(logits, y, in_scope, knn_weight=0.0, min_oos_recall=None)
    assert all((balanced.in_scope_accuracy + balanced.oos_recall) >= (c.in_scope_accuracy + c.oos_recall) - 1e-9
               for c in by_recall.values())


def test_an_intent_with_keys_that_are_not_text_is_a_clear_error():
    """YAML reads `null:` and `false:` as keys of other types; they are reported, not sorted into a TypeError
    (found by tests/test_fuzz.py)."""
    from assistant.understanding.intent_spec import parse_spec

    with pytest.raises(DataFormatError, match="unknown key"):
        parse_spec({"intents": [{None: None, False: None}]})


def test_each_intents_nearest_example_is_the_brute_force_maximum_and_an_intent_without_examples_never_wins():
    from assistant.understanding.intent_neighbours import Neighbours

    rng = np.random.default_rng(2)
    anchors = rng.normal(size=(30, 8))
    anchors /= np.linalg.norm(anchors, axis=1, keepdims=True)
    labels = rng.integers(0, 3, 30)  # intents 0-2 have examples; 3 has none
    queries = rng.normal(size=(5, 8))
    queries /= np.linalg.norm(queries, axis=1, keepdims=True)
    got = Neighbours(anchors, labels, 4).cosines(queries, chunk=2)
    sims = queries @ anchors.T
    for label in range(3):
        np.testing.assert_allclose(got[:, label], sims[:, labels == label].max(axis=1), rtol=1e-5)
    np.testing.assert_allclose(got[:, 3], got[:, :3].min(axis=1))


def _two_place_data(rng, n):
    """Intent 'a' at two opposite corners, 'b' at the other two: no flat boundary separates them (XOR)."""
    corners = rng.integers(0, 4, n)
    xy = np.array([[1, 1], [-1, -1], [1, -1], [-1, 1]], dtype=float)[corners] + rng.normal(0, 0.25, (n, 2))
    vectors = np.hstack([xy, np.full((n, 1), 0.5)])
    vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
    return vectors.astype(np.float32), ["a" if c < 2 else "b" for c in corners]


def test_an_intent_said_in_two_places_is_found_by_its_nearest_example(tmp_path):
    rng = np.random.default_rng(3)
    train_v, train_y = _two_place_data(rng, 160)
    test_v, test_y = _two_place_data(rng, 80)
    texts = [f"message {i}" for i in range(len(train_y))]  # words that tell nothing: only the vectors do
    test_texts = [f"message {1000 + i}" for i in range(len(test_y))]
    accuracy = lambda m: np.mean([m.labels[i] == y for i, y in zip(  # noqa: E731
        m.probabilities(test_texts, test_v).argmax(axis=1), test_y)])
    linear = IntentModel.fit(texts, train_y, None, config=TrainConfig(nearest_share=0.0), embeddings=train_v)
    chosen = IntentModel.fit(texts, train_y, None, config=TrainConfig(), embeddings=train_v)
    assert linear.nearest_share == 0.0 and accuracy(linear) < 0.75
    assert chosen.nearest_share > 0.0 and accuracy(chosen) > 0.9
    chosen.embedder = HashingEmbedder(dimension=3)  # saved models name their embedder
    loaded = IntentModel.load(chosen.save(tmp_path / "m"), chosen.embedder)
    assert loaded.nearest_share == chosen.nearest_share
    np.testing.assert_allclose(loaded.probabilities(test_texts, test_v), chosen.probabilities(test_texts, test_v),
                               rtol=1e-6, atol=1e-9)


def test_train_config_rejects_a_negative_nearest_share():
    with pytest.raises(ConfigError, match="nearest_share"):
        TrainConfig(nearest_share=-0.5)
