"""Train the Dense(2, softmax) head on cached features and write a RUN_DIR.

RUN_DIR layout:

    model.keras     full model: raw RGB photo (SxSx3, 0..255; S = --image-size, 224) -> (P(cat), P(dog))
                    layers: image -> preprocess -> backbone -> gap -> dropout -> probabilities
    head.keras      the head alone: (C,) features -> (P(cat), P(dog))
    metrics.json    validation scores, calibration, split, seed, backbone, data fingerprint
    split.json      names of the training and validation photos
    history.json    per-epoch loss and accuracy
    curves.png      loss and accuracy per epoch, train vs validation
"""

from __future__ import annotations

import json
import os
import time
from dataclasses import dataclass
from pathlib import Path

import keras
import numpy as np
from tqdm import tqdm

from catdog import __version__
from catdog.data import IMAGE_SIZE, LABELS, sha256_file
from catdog.errors import CatdogError
from catdog.features import BackbonePreprocessing, FeatureSet, build_backbone, get_spec, image_input, input_size
from catdog.training import metrics as M


@dataclass(frozen=True)
class HeadConfig:
    dropout: float = 0.5
    l2: float = 3e-3  # 5-fold CV sweep 1e-4..3e-2: best at 224 and at 288 (README)
    learning_rate: float = 1e-3
    batch_size: int = 128
    max_epochs: int = 400
    patience: int = 20
    val_fraction: float = 0.2
    seed: int = 0


