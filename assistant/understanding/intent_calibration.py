"""Calibrated confidence and the out-of-scope decision of the intent classifier.

Held-out data (cross-validation folds of the intents file, or an explicit
validation set such as CLINC150's ``val`` + ``oos_val``) fixes three things:

- a **temperature** for the classifier's scores (held-out log-loss);
- an **out-of-scope score** per message: the log of the best in-scope
  probability, and the cosine of the message to its nearest in-scope training
  example, each standardised by its mean and spread over held-out in-scope
  messages and mixed with weight ``knn_weight`` (0: the probability alone,
  the score then *is* the best in-scope probability), the weight itself
  chosen on the held-out data unless given;
- a **threshold** on that score: the best in-scope accuracy among thresholds
  that reach a required out-of-scope recall on the held-out data (the
  product's default, ``TrainConfig.min_oos_recall``), or, without a required
  recall, the one that maximises (in-scope accuracy + out-of-scope recall) / 2.

Knows nothing about features, texts or files: it sees score matrices.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class Calibration:
    """What held-out data said about the classifier."""

    temperature: float
    threshold: float
    """Out-of-scope when the out-of-scope score (see ``oos_score``) is below this."""
    in_scope_accuracy: float | None = None
    oos_recall: float | None = None
    n_heldout: int = 0
    knn_weight: float = 0.0
    """Share of the nearest-example cosine in the score; 0: the score is the best in-scope probability."""
    center: tuple[float, float] = (0.0, 0.0)
    """Held-out in-scope mean of (log best in-scope probability, nearest-example cosine)."""
    scale: tuple[float, float] = (1.0, 1.0)
    """Held-out in-scope standard deviation of the same two."""

    def __post_init__(self) -> None:
        # JSON gives lists back; keep the dataclass comparable after a save/load round trip.
        object.__setattr__(self, "center", tuple(float(x) for x in self.center))
        object.__setattr__(self, "scale", tuple(float(x) for x in self.scale))


def softmax(z: np.ndarray) -> np.ndarray:
    z = z - z.max(axis=1, keepdims=True)
    e = np.exp(z)
    return e / e.sum(axis=1, keepdims=True)


def best_in_scope(probs: np.ndarray, in_scope: np.ndarray) -> np.ndarray:
    """(n,) best in-scope probability per row of ``probs`` (n, n_labels)."""
    if not in_scope.any():
        return np.zeros(len(probs))
    return np.where(in_scope, probs, -1.0).max(axis=1)


def oos_score(calibration: Calibration, probs: np.ndarray, in_scope: np.ndarray,
              nearest: np.ndarray | None) -> np.ndarray:
    """(n,) out-of-scope score; lower is more out of scope.  ``nearest``: (n,) cosine to the nearest in-scope example."""
    p_in = best_in_scope(probs, in_scope)
    w = calibration.knn_weight
    if w == 0.0 or nearest is None:
        return p_in
    (c0, c1), (s0, s1) = calibration.center, calibration.scale
    return (1.0 - w) * (np.log(p_in + 1e-12) - c0) / s0 + w * (nearest - c1) / s1


def decide(calibration: Calibration, probs: np.ndarray, in_scope: np.ndarray,
           nearest: np.ndarray | None) -> tuple[np.ndarray, np.ndarray]:
    """(best label index, out-of-scope flag) per row of ``probs``."""
    best = probs.argmax(axis=1)
    if not in_scope.any():
        return best, np.ones(len(best), dtype=bool)
    oos = (~in_scope[best]) | (oos_score(calibration, probs, in_scope, nearest) < calibration.threshold)
    return best, oos


KNN_WEIGHTS: tuple[float, ...] = (0.0, 0.25, 0.5, 0.75)
"""Mixes tried when the weight of the nearest-example cosine is left to the held-out data."""


def calibrate(logits: np.ndarray, y: np.ndarray, in_scope: np.ndarray, *, nearest: np.ndarray | None = None,
              knn_weight: float | None = None, min_oos_recall: float | None = None) -> Calibration:
    """Temperature by held-out log-loss, then the out-of-scope score's mix, standardisation and threshold.

    ``logits`` (n, n_labels) are held-out scores, ``y`` (n,) their label indices,
    -1 for a held-out example whose label the model does not know (counted as
    out-of-scope); ``nearest`` (n,) their cosine to the nearest in-scope
    training example (of the model that scored them).  ``knn_weight`` None
    tries each of ``KNN_WEIGHTS`` and keeps the one whose threshold scores best
    by the same rule (ties: the smaller weight); with little or multilingual
    data the nearest-example cosine of an English-only embedder is often no help.
    """
    is_oos = (y < 0) | ~in_scope[np.clip(y, 0, None)]
    known = y >= 0
    best_t, best_nll = 1.0, np.inf
    for t in np.exp(np.linspace(np.log(0.05), np.log(20.0), 60)):
        p = softmax(logits[known] / t)
        nll = -np.mean(np.log(p[np.arange(known.sum()), y[known]] + 1e-12))
        if nll < best_nll:
            best_t, best_nll = float(t), nll
    probs = softmax(logits / best_t)
    if int((~is_oos).sum()) == 0:
        return Calibration(best_t, 0.0, None, None, len(y))
    weights = KNN_WEIGHTS if knn_weight is None else (float(knn_weight),)
    if nearest is None or int((~is_oos).sum()) < 2:
        weights = (0.0,)
    best: tuple[float, Calibration] | None = None
    for w in weights:
        objective, calibration = _threshold(probs, y, is_oos, in_scope, nearest, w, best_t, min_oos_recall)
        if best is None or objective > best[0] + 1e-9:
            best = (objective, calibration)
    return best[1]


def _threshold(probs: np.ndarray, y: np.ndarray, is_oos: np.ndarray, in_scope: np.ndarray,
               nearest: np.ndarray | None, knn_weight: float, temperature: float,
               min_oos_recall: float | None) -> tuple[float, Calibration]:
    """(objective, calibration) of the best threshold for one mix of the out-of-scope score."""
    calibration = Calibration(temperature, 0.0, n_heldout=len(y))
    if knn_weight > 0.0:
        log_p = np.log(best_in_scope(probs, in_scope)[~is_oos] + 1e-12)
        near = nearest[~is_oos]
        calibration = Calibration(temperature, 0.0, n_heldout=len(y), knn_weight=float(knn_weight),
                                  center=(round(float(log_p.mean()), 6), round(float(near.mean()), 6)),
                                  scale=(round(max(float(log_p.std()), 1e-3), 6), round(max(float(near.std()), 1e-3), 6)))
    scores = oos_score(calibration, probs, in_scope, nearest)
    no_threshold = float(np.floor(scores.min())) - 1.0 if calibration.knn_weight else 0.0
    n_oos = int(is_oos.sum())
    pred = probs.argmax(axis=1)
    best_score, best_thr, stats = -1.0, no_threshold, (None, None)
    candidates = np.unique(np.round(np.concatenate([[no_threshold], scores]), 4)) if n_oos else [no_threshold]
    for thr in candidates:
        oos = (~in_scope[pred]) | (scores < thr)
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
    return best_score, Calibration(temperature, round(best_thr, 4), stats[0], stats[1], len(y),
                                   calibration.knn_weight, calibration.center, calibration.scale)
