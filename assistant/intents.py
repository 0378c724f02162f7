"""Intents: the intents file, and a classifier with out-of-scope detection.

The intents file (``knowledge/intents.yaml`` by default) lists, per intent, a
name, a description, what the engine does with it (``action``), replies per
language and training examples per language.  Support teams edit that file;
``assistant intents train`` retrains in seconds.

The classifier is a linear model (one-vs-rest linear SVM by default, or
multinomial logistic regression) over the concatenation of
sentence embeddings (any embedder with ``.embed``) and TF-IDF word and
character n-grams.  Its probabilities are temperature-calibrated on held-out
data (cross-validation folds, or an explicit validation set), and the
out-of-scope threshold on the best in-scope probability is chosen on the same
held-out data.  Weights are saved as ``.npz`` + JSON and loaded with
``allow_pickle=False``: nothing executable is read from disk.

This module knows nothing about languages, routing replies or the LLM; the
spec file's ``action``/``reply`` fields are read here but used by
``assistant.policy``.
"""

from __future__ import annotations

import hashlib
import json
import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal, Sequence

import numpy as np

from .errors import ConfigError, DataFormatError, ModelLoadError

log = logging.getLogger(__name__)

Action = Literal["reply", "handoff", "fallback", "answer"]
ACTIONS: tuple[str, ...] = ("reply", "handoff", "fallback", "answer")
FORMAT_VERSION = 1
DEFAULT_SPEC_PATH = Path(__file__).resolve().parent.parent / "knowledge" / "intents.yaml"


# --------------------------------------------------------------------------
# The intents file


@dataclass(frozen=True)
class IntentDef:
    """One intent of the intents file."""

    name: str
    description: str
    action: Action
    """What the engine does: ``reply`` (brief reply, no retrieval), ``handoff``, ``fallback`` or ``answer``."""
    examples: dict[str, tuple[str, ...]]
    """Training examples per language code."""
    replies: dict[str, str] = field(default_factory=dict)
    """Reply per language code (used by ``reply``, ``handoff`` and ``fallback``)."""


@dataclass(frozen=True)
class IntentSpec:
    """The parsed intents file."""

    intents: tuple[IntentDef, ...]
    out_of_scope: str = "out_of_scope"
    """Name of the intent that stands for "not something this assistant does"."""
    default_language: str = "en"
    """Language of replies when the file has none in the user's language."""
    entity_patterns: dict[str, str] = field(default_factory=dict)
    """Extra entity kinds (``order_id``, ``ticket_id``...) as regular expressions."""
    source: str = "<memory>"
    sha256: str = ""
    """Hash of the file's text; a saved model trained on another text is retrained."""

    def __post_init__(self) -> None:
        names = [i.name for i in self.intents]
        if len(set(names)) != len(names):
            dup = sorted({n for n in names if names.count(n) > 1})
            raise DataFormatError(f"{self.source}: intent name(s) {dup} appear more than once; names must be unique")
        if len(names) < 2:
            raise DataFormatError(f"{self.source}: at least 2 intents are needed to train a classifier; got {len(names)}")

    @property
    def names(self) -> tuple[str, ...]:
        return tuple(i.name for i in self.intents)

    def get(self, name: str) -> IntentDef | None:
        return next((i for i in self.intents if i.name == name), None)

    def training_data(self) -> tuple[list[str], list[str]]:
        """(texts, labels) of every example in every language."""
        texts: list[str] = []
        labels: list[str] = []
        for intent in self.intents:
            for examples in intent.examples.values():
                texts.extend(examples)
                labels.extend([intent.name] * len(examples))
        return texts, labels


def _line_loader():
    import yaml

    class LineLoader(yaml.SafeLoader):
        """SafeLoader whose mappings remember the line they start on."""

    def construct_mapping(loader, node, deep=False):
        mapping = yaml.SafeLoader.construct_mapping(loader, node, deep=True)
        mapping["__line__"] = node.start_mark.line + 1
        return mapping

    LineLoader.add_constructor(yaml.resolver.BaseResolver.DEFAULT_MAPPING_TAG, construct_mapping)
    return LineLoader


