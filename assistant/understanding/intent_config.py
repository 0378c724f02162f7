"""The intent classifier's settings (``TrainConfig``) and reading them back from a saved model's ``model.json``.

Knows nothing about the classifier itself: ``intents.IntentModel`` trains with these settings and records
them next to its weights, so that a changed intents file is retrained the same way.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from ..errors import ConfigError


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
    min_oos_recall: float | None = 0.90
    """The out-of-scope recall the threshold must reach on held-out data; among the thresholds that reach it, the
    one with the best in-scope accuracy.  None: the threshold maximises (in-scope accuracy + OOS recall) / 2
    instead, which on CLINC150 gives up 2-4 points of in-scope accuracy for test recall above 0.92."""
    classifier: Literal["logreg", "linear_svm"] = "linear_svm"
    """``logreg``: multinomial logistic regression; ``linear_svm``: one-vs-rest linear SVM (scores calibrated by temperature)."""
    knn_weight: float | None = None
    """Share of the cosine to the nearest in-scope training example in the out-of-scope score (0: the best
    in-scope probability alone; both parts standardised on held-out data).  None: chosen on the held-out
    data among ``intent_calibration.KNN_WEIGHTS`` by the same rule as the threshold."""
    nearest_share: float | None = None
    """Share of each intent's nearest training example (cosine) in the scores beside the linear model's, both
    standardised per message (``intent_neighbours``; 0: the linear model alone).  None: chosen on the held-out
    data among ``intent_neighbours.SHARES`` by accuracy."""
    encoder_epochs: int = 0
    """0: the embedder stays as it is (seconds).  N > 0: a copy of it is fine-tuned for N epochs on the examples
    (``intent_tuning``; minutes; better with many examples per intent) and saved with the model."""

    def __post_init__(self) -> None:
        if self.C <= 0:
            raise ConfigError(f"TrainConfig.C must be > 0; got {self.C}")
        if self.embedding_weight < 0:
            raise ConfigError(f"TrainConfig.embedding_weight must be >= 0; got {self.embedding_weight}")
        if self.classifier not in ("logreg", "linear_svm"):
            raise ConfigError(f"TrainConfig.classifier must be 'logreg' or 'linear_svm'; got {self.classifier!r}")
        if self.min_oos_recall is not None and not 0.0 < self.min_oos_recall <= 1.0:
            raise ConfigError(f"TrainConfig.min_oos_recall must be in (0, 1] or None; got {self.min_oos_recall}")
        if self.knn_weight is not None and not 0.0 <= self.knn_weight <= 1.0:
            raise ConfigError(f"TrainConfig.knn_weight must be in [0, 1]; got {self.knn_weight}")
        if self.nearest_share is not None and not 0.0 <= self.nearest_share <= 10.0:
            raise ConfigError(f"TrainConfig.nearest_share must be in [0, 10]; got {self.nearest_share}")
        if self.encoder_epochs < 0:
            raise ConfigError(f"TrainConfig.encoder_epochs must be >= 0; got {self.encoder_epochs}")
        if self.folds == 1 or self.folds < 0:
            raise ConfigError(f"TrainConfig.folds must be 0 or >= 2; got {self.folds}")


def config_from(meta: dict) -> TrainConfig | None:
    """The settings recorded in a ``model.json`` when they are readable; else None."""
    try:
        cfg = dict(meta["config"])
        cfg["word_ngrams"], cfg["char_ngrams"] = tuple(cfg["word_ngrams"]), tuple(cfg["char_ngrams"])
        return TrainConfig(**cfg)
    except (ValueError, KeyError, TypeError, ConfigError):
        return None


def saved_config(folder: Path) -> TrainConfig | None:
    """The settings recorded in ``folder/model.json`` when they are readable (to retrain the same way); else None."""
    try:
        return config_from(json.loads((folder / "model.json").read_text(encoding="utf-8")))
    except (OSError, ValueError):
        return None
