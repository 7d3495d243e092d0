"""Scores for binary cat/dog probabilities, and temperature calibration."""

from __future__ import annotations

import numpy as np

# The Kaggle seeds clip submissions to this range: one confident mistake costs at most -log(0.005).
DEFAULT_CLIP = (0.005, 0.995)


def log_loss(labels: np.ndarray, p_dog: np.ndarray, eps: float = 1e-15) -> float:
    """Mean binary cross-entropy of P(dog) against labels (1 = dog), as Kaggle scores it."""
    labels = np.asarray(labels, np.float64)
    p = np.clip(np.asarray(p_dog, np.float64), eps, 1 - eps)
    return float(-np.mean(labels * np.log(p) + (1 - labels) * np.log(1 - p)))


def accuracy(labels: np.ndarray, p_dog: np.ndarray) -> float:
    return float(np.mean((np.asarray(p_dog) >= 0.5) == (np.asarray(labels) == 1)))


def confusion_matrix(labels: np.ndarray, p_dog: np.ndarray) -> list[list[int]]:
    """2 x 2 counts, rows = true (cat, dog), columns = predicted (cat, dog)."""
    pred = (np.asarray(p_dog) >= 0.5).astype(int)
    labels = np.asarray(labels).astype(int)
    return [[int(np.sum((labels == t) & (pred == p))) for p in (0, 1)] for t in (0, 1)]


def summary(labels: np.ndarray, p_dog: np.ndarray) -> dict:
    return {
        "log_loss": log_loss(labels, p_dog),
        "accuracy": accuracy(labels, p_dog),
        "n": int(len(labels)),
        "confusion_matrix": confusion_matrix(labels, p_dog),
        "confusion_matrix_layout": "rows true (cat, dog), columns predicted (cat, dog)",
    }


def cat_dog(p_dog: np.ndarray) -> np.ndarray:
    """(N,) P(dog) -> (N, 2) probabilities (cat, dog), the form the helpers below take."""
    p = np.asarray(p_dog)
    return np.stack([1 - p, p], 1)


def logit(probabilities: np.ndarray) -> np.ndarray:
    """log P(dog) - log P(cat) from (N, 2) softmax probabilities (cat, dog)."""
    p = np.clip(np.asarray(probabilities, np.float64), 1e-30, 1.0)
    return np.log(p[:, 1]) - np.log(p[:, 0])


def apply_temperature(probabilities: np.ndarray, temperature: float) -> np.ndarray:
    """P(dog) after dividing the logit by `temperature` (1.0 leaves it unchanged)."""
    return 1.0 / (1.0 + np.exp(-logit(probabilities) / temperature))


TEMPERATURE_BOUNDS = (0.05, 20.0)  # fit_temperature's search range


def fit_temperature(probabilities: np.ndarray, labels: np.ndarray, lo: float = TEMPERATURE_BOUNDS[0], hi: float = TEMPERATURE_BOUNDS[1]) -> float:
    """The temperature T > 0 that minimises log loss (golden-section search on log T)."""
    z = logit(probabilities)
    y = np.asarray(labels, np.float64)

    def loss(log_t: float) -> float:
        p = 1.0 / (1.0 + np.exp(-z / np.exp(log_t)))
        return log_loss(y, p)

    a, b = np.log(lo), np.log(hi)
    ratio = (np.sqrt(5) - 1) / 2
    c, d = b - ratio * (b - a), a + ratio * (b - a)
    for _ in range(80):
        if loss(c) < loss(d):
            b = d
        else:
            a = c
        c, d = b - ratio * (b - a), a + ratio * (b - a)
    return float(np.exp((a + b) / 2))


def cross_fitted_temperature_loss(probabilities: np.ndarray, labels: np.ndarray, seed: int = 0) -> float:
    """Honest log loss of temperature scaling: fit T on one half, score the other, and swap."""
    labels = np.asarray(labels)
    rng = np.random.default_rng(seed)
    order = rng.permutation(len(labels))
    halves = (order[: len(order) // 2], order[len(order) // 2 :])
    p_dog = np.empty(len(labels))
    for fit_idx, score_idx in (halves, halves[::-1]):
        t = fit_temperature(probabilities[fit_idx], labels[fit_idx])
        p_dog[score_idx] = apply_temperature(probabilities[score_idx], t)
    return log_loss(labels, p_dog)


def calibration_report(probabilities: np.ndarray, labels: np.ndarray, seed: int = 0) -> dict:
    """Validation log loss raw, clipped to DEFAULT_CLIP, and temperature-scaled (in-sample and
    cross-fitted), with the fitted temperature: the `calibration` block of metrics.json."""
    temperature = fit_temperature(probabilities, labels)
    low, high = DEFAULT_CLIP
    return {
        "temperature": temperature,
        "clip": [low, high],
        "val_log_loss_raw": log_loss(labels, probabilities[:, 1]),
        "val_log_loss_clipped": log_loss(labels, np.clip(probabilities[:, 1], low, high)),
        "val_log_loss_temperature_in_sample": log_loss(labels, apply_temperature(probabilities, temperature)),
        "val_log_loss_temperature_cross_fitted": cross_fitted_temperature_loss(probabilities, labels, seed),
    }