def load_spec(path: str | Path | None = None) -> IntentSpec:
    """Read and check an intents file (default ``knowledge/intents.yaml``); errors name the line and key."""
    import yaml

    path = Path(path) if path else DEFAULT_SPEC_PATH
    if not path.is_file():
        raise ConfigError(f"intents file {path} does not exist; pass an existing YAML file")
    text = path.read_text(encoding="utf-8")
    try:
        data = yaml.load(text, Loader=_line_loader())  # noqa: S506 - a SafeLoader subclass
    except yaml.YAMLError as exc:
        raise DataFormatError(f"intents file {path} is not valid YAML: {exc}") from exc
    return parse_spec(data, source=str(path), sha256=hashlib.sha256(text.encode("utf-8")).hexdigest())


def parse_spec(data: Any, *, source: str = "<memory>", sha256: str = "") -> IntentSpec:
    """Build an :class:`IntentSpec` from parsed YAML (mappings may carry ``__line__``)."""
    if not isinstance(data, dict):
        raise DataFormatError(f"{source}: the top level must be a mapping with an `intents:` list")
    where = lambda m: f"{source} line {m.get('__line__', '?')}" if isinstance(m, dict) else source  # noqa: E731
    known = {"version", "default_language", "out_of_scope", "entities", "intents", "__line__"}
    unknown = set(data) - known
    if unknown:
        raise DataFormatError(f"{where(data)}: unknown key(s) {sorted(unknown)}; known: {sorted(known - {'__line__'})}")
    raw_intents = data.get("intents")
    if not isinstance(raw_intents, list) or not raw_intents:
        raise DataFormatError(f"{where(data)}: `intents` must be a non-empty list of intents")
    patterns = data.get("entities") or {}
    if not isinstance(patterns, dict):
        raise DataFormatError(f"{where(data)}: `entities` must map an entity kind to a regular expression")
    patterns = {k: v for k, v in patterns.items() if k != "__line__"}
    for kind, pattern in patterns.items():
        import re

        try:
            re.compile(str(pattern))
        except re.error as exc:
            raise DataFormatError(f"{where(data)}: entities.{kind}: invalid regular expression: {exc}") from None
    intents = tuple(_parse_intent(raw, where) for raw in raw_intents)
    spec = IntentSpec(
        intents=intents,
        out_of_scope=str(data.get("out_of_scope", "out_of_scope")),
        default_language=str(data.get("default_language", "en")),
        entity_patterns={str(k): str(v) for k, v in patterns.items()},
        source=source,
        sha256=sha256,
    )
    if spec.get(spec.out_of_scope) is None:
        raise DataFormatError(f"{where(data)}: out_of_scope names intent {spec.out_of_scope!r}, which is not defined")
    return spec


def _parse_intent(raw: Any, where) -> IntentDef:
    if not isinstance(raw, dict):
        raise DataFormatError(f"{where(raw)}: each item of `intents` must be a mapping; got {raw!r}")
    allowed = {"name", "description", "action", "examples", "reply", "__line__"}
    unknown = set(raw) - allowed
    if unknown:
        raise DataFormatError(f"{where(raw)}: unknown key(s) {sorted(unknown)} in intent; known: {sorted(allowed - {'__line__'})}")
    name = raw.get("name")
    if not isinstance(name, str) or not name.strip():
        raise DataFormatError(f"{where(raw)}: intent needs a `name` (a non-empty string)")
    action = raw.get("action", "answer")
    if action not in ACTIONS:
        raise DataFormatError(f"{where(raw)}: intent {name!r}: `action` must be one of {ACTIONS}; got {action!r}")
    examples = raw.get("examples")
    if isinstance(examples, list):
        examples = {"en": examples}
    if not isinstance(examples, dict) or not any(k != "__line__" for k in examples):
        raise DataFormatError(
            f"{where(raw)}: intent {name!r}: `examples` must map a language code to a list of example messages"
        )
    parsed: dict[str, tuple[str, ...]] = {}
    for lang, items in examples.items():
        if lang == "__line__":
            continue
        if not isinstance(items, list):
            raise DataFormatError(f"{where(raw)}: intent {name!r}: examples.{lang} must be a list of messages")
        bad = next((x for x in items if not (isinstance(x, str) and x.strip())), None)
        if bad is not None or any(not isinstance(x, str) for x in items):
            bad = {k: v for k, v in bad.items() if k != "__line__"} if isinstance(bad, dict) else bad
            raise DataFormatError(f"{where(raw)}: intent {name!r}: examples.{lang} must hold non-empty strings; "
                                  f"got {bad!r} (quote examples that contain ': ' or start with a YAML symbol)")
        parsed[str(lang)] = tuple(x.strip() for x in items)
    if sum(len(v) for v in parsed.values()) < 2:
        raise DataFormatError(f"{where(raw)}: intent {name!r} needs at least 2 examples")
    reply = raw.get("reply") or {}
    if isinstance(reply, str):
        reply = {"en": reply}
    if not isinstance(reply, dict):
        raise DataFormatError(f"{where(raw)}: intent {name!r}: `reply` must map a language code to a text")
    replies = {str(k): str(v).strip() for k, v in reply.items() if k != "__line__"}
    if action in ("reply", "handoff", "fallback") and not replies:
        raise DataFormatError(f"{where(raw)}: intent {name!r} has action {action!r} but no `reply`; add reply: {{en: ...}}")
    return IntentDef(name=name.strip(), description=str(raw.get("description", "")).strip(),
                     action=action, examples=parsed, replies=replies)