def stratified_split(labels: np.ndarray, val_fraction: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Seeded split keeping the class ratio: (train indices, validation indices), each sorted."""
    if not 0.0 < val_fraction < 1.0:
        raise CatdogError(f"--val-fraction {val_fraction}: must be between 0 and 1 (e.g. 0.2)")
    rng = np.random.default_rng(seed)
    val = []
    for cls in np.unique(labels):
        idx = np.flatnonzero(labels == cls)
        n_val = int(round(len(idx) * val_fraction))
        if n_val < 1 or n_val >= len(idx):
            raise CatdogError(f"class {LABELS[cls]!r} has {len(idx)} photos: too few to split {val_fraction:.0%} off for validation")
        val.extend(rng.choice(idx, n_val, replace=False))
    val = np.sort(np.array(val))
    train = np.setdiff1d(np.arange(len(labels)), val)
    return train, val


def stratified_folds(labels: np.ndarray, k: int, seed: int) -> np.ndarray:
    """Seeded fold number (0..k-1) for each photo, keeping the class ratio in every fold."""
    if k < 2:
        raise CatdogError(f"--cv {k}: needs at least 2 folds (e.g. 5)")
    rng = np.random.default_rng(seed)
    folds = np.zeros(len(labels), int)
    for cls in np.unique(labels):
        idx = rng.permutation(np.flatnonzero(labels == cls))
        folds[idx] = np.arange(len(idx)) % k
    return folds


def build_head(feature_dim: int, config: HeadConfig = HeadConfig()) -> keras.Model:
    """(C,) features -> dropout -> Dense(2, softmax, L2) = (P(cat), P(dog))."""
    features = keras.Input(shape=(feature_dim,), name="features")
    x = keras.layers.Dropout(config.dropout, name="dropout")(features)
    probabilities = keras.layers.Dense(
        2, activation="softmax", kernel_regularizer=keras.regularizers.L2(config.l2), name="probabilities"
    )(x)
    return keras.Model(features, probabilities, name="head")


def full_model(backbone_name: str, backbone: keras.Model, head: keras.Model) -> keras.Model:
    """The product model: raw RGB photo -> preprocessing -> backbone -> GAP -> trained head.

    The head's layers are rebuilt in line (not nested) so that the CAM stage can reach the
    backbone output (the input of layer "gap") and the Dense kernel (layer "probabilities").
    """
    spec = get_spec(backbone_name)
    image = image_input(input_size(backbone))
    x = BackbonePreprocessing(spec.preprocess_mode, name="preprocess")(image)
    x = backbone(x)
    x = keras.layers.GlobalAveragePooling2D(name="gap")(x)
    for layer in head.layers[1:]:
        clone = layer.__class__.from_config(layer.get_config())
        x = clone(x)
        clone.set_weights(layer.get_weights())
    return keras.Model(image, x, name=f"catdog_{spec.name.replace(',', '__')}")


def backbone_weights(feature_set: FeatureSet) -> str:
    """The `weights` argument that rebuilds the backbone the features were computed with
    (for a fusion, one comma-separated entry per backbone)."""
    ids = feature_set.weights.split(",")
    paths = str(feature_set.attrs.get("weights_path", "")).split(",")
    paths += [""] * (len(ids) - len(paths))
    resolved = []
    for wid, path in zip(ids, paths):
        if wid == "imagenet":
            resolved.append(wid)
        elif wid.startswith("file:") and path and Path(path).is_file() and f"file:{sha256_file(path)}" == wid:
            resolved.append(path)
        else:
            raise CatdogError(
                f"the features were computed with weights {wid} ({path or 'no path'}), which are not available "
                "now; extract the features again with the weights you have"
            )
    return ",".join(resolved)


class _EpochBar(keras.callbacks.Callback):
    def __init__(self, total: int, enabled: bool, desc: str = "train head"):
        super().__init__()
        self.bar = tqdm(total=total, unit="epoch", desc=desc, disable=not enabled, dynamic_ncols=True)

    def on_epoch_end(self, epoch, logs=None):
        logs = logs or {}
        self.bar.set_postfix(loss=f"{logs.get('loss', 0):.4f}", val_loss=f"{logs.get('val_loss', 0):.4f}")
        self.bar.update(1)

    def on_train_end(self, logs=None):
        self.bar.close()


@dataclass
class TrainResult:
    head: keras.Model
    history: dict
    train_idx: np.ndarray
    val_idx: np.ndarray
    best_epoch: int


def train_head(feature_set: FeatureSet, config: HeadConfig = HeadConfig(), progress: bool = True) -> TrainResult:
    """Fit the head with Adam and early stopping on validation loss (best weights restored)."""
    labelled = feature_set.labels >= 0
    if labelled.sum() == 0:
        raise CatdogError("no labelled photos in the features: training needs cat.N.jpg/dog.N.jpg names or cat/ dog/ folders")
    if labelled.sum() < len(labelled):
        print(f"train: ignoring {int((~labelled).sum())} unlabelled photos")
    x = feature_set.features[labelled]
    y = feature_set.labels[labelled]
    if len(np.unique(y)) < 2:
        raise CatdogError(f"only {LABELS[int(y[0])]} photos in the features; training needs both cats and dogs")
    train_idx, val_idx = stratified_split(y, config.val_fraction, config.seed)
    keras.utils.set_random_seed(config.seed)
    head, history = _fit(x, y, train_idx, val_idx, config, progress)
    best_epoch = int(np.argmin(history["val_loss"])) + 1
    all_idx = np.flatnonzero(labelled)
    return TrainResult(head, history, all_idx[train_idx], all_idx[val_idx], best_epoch)


def _fit(x, y, train_idx, val_idx, config: HeadConfig, progress: bool) -> tuple[keras.Model, dict]:
    head = build_head(x.shape[1], config)
    head.compile(
        optimizer=keras.optimizers.Adam(config.learning_rate),
        loss="sparse_categorical_crossentropy",
        metrics=["accuracy"],
    )
    stop = keras.callbacks.EarlyStopping(monitor="val_loss", patience=config.patience, restore_best_weights=True)
    fit = head.fit(
        x[train_idx],
        y[train_idx],
        validation_data=(x[val_idx], y[val_idx]),
        epochs=config.max_epochs,
        batch_size=config.batch_size,
        shuffle=True,
        verbose=0,
        callbacks=[stop, _EpochBar(config.max_epochs, progress)],
    )
    return head, {k: [float(v) for v in vs] for k, vs in fit.history.items()}


def cross_validate(feature_set: FeatureSet, k: int, config: HeadConfig = HeadConfig(), progress: bool = True) -> dict:
    """k-fold stratified cross-validation of the head: out-of-fold log loss and accuracy.

    Each fold trains exactly as `train_head` does, with that fold as its validation split.
    """
    labelled = feature_set.labels >= 0
    x, y = feature_set.features[labelled], feature_set.labels[labelled]
    folds = stratified_folds(y, k, config.seed)
    p_dog = np.zeros(len(y))
    for fold in tqdm(range(k), desc=f"{k}-fold cv", unit="fold", disable=not progress):
        tr, va = np.flatnonzero(folds != fold), np.flatnonzero(folds == fold)
        keras.utils.set_random_seed(config.seed)
        head = _fit(x, y, tr, va, config, progress=False)[0]
        p_dog[va] = np.asarray(head(x[va], training=False))[:, 1]
    per_fold = [M.log_loss(y[folds == f], p_dog[folds == f]) for f in range(k)]
    return {"folds": k, **M.summary(y, p_dog), "fold_log_loss": per_fold}


def plot_curves(history: dict, best_epoch: int, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    epochs = np.arange(1, len(history["loss"]) + 1)
    fig, axes = plt.subplots(1, 2, figsize=(11, 4))
    for ax, key, title in ((axes[0], "loss", "loss (cross-entropy + L2)"), (axes[1], "accuracy", "accuracy")):
        ax.plot(epochs, history[key], label="train")
        ax.plot(epochs, history[f"val_{key}"], label="validation")
        ax.axvline(best_epoch, color="grey", linestyle="--", label=f"best epoch {best_epoch}")
        ax.set_xlabel("epoch")
        ax.set_title(title)
        ax.grid(alpha=0.3)
        ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def train_run(
    feature_set: FeatureSet,
    run_dir: str | os.PathLike,
    config: HeadConfig = HeadConfig(),
    features_path: str | None = None,
    cv_folds: int = 0,
    progress: bool = True,
) -> dict:
    """Train the head, assemble the full model, and write the RUN_DIR; returns metrics.json."""
    start = time.perf_counter()
    run_dir = Path(run_dir)
    weights = backbone_weights(feature_set)
    result = train_head(feature_set, config, progress)
    head = result.head
    probs = head.predict(feature_set.features, batch_size=256, verbose=0)
    labels = feature_set.labels
    val, train = result.val_idx, result.train_idx
    p_val = probs[val]

    run_dir.mkdir(parents=True, exist_ok=True)
    image_size = int(feature_set.attrs.get("image_size", IMAGE_SIZE))
    model = full_model(feature_set.backbone, build_backbone(feature_set.backbone, weights, image_size), head)
    model.save(run_dir / "model.keras")
    head.save(run_dir / "head.keras")
    plot_curves(result.history, result.best_epoch, run_dir / "curves.png")
    (run_dir / "history.json").write_text(json.dumps(result.history, indent=1))
    names = feature_set.names
    (run_dir / "split.json").write_text(
        json.dumps({"train": [names[i] for i in train], "validation": [names[i] for i in val]}, indent=1)
    )
    metrics = {
        "backbone": feature_set.backbone,
        "weights": feature_set.weights,
        "image_size": image_size,
        "labels": list(LABELS),
        "seed": config.seed,
        "hyperparameters": {
            "dropout": config.dropout,
            "l2": config.l2,
            "learning_rate": config.learning_rate,
            "batch_size": config.batch_size,
            "max_epochs": config.max_epochs,
            "patience": config.patience,
            "optimizer": "adam",
        },
        "val_fraction": config.val_fraction,
        "epochs": len(result.history["loss"]),
        "best_epoch": result.best_epoch,
        "n_train": int(len(train)),
        "n_val": int(len(val)),
        "n_unlabelled_ignored": int((labels < 0).sum()),
        "n_excluded": int(feature_set.attrs.get("excluded", 0)),
        "data_fingerprint": feature_set.attrs.get("data_fingerprint", ""),
        "features_file": features_path or "",
        "data_dir": str(feature_set.attrs.get("data_dir", "")),
        "train": M.summary(labels[train], probs[train, 1]),
        "val": M.summary(labels[val], p_val[:, 1]),
        "calibration": M.calibration_report(p_val, labels[val], config.seed),
        "cross_validation": cross_validate(feature_set, cv_folds, config, progress) if cv_folds else None,
        "model_sha256": sha256_file(run_dir / "model.keras"),
        "catdog_version": __version__,
        "keras_version": keras.__version__,
        "seconds": round(time.perf_counter() - start, 2),
    }
    (run_dir / "metrics.json").write_text(json.dumps(metrics, indent=2))
    return metrics
