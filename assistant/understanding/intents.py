"""Intents: a classifier with calibrated confidence and out-of-scope detection.

The classifier is a linear model (one-vs-rest linear SVM by default, or
multinomial logistic regression) over the concatenation of sentence
embeddings (any embedder with ``.embed``) and TF-IDF word and character
n-grams, trained on the examples of the intents file (``intent_spec``) by
``assistant intents train`` in seconds.  Its probabilities are
temperature-calibrated on held-out data (cross-validation folds, or an
explicit validation set), and the out-of-scope decision combines the best
in-scope probability with the cosine to the nearest in-scope training example
under a threshold chosen on the same held-out data (``intent_calibration``).
Beside the linear scores, the cosine to each intent's nearest training
example, with a share chosen on the same held-out data
(``intent_neighbours``).
One message at a time is embedded through ``intent_encoder``'s fast path.
Optionally (``TrainConfig.encoder_epochs``) a copy of the embedder is first
fine-tuned on the examples (``intent_tuning``), for large intent sets.
Weights are saved as ``.npz`` + JSON and loaded with ``allow_pickle=False``:
nothing executable is read from disk.

This module knows nothing about languages, routing replies or the LLM.  The
intents file's names (``IntentSpec``, ``load_spec``...) and the settings
(``TrainConfig``, in ``intent_config``) are re-exported here for existing
callers.
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from .. import progress
from ..errors import DataFormatError, ModelLoadError
from .intent_calibration import Calibration, best_in_scope, calibrate, decide, softmax
from .intent_config import TrainConfig, config_from, saved_config
from .intent_encoder import MessageEncoder
from .intent_features import Tfidf
from .intent_neighbours import Neighbours, choose_share, mixed
from .intent_spec import (ACTIONS, DEFAULT_SPEC_PATH, Action, IntentDef, IntentSpec, load_spec,  # noqa: F401
                          parse_spec)

log = logging.getLogger(__name__)

FORMAT_VERSION = 3
"""2: nearest-example anchors and the mixed out-of-scope score; 3: every training example with its intent and
the nearest-example share of the scores."""


@dataclass(frozen=True)
class IntentResult:
    """Classification of one message."""

    intent: str
    """Best intent, or the out-of-scope intent when ``out_of_scope``."""
    confidence: float
    """Calibrated probability of ``intent`` (for a threshold rejection: 1 - best in-scope probability)."""
    top: list[tuple[str, float]]
    """Top-k (intent, calibrated probability), best first."""
    out_of_scope: bool


class IntentModel:
    """Embedding + TF-IDF linear model with calibrated probabilities and an out-of-scope decision."""

    def __init__(self, *, labels: Sequence[str], weights: np.ndarray, bias: np.ndarray, word: Tfidf, char: Tfidf,
                 embedder: Any, config: TrainConfig, calibration: Calibration, oos_label: str | None,
                 spec_sha256: str = "", examples: np.ndarray | None = None,
                 example_labels: np.ndarray | None = None, nearest_share: float = 0.0):
        self.labels = tuple(labels)
        self.weights = np.asarray(weights, dtype=np.float32)  # (n_labels, dim + n_word + n_char)
        self.bias = np.asarray(bias, dtype=np.float32)  # (n_labels,)
        self.word = word
        self.char = char
        self.embedder = embedder
        self.config = config
        self.calibration = calibration
        self.oos_label = oos_label
        self.spec_sha256 = spec_sha256
        self._in_scope = np.array([label != oos_label for label in self.labels])
        self.examples = None
        """(n_examples, dim) unit embeddings of the training examples, and ``example_labels`` their intents."""
        self.example_labels = self.neighbours = None
        if examples is not None and example_labels is not None and len(examples):
            self.examples = np.asarray(examples, dtype=np.float32)
            self.example_labels = np.asarray(example_labels, dtype=np.int64)
            self.neighbours = Neighbours(self.examples, self.example_labels, len(self.labels))
        self.nearest_share = float(nearest_share) if self.neighbours is not None else 0.0
        """The share of each intent's nearest example in the scores (chosen at training)."""
        self._encoder: MessageEncoder | None = None

    @property
    def encoder(self) -> MessageEncoder:
        """The embedder behind a fast path for one message (built on first use)."""
        if self._encoder is None:
            self._encoder = MessageEncoder(self.embedder)
        return self._encoder

    # ---- features

    def _embed(self, texts: Sequence[str], embeddings: np.ndarray | None) -> np.ndarray:
        if embeddings is None:
            embeddings = self.encoder.embed(list(texts)) if len(texts) == 1 else self.embedder.embed(list(texts))
        return np.asarray(embeddings, dtype=np.float32)  # (n, dim)

    def _logits_from(self, texts: Sequence[str], embeddings: np.ndarray,
                     cosines: np.ndarray | None = None) -> np.ndarray:
        """(n, n_labels): the linear scores, with each intent's nearest example mixed in at the model's share
        (``cosines``: ``neighbours.cosines(embeddings)`` where the caller has them)."""
        linear = self._linear_from(texts, embeddings)
        if self.nearest_share <= 0.0:
            return linear
        return mixed(linear, self.neighbours.cosines(embeddings) if cosines is None else cosines, self.nearest_share)

    def _linear_from(self, texts: Sequence[str], embeddings: np.ndarray) -> np.ndarray:
        """(n, n_labels): the linear model over [embedding * weight, word TF-IDF, char TF-IDF], block by block."""
        dim = embeddings.shape[1]
        n_word = len(self.word.vectorizer.vocabulary_)
        w_emb, w_word, w_char = (self.weights[:, :dim], self.weights[:, dim:dim + n_word],
                                 self.weights[:, dim + n_word:])
        out = (embeddings * self.config.embedding_weight) @ w_emb.T + self.bias  # (n, n_labels)
        if len(texts) == 1:  # chat: one message, without scikit-learn's per-call overhead
            for block, w in ((self.word, w_word), (self.char, w_char)):
                cols, values = block.transform_one(texts[0])
                out[0] += w[:, cols] @ values
            return out
        return out + np.asarray(self.word.transform(texts) @ w_word.T) + np.asarray(self.char.transform(texts) @ w_char.T)

    def logits(self, texts: Sequence[str], embeddings: np.ndarray | None = None) -> np.ndarray:
        """(n, n_labels) uncalibrated scores."""
        texts = list(texts)
        return self._logits_from(texts, self._embed(texts, embeddings))

    @property
    def anchors(self) -> np.ndarray | None:
        """(n_in_scope_examples, dim): the in-scope training examples (the out-of-scope score's nearest example)."""
        return None if self.examples is None else self.examples[self._in_scope[self.example_labels]]

    def nearest(self, embeddings: np.ndarray, cosines: np.ndarray | None = None) -> np.ndarray | None:
        """(n,) cosine of each embedding to the nearest in-scope training example (None without one), from
        the per-intent cosines (``cosines``: ``neighbours.cosines(embeddings)`` where the caller has them)."""
        if self.neighbours is None or not self._in_scope[self.example_labels].any():
            return None
        cosines = self.neighbours.cosines(embeddings) if cosines is None else cosines
        return cosines[:, self._in_scope].max(axis=1)

    def probabilities(self, texts: Sequence[str], embeddings: np.ndarray | None = None) -> np.ndarray:
        """(n, n_labels) calibrated probabilities, columns in ``labels`` order."""
        return softmax(self.logits(texts, embeddings).astype(np.float64) / self.calibration.temperature)

    def decide(self, probs: np.ndarray, embeddings: np.ndarray | None = None,
               nearest: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
        """(best label index, out-of-scope flag) per row of ``probs``; ``embeddings`` of the same rows (or
        ``nearest``, their cosines to the nearest in-scope example)."""
        if nearest is None and embeddings is not None:
            nearest = self.nearest(embeddings)
        if nearest is None and self.calibration.knn_weight > 0:
            raise ValueError("IntentModel.decide: this model's out-of-scope score needs the messages' embeddings")
        return decide(self.calibration, probs, self._in_scope, nearest)

    def classify(self, text: str, k: int = 3) -> IntentResult:
        """Top-k intents of one message and the out-of-scope decision."""
        return self.classify_many([text], k=k)[0]

    def classify_many(self, texts: Sequence[str], k: int = 3,
                      embeddings: np.ndarray | None = None) -> list[IntentResult]:
        if len(texts) == 0:
            return []
        texts = [t or "" for t in texts]
        embeddings = self._embed(texts, embeddings)
        cosines = self.neighbours.cosines(embeddings) if self.neighbours is not None else None  # for both uses
        nearest = self.nearest(embeddings, cosines)
        logits = self._logits_from(texts, embeddings, cosines)
        probs = softmax(logits.astype(np.float64) / self.calibration.temperature)
        best, oos = self.decide(probs, embeddings, nearest)
        in_best = best_in_scope(probs, self._in_scope)
        results = []
        for row, b, is_oos, p_in in zip(probs, best, oos, in_best):
            order = np.argsort(-row)[: max(1, k)]
            top = [(self.labels[i], round(float(row[i]), 6)) for i in order]
            if is_oos:
                p_oos = float(row[~self._in_scope].sum()) if (~self._in_scope).any() else 0.0
                name = self.oos_label or "out_of_scope"
                results.append(IntentResult(name, round(max(p_oos, 1.0 - float(p_in)), 6), top, True))
            else:
                results.append(IntentResult(self.labels[b], round(float(row[b]), 6), top, False))
        return results

    def calibrate(self, texts: Sequence[str], labels: Sequence[str], embeddings: np.ndarray | None = None,
                  min_oos_recall: float | None = None) -> Calibration:
        """Choose temperature, out-of-scope score and threshold on held-out (texts, labels).

        Labels unknown to the model count as out-of-scope.
        """
        texts = list(texts)
        known = {name: i for i, name in enumerate(self.labels)}
        y = np.array([known.get(label, -1) for label in labels])
        embeddings = self._embed(texts, embeddings)
        cosines = self.neighbours.cosines(embeddings) if self.neighbours is not None else None
        self.calibration = calibrate(self._logits_from(texts, embeddings, cosines), y, self._in_scope,
                                     nearest=self.nearest(embeddings, cosines), knn_weight=self.config.knn_weight,
                                     min_oos_recall=min_oos_recall)
        return self.calibration

    # ---- training

    @classmethod
    def train(cls, spec: IntentSpec, embedder: Any, config: TrainConfig | None = None) -> "IntentModel":
        """Train on every example of the intents file; calibrate on its validation messages when it
        names a validation file, else on cross-validation folds of the examples."""
        texts, labels = spec.training_data()
        val_texts = [t for t, _ in spec.validation] if spec.validation else None
        val_labels = [i for _, i in spec.validation] if spec.validation else None
        model = cls.fit(texts, labels, embedder, config=config, oos_label=spec.out_of_scope,
                        val_texts=val_texts, val_labels=val_labels)
        model.spec_sha256 = spec.sha256
        c = model.calibration
        log.info("intents: %d intents, %d examples; held-out accuracy %s, OOS recall %s, threshold %.3f, T %.2f",
                 len(spec.intents), len(texts), _fmt(c.in_scope_accuracy), _fmt(c.oos_recall), c.threshold,
                 c.temperature)
        return model

    @classmethod
    def fit(cls, texts: Sequence[str], labels: Sequence[str], embedder: Any, *, config: TrainConfig | None = None,
            oos_label: str | None = None, val_texts: Sequence[str] | None = None,
            val_labels: Sequence[str] | None = None, embeddings: np.ndarray | None = None,
            val_embeddings: np.ndarray | None = None) -> "IntentModel":
        """Train on (texts, labels).

        With a validation set, temperature, out-of-scope score and threshold are
        chosen on it.  Without, they are chosen on out-of-fold predictions of
        ``config.folds`` folds, then the model is refit on everything.
        ``embeddings`` may pass precomputed embeddings of ``texts`` (rows in the
        same order).  With ``config.encoder_epochs`` the embedder is fine-tuned
        first (on each fold's training part for the folds), so precomputed
        embeddings cannot be used.
        """
        config = config or TrainConfig()
        texts = list(texts)
        labels = list(labels)
        if len(texts) != len(labels) or not texts:
            raise DataFormatError(f"intent training data: {len(texts)} texts but {len(labels)} labels")
        label_names = sorted(set(labels))
        y = np.array([label_names.index(label) for label in labels])
        tuning = config.encoder_epochs > 0
        if tuning and (embeddings is not None or val_embeddings is not None):
            raise ValueError("IntentModel.fit: precomputed embeddings are of the untuned embedder; "
                             "pass none when encoder_epochs > 0")
        base = embedder
        if tuning:
            embedder = _tuned(base, texts, y, config)
        if embeddings is None:
            embeddings = embedder.embed(texts)
        embeddings = np.asarray(embeddings, dtype=np.float32)
        in_scope = np.array([name != oos_label for name in label_names])
        if val_texts is not None:
            val_texts = list(val_texts)
            if val_embeddings is None:
                val_embeddings = embedder.embed(val_texts)
            model = cls._fit_once(texts, y, label_names, embeddings, embedder, config, oos_label)
            if model.neighbours is not None:
                known = {name: i for i, name in enumerate(label_names)}
                val_y = np.array([known.get(label, -1) for label in val_labels])
                val_embeddings = np.asarray(val_embeddings, dtype=np.float32)
                model.nearest_share = choose_share(model._linear_from(val_texts, val_embeddings),
                                                   model.neighbours.cosines(val_embeddings), val_y, in_scope,
                                                   configured=config.nearest_share)
            model.calibrate(val_texts, list(val_labels), val_embeddings, config.min_oos_recall)
            return model
        calibration = Calibration(temperature=1.0, threshold=0.0)
        share = config.nearest_share or 0.0
        min_count = int(np.bincount(y).min())
        folds = min(config.folds, min_count)
        if folds >= 2:
            from sklearn.model_selection import StratifiedKFold

            oof = np.zeros((len(texts), len(label_names)))
            oof_cosines = np.zeros((len(texts), len(label_names)))
            oof_nearest = np.zeros(len(texts))
            splitter = StratifiedKFold(n_splits=folds, shuffle=True, random_state=0)
            for train_idx, test_idx in splitter.split(np.zeros(len(y)), y):
                fold_texts, fold_y = [texts[i] for i in train_idx], y[train_idx]
                held_texts = [texts[i] for i in test_idx]
                if tuning:  # the held-out part must not have been seen by the encoder either
                    fold_embedder = _tuned(base, fold_texts, fold_y, config)
                    fold_emb, held_emb = fold_embedder.embed(fold_texts), fold_embedder.embed(held_texts)
                else:
                    fold_embedder, fold_emb, held_emb = embedder, embeddings[train_idx], embeddings[test_idx]
                sub = cls._fit_once(fold_texts, fold_y, label_names, fold_emb, fold_embedder, config, oos_label)
                oof[test_idx] = sub._linear_from(held_texts, held_emb)
                if sub.neighbours is not None:
                    oof_cosines[test_idx] = sub.neighbours.cosines(held_emb)
                near = sub.nearest(held_emb, oof_cosines[test_idx] if sub.neighbours is not None else None)
                oof_nearest[test_idx] = near if near is not None else 0.0
            share = choose_share(oof, oof_cosines, y, in_scope, configured=config.nearest_share)
            calibration = calibrate(mixed(oof, oof_cosines, share), y, in_scope, nearest=oof_nearest,
                                    knn_weight=config.knn_weight, min_oos_recall=config.min_oos_recall)
        model = cls._fit_once(texts, y, label_names, embeddings, embedder, config, oos_label)
        model.calibration = calibration
        model.nearest_share = share if model.neighbours is not None else 0.0
        return model

    @classmethod
    def _fit_once(cls, texts, y, label_names, embeddings, embedder, config, oos_label) -> "IntentModel":
        from scipy import sparse
        from sklearn.linear_model import LogisticRegression

        word = Tfidf("word", config.word_ngrams, max_features=config.max_features).fit(texts)
        char = Tfidf("char_wb", config.char_ngrams, max_features=config.max_features).fit(texts)
        X = sparse.hstack([sparse.csr_matrix(embeddings * config.embedding_weight), word.transform(texts),
                           char.transform(texts)], format="csr", dtype=np.float32)
        present = np.unique(y)
        if config.classifier == "linear_svm":
            from sklearn.svm import LinearSVC

            clf = LinearSVC(C=config.C, class_weight="balanced", max_iter=max(1000, config.max_iter))
        else:
            clf = LogisticRegression(C=config.C, class_weight="balanced", max_iter=config.max_iter)
        clf.fit(X, y)
        weights = np.full((len(label_names), X.shape[1]), 0.0, dtype=np.float32)
        bias = np.full(len(label_names), -1e4, dtype=np.float32)  # a label absent from this fold never wins
        coef = clf.coef_ if len(present) > 2 else np.vstack([-clf.coef_[0] / 2, clf.coef_[0] / 2])
        inter = clf.intercept_ if len(present) > 2 else np.array([-clf.intercept_[0] / 2, clf.intercept_[0] / 2])
        weights[present] = coef
        bias[present] = inter
        return cls(labels=label_names, weights=weights, bias=bias, word=word, char=char, embedder=embedder,
                   config=config, calibration=Calibration(1.0, 0.0),
                   oos_label=oos_label if oos_label in label_names else None, examples=embeddings, example_labels=y)

    # ---- persistence

    def save(self, folder: str | Path) -> Path:
        """Write ``model.json``, ``weights.npz`` and, for a tuned encoder, ``encoder.safetensors`` into ``folder`` (no pickle)."""
        folder = Path(folder)
        folder.mkdir(parents=True, exist_ok=True)
        meta = {
            "format_version": FORMAT_VERSION,
            "labels": list(self.labels),
            "oos_label": self.oos_label,
            "spec_sha256": self.spec_sha256,
            "embedder": {"name": getattr(self.embedder, "name", "?"), "dimension": int(getattr(self.embedder, "dimension", 0))},
            "config": {**self.config.__dict__, "word_ngrams": list(self.config.word_ngrams),
                       "char_ngrams": list(self.config.char_ngrams)},
            "calibration": {**self.calibration.__dict__, "center": list(self.calibration.center),
                            "scale": list(self.calibration.scale)},
            "nearest_share": self.nearest_share,
            "encoder_tuned": bool(getattr(self.embedder, "tuned", False)),
            "word_vocabulary": self.word.vocabulary,
            "char_vocabulary": self.char.vocabulary,
        }
        examples = self.examples if self.examples is not None else np.zeros((0, self.weights.shape[1]), np.float32)
        labels = self.example_labels if self.example_labels is not None else np.zeros(0, np.int64)
        np.savez(folder / "weights.npz", weights=self.weights, bias=self.bias, word_idf=self.word.idf,
                 char_idf=self.char.idf, examples=examples, example_labels=labels)
        from . import intent_tuning

        tuned = folder / intent_tuning.WEIGHTS_FILE
        if meta["encoder_tuned"]:
            intent_tuning.save(self.embedder, folder)
        elif tuned.is_file():
            tuned.unlink()  # left by an earlier tuned model in this folder
        (folder / "model.json").write_text(json.dumps(meta, ensure_ascii=False), encoding="utf-8")
        return folder

    @classmethod
    def load(cls, folder: str | Path, embedder: Any) -> "IntentModel":
        """Load a saved model; the embedder must be the one it was trained with."""
        folder = Path(folder)
        meta_path, weights_path = folder / "model.json", folder / "weights.npz"
        if not meta_path.is_file() or not weights_path.is_file():
            raise ModelLoadError(f"intent model in {folder}: model.json or weights.npz missing; run: assistant intents train")
        try:
            meta = json.loads(meta_path.read_text(encoding="utf-8"))
            with np.load(weights_path, allow_pickle=False) as arrays:
                arrays = {k: arrays[k] for k in arrays.files}
        except (OSError, ValueError) as exc:
            raise ModelLoadError(f"intent model in {folder} is unreadable ({exc}); retrain with: assistant intents train") from exc
        if meta.get("format_version") != FORMAT_VERSION:
            raise ModelLoadError(f"intent model in {folder} has format {meta.get('format_version')}, expected {FORMAT_VERSION}; retrain it")
        saved = meta["embedder"]
        dim = int(getattr(embedder, "dimension", saved["dimension"]))
        if saved["name"] != getattr(embedder, "name", saved["name"]) or saved["dimension"] != dim:
            raise ModelLoadError(f"intent model in {folder} was trained with embedder {saved['name']!r} "
                                 f"({saved['dimension']} dims), not {getattr(embedder, 'name', '?')!r}; retrain it")
        config = config_from(meta)
        if config is None:
            raise ModelLoadError(f"intent model in {folder}: its settings in model.json are unreadable; retrain it")
        examples, example_labels = arrays.get("examples"), arrays.get("example_labels")
        if examples is None or example_labels is None or len(examples) != len(example_labels):
            raise ModelLoadError(f"intent model in {folder}: weights.npz lacks its training examples; retrain it")
        if meta.get("encoder_tuned"):
            from . import intent_tuning

            embedder = intent_tuning.load(embedder, folder)
        return cls(labels=meta["labels"], weights=arrays["weights"], bias=arrays["bias"],
                   word=Tfidf("word", config.word_ngrams, meta["word_vocabulary"], arrays["word_idf"]),
                   char=Tfidf("char_wb", config.char_ngrams, meta["char_vocabulary"], arrays["char_idf"]),
                   embedder=embedder, config=config, calibration=Calibration(**meta["calibration"]),
                   oos_label=meta["oos_label"], spec_sha256=meta.get("spec_sha256", ""),
                   examples=examples, example_labels=example_labels,
                   nearest_share=float(meta.get("nearest_share", 0.0)))


def _tuned(embedder: Any, texts: list[str], y: np.ndarray, config: TrainConfig) -> Any:
    from . import intent_tuning

    return intent_tuning.tune(embedder, texts, y, intent_tuning.TuningConfig(epochs=config.encoder_epochs))


def _fmt(x: float | None) -> str:
    return "n/a" if x is None else f"{x:.3f}"


def default_model(home: str | Path | None = None, embedder: Any = None, spec_path: str | Path | None = None) -> IntentModel:
    """The saved model in ``home/intents``; trained and saved when missing or when the intents file changed."""
    from ..config import assistant_home

    folder = Path(home or assistant_home()) / "intents"
    spec = load_spec(spec_path)
    if embedder is None:
        from retrieval.embedding import load_embedder

        embedder = load_embedder()
    config = None
    if (folder / "model.json").is_file():
        try:
            model = IntentModel.load(folder, embedder)
            if model.spec_sha256 == spec.sha256:
                return model
            log.info("intents file changed since %s was trained; retraining with the same settings", folder)
            config = model.config
        except ModelLoadError as exc:
            log.warning("retraining the intent model: %s", exc)
            config = saved_config(folder)
    with progress.step(f"training the intent model on {len(spec.intents)} intents (once)", log=log,
                       detail=str(folder)):
        model = IntentModel.train(spec, embedder, config)
        model.save(folder)
    return model