# --------------------------------------------------------------------------
# The classifier


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


@dataclass(frozen=True)
class TrainConfig:
    """Features and model of the intent classifier."""

    C: float = 2.0
    """Inverse L2 strength of the linear model."""
    embedding_weight: float = 1.5
    """Scale of the (unit-norm) sentence embedding against the unit-norm TF-IDF blocks."""
    word_ngrams: tuple[int, int] = (1, 2)
    char_ngrams: tuple[int, int] = (2, 4)
    max_features: int = 40000
    """Upper bound per TF-IDF block."""
    folds: int = 5
    """Cross-validation folds for calibration when no validation set is given (0: none)."""
    max_iter: int = 300
    min_oos_recall: float | None = None
    """None: the threshold maximises (in-scope accuracy + OOS recall) / 2 on held-out data.  A number: the
    threshold is the lowest that reaches this OOS recall on held-out data (best in-scope accuracy under it)."""
    classifier: Literal["logreg", "linear_svm"] = "linear_svm"
    """``logreg``: multinomial logistic regression; ``linear_svm``: one-vs-rest linear SVM (scores calibrated by temperature)."""

    def __post_init__(self) -> None:
        if self.C <= 0:
            raise ConfigError(f"TrainConfig.C must be > 0; got {self.C}")
        if self.embedding_weight < 0:
            raise ConfigError(f"TrainConfig.embedding_weight must be >= 0; got {self.embedding_weight}")
        if self.classifier not in ("logreg", "linear_svm"):
            raise ConfigError(f"TrainConfig.classifier must be 'logreg' or 'linear_svm'; got {self.classifier!r}")
        if self.min_oos_recall is not None and not 0.0 < self.min_oos_recall <= 1.0:
            raise ConfigError(f"TrainConfig.min_oos_recall must be in (0, 1] or None; got {self.min_oos_recall}")
        if self.folds == 1 or self.folds < 0:
            raise ConfigError(f"TrainConfig.folds must be 0 or >= 2; got {self.folds}")


@dataclass(frozen=True)
class Calibration:
    """What held-out data said about the classifier."""

    temperature: float
    threshold: float
    """Out-of-scope when the best in-scope probability is below this."""
    in_scope_accuracy: float | None = None
    oos_recall: float | None = None
    n_heldout: int = 0


class _Tfidf:
    """A TF-IDF block, trained with scikit-learn and stored as vocabulary + idf."""

    def __init__(self, analyzer: str, ngram_range: tuple[int, int], vocabulary: dict[str, int] | None = None,
                 idf: np.ndarray | None = None, max_features: int | None = None):
        from sklearn.feature_extraction.text import TfidfVectorizer

        self.analyzer = analyzer
        self.ngram_range = tuple(ngram_range)
        self.vectorizer = TfidfVectorizer(analyzer=analyzer, ngram_range=self.ngram_range, sublinear_tf=True,
                                          lowercase=True, vocabulary=vocabulary, max_features=max_features,
                                          dtype=np.float32,
                                          **({"token_pattern": r"(?u)\b\w+\b"} if analyzer == "word" else {}))
        if vocabulary is not None:
            self.vectorizer.idf_ = idf

    def fit(self, texts: Sequence[str]) -> "_Tfidf":
        self.vectorizer.fit(texts)
        return self

    def transform(self, texts: Sequence[str]):
        return self.vectorizer.transform(texts)

    @property
    def vocabulary(self) -> dict[str, int]:
        return {k: int(v) for k, v in self.vectorizer.vocabulary_.items()}

    @property
    def idf(self) -> np.ndarray:
        return np.asarray(self.vectorizer.idf_, dtype=np.float64)


def _softmax(z: np.ndarray) -> np.ndarray:
    z = z - z.max(axis=1, keepdims=True)
    e = np.exp(z)
    return e / e.sum(axis=1, keepdims=True)


class IntentModel:
    """Embedding + TF-IDF logistic regression with calibrated probabilities and an out-of-scope threshold."""

    def __init__(self, *, labels: Sequence[str], weights: np.ndarray, bias: np.ndarray, word: _Tfidf, char: _Tfidf,
                 embedder: Any, config: TrainConfig, calibration: Calibration, oos_label: str | None,
                 spec_sha256: str = ""):
        self.labels = tuple(labels)
        self.weights = np.asarray(weights, dtype=np.float32)  # (n_labels, n_features)
        self.bias = np.asarray(bias, dtype=np.float32)  # (n_labels,)
        self.word = word
        self.char = char
        self.embedder = embedder
        self.config = config
        self.calibration = calibration
        self.oos_label = oos_label
        self.spec_sha256 = spec_sha256
        self._in_scope = np.array([label != oos_label for label in self.labels])

    # ---- features

    def _features(self, texts: Sequence[str], embeddings: np.ndarray | None = None):
        from scipy import sparse

        if embeddings is None:
            embeddings = self.embedder.embed(list(texts))  # (n, dim)
        blocks = [sparse.csr_matrix(np.asarray(embeddings, dtype=np.float32) * self.config.embedding_weight),
                  self.word.transform(texts), self.char.transform(texts)]
        return sparse.hstack(blocks, format="csr", dtype=np.float32)

    def logits(self, texts: Sequence[str], embeddings: np.ndarray | None = None) -> np.ndarray:
        """(n, n_labels) uncalibrated scores."""
        X = self._features(texts, embeddings)
        return np.asarray(X @ self.weights.T) + self.bias

    def probabilities(self, texts: Sequence[str], embeddings: np.ndarray | None = None) -> np.ndarray:
        """(n, n_labels) calibrated probabilities, columns in ``labels`` order."""
        return _softmax(self.logits(texts, embeddings).astype(np.float64) / self.calibration.temperature)

    def decide(self, probs: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(best label index, out-of-scope flag) per row of ``probs``."""
        return _decide(probs, self._in_scope, self.calibration.threshold)

    def classify(self, text: str, k: int = 3) -> IntentResult:
        """Top-k intents of one message and the out-of-scope decision."""
        return self.classify_many([text], k=k)[0]

    def classify_many(self, texts: Sequence[str], k: int = 3,
                      embeddings: np.ndarray | None = None) -> list[IntentResult]:
        if len(texts) == 0:
            return []
        probs = self.probabilities([t or "" for t in texts], embeddings)
        best, oos = self.decide(probs)
        results = []
        for row, b, is_oos in zip(probs, best, oos):
            order = np.argsort(-row)[: max(1, k)]
            top = [(self.labels[i], round(float(row[i]), 6)) for i in order]
            if is_oos:
                in_best = float(row[self._in_scope].max()) if self._in_scope.any() else 0.0
                p_oos = float(row[~self._in_scope].sum()) if (~self._in_scope).any() else 0.0
                name = self.oos_label or "out_of_scope"
                results.append(IntentResult(name, round(max(p_oos, 1.0 - in_best), 6), top, True))
            else:
                results.append(IntentResult(self.labels[b], round(float(row[b]), 6), top, False))
        return results

    def calibrate(self, texts: Sequence[str], labels: Sequence[str], embeddings: np.ndarray | None = None,
                  min_oos_recall: float | None = None) -> Calibration:
        """Choose temperature and threshold on held-out (texts, labels); labels unknown to the model count as OOS."""
        known = {name: i for i, name in enumerate(self.labels)}
        y = np.array([known.get(label, -1) for label in labels])
        self.calibration = _calibrate(self.logits(list(texts), embeddings), y, self._in_scope, min_oos_recall)
        return self.calibration

    # ---- training

    @classmethod
    def train(cls, spec: IntentSpec, embedder: Any, config: TrainConfig | None = None) -> "IntentModel":
        """Train on every example of the intents file; calibrate on cross-validation folds."""
        texts, labels = spec.training_data()
        model = cls.fit(texts, labels, embedder, config=config, oos_label=spec.out_of_scope)
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

        With a validation set, temperature and threshold are chosen on it.  Without,
        they are chosen on out-of-fold predictions of ``config.folds`` folds, then
        the model is refit on everything.  ``embeddings`` may pass precomputed
        embeddings of ``texts`` (rows in the same order).
        """
        config = config or TrainConfig()
        texts = list(texts)
        labels = list(labels)
        if len(texts) != len(labels) or not texts:
            raise DataFormatError(f"intent training data: {len(texts)} texts but {len(labels)} labels")
        if embeddings is None:
            embeddings = embedder.embed(texts)
        label_names = sorted(set(labels))
        y = np.array([label_names.index(label) for label in labels])
        in_scope = np.array([name != oos_label for name in label_names])
        if val_texts is not None:
            val_texts = list(val_texts)
            if val_embeddings is None:
                val_embeddings = embedder.embed(val_texts)
            model = cls._fit_once(texts, y, label_names, embeddings, embedder, config, oos_label)
            model.calibrate(val_texts, list(val_labels), val_embeddings, config.min_oos_recall)
            return model
        calibration = Calibration(temperature=1.0, threshold=0.0)
        min_count = int(np.bincount(y).min())
        folds = min(config.folds, min_count)
        if folds >= 2:
            from sklearn.model_selection import StratifiedKFold

            oof = np.zeros((len(texts), len(label_names)))
            splitter = StratifiedKFold(n_splits=folds, shuffle=True, random_state=0)
            for train_idx, test_idx in splitter.split(np.zeros(len(y)), y):
                sub = cls._fit_once([texts[i] for i in train_idx], y[train_idx], label_names,
                                    embeddings[train_idx], embedder, config, oos_label)
                oof[test_idx] = sub.logits([texts[i] for i in test_idx], embeddings[test_idx])
            calibration = _calibrate(oof, y, in_scope, config.min_oos_recall)
        model = cls._fit_once(texts, y, label_names, embeddings, embedder, config, oos_label)
        model.calibration = calibration
        return model

    @classmethod
    def _fit_once(cls, texts, y, label_names, embeddings, embedder, config, oos_label) -> "IntentModel":
        from sklearn.linear_model import LogisticRegression

        word = _Tfidf("word", config.word_ngrams, max_features=config.max_features).fit(texts)
        char = _Tfidf("char_wb", config.char_ngrams, max_features=config.max_features).fit(texts)
        model = cls(labels=label_names, weights=np.zeros((len(label_names), 1)), bias=np.zeros(len(label_names)),
                    word=word, char=char, embedder=embedder, config=config,
                    calibration=Calibration(1.0, 0.0), oos_label=oos_label if oos_label in label_names else None)
        X = model._features(texts, embeddings)
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
        model.weights, model.bias = weights, bias
        return model

    # ---- persistence

    def save(self, folder: str | Path) -> Path:
        """Write ``model.json`` and ``weights.npz`` (no pickle) into ``folder``."""
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
            "calibration": self.calibration.__dict__,
            "word_vocabulary": self.word.vocabulary,
            "char_vocabulary": self.char.vocabulary,
        }
        np.savez(folder / "weights.npz", weights=self.weights, bias=self.bias, word_idf=self.word.idf,
                 char_idf=self.char.idf)
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
        cfg = dict(meta["config"])
        cfg["word_ngrams"], cfg["char_ngrams"] = tuple(cfg["word_ngrams"]), tuple(cfg["char_ngrams"])
        config = TrainConfig(**cfg)
        return cls(labels=meta["labels"], weights=arrays["weights"], bias=arrays["bias"],
                   word=_Tfidf("word", config.word_ngrams, meta["word_vocabulary"], arrays["word_idf"]),
                   char=_Tfidf("char_wb", config.char_ngrams, meta["char_vocabulary"], arrays["char_idf"]),
                   embedder=embedder, config=config, calibration=Calibration(**meta["calibration"]),
                   oos_label=meta["oos_label"], spec_sha256=meta.get("spec_sha256", ""))


def _decide(probs: np.ndarray, in_scope: np.ndarray, threshold: float) -> tuple[np.ndarray, np.ndarray]:
    best = probs.argmax(axis=1)
    if not in_scope.any():
        return best, np.ones(len(best), dtype=bool)
    best_in = np.where(in_scope, probs, -1.0).max(axis=1)
    oos = (~in_scope[best]) | (best_in < threshold)
    return best, oos


def _calibrate(logits: np.ndarray, y: np.ndarray, in_scope: np.ndarray,
               min_oos_recall: float | None = None) -> Calibration:
    """Temperature by held-out log-loss; threshold maximising (in-scope accuracy + OOS recall) / 2,
    or the best in-scope accuracy among thresholds reaching ``min_oos_recall``.

    ``y`` is -1 for a held-out example whose label the model does not know (counted as out-of-scope).
    """
    is_oos = (y < 0) | ~in_scope[np.clip(y, 0, None)]
    known = y >= 0
    best_t, best_nll = 1.0, np.inf
    for t in np.exp(np.linspace(np.log(0.05), np.log(20.0), 60)):
        p = _softmax(logits[known] / t)
        nll = -np.mean(np.log(p[np.arange(known.sum()), y[known]] + 1e-12))
        if nll < best_nll:
            best_t, best_nll = float(t), nll
    probs = _softmax(logits / best_t)
    n_in, n_oos = int((~is_oos).sum()), int(is_oos.sum())
    if n_in == 0:
        return Calibration(best_t, 0.0, None, None, len(y))
    best_score, best_thr, stats = -1.0, 0.0, (None, None)
    candidates = np.unique(np.round(np.concatenate([[0.0], np.where(in_scope, probs, -1).max(axis=1)]), 4))
    pred = probs.argmax(axis=1)
    best_in = np.where(in_scope, probs, -1.0).max(axis=1)
    for thr in candidates if n_oos else [0.0]:
        oos = (~in_scope[pred]) | (best_in < thr)
        acc = float(((pred == y) & ~oos)[~is_oos].mean())
        rec = float(oos[is_oos].mean()) if n_oos else None
        if rec is None:
            score = acc
        elif min_oos_recall is not None:
            score = acc + (1.0 if rec >= min_oos_recall - 1e-9 else rec - 1.0)  # reaching the target comes first
        else:
            score = (acc + rec) / 2
        if score > best_score + 1e-9:
            best_score, best_thr, stats = score, float(thr), (acc, rec)
    return Calibration(best_t, round(best_thr, 4), stats[0], stats[1], len(y))


def _fmt(x: float | None) -> str:
    return "n/a" if x is None else f"{x:.3f}"


def default_model(home: str | Path | None = None, embedder: Any = None, spec_path: str | Path | None = None) -> IntentModel:
    """The saved model in ``home/intents``; trained and saved when missing or when the intents file changed."""
    from .config import assistant_home

    folder = Path(home or assistant_home()) / "intents"
    spec = load_spec(spec_path)
    if embedder is None:
        from retrieval.embedding import load_embedder

        embedder = load_embedder()
    if (folder / "model.json").is_file():
        try:
            model = IntentModel.load(folder, embedder)
            if model.spec_sha256 == spec.sha256:
                return model
            log.info("intents file changed since %s was trained; retraining", folder)
        except ModelLoadError as exc:
            log.warning("retraining the intent model: %s", exc)
    model = IntentModel.train(spec, embedder)
    model.save(folder)
    return model
