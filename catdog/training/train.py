"""Train the Dense(2, softmax) head on cached features and write a RUN_DIR.

The head is an L2 logistic regression fitted to convergence on EVERY labelled (non-excluded)
photo, its L2 strength chosen by K-fold cross-validation on those photos; a nested
cross-validation of that whole procedure estimates its log loss on photos it never saw, with a
bootstrap 95 % interval (see catdog.training.cv). No validation split is held out.

RUN_DIR layout:

    model.keras     full model: raw RGB photo (SxSx3, 0..255; S = --image-size) -> (P(cat), P(dog))
                    layers: image -> preprocess -> backbone -> gap -> dropout -> probabilities
    head.keras      the head alone: (C,) features -> (P(cat), P(dog))
    metrics.json    the nested-CV estimate, the selection, calibration, seed, backbone, data fingerprint
    split.json      names of the training photos (all of them), their CV folds, and the photos
                    later stages use: "parity" (labelled photos to compare artefacts with Keras)
                    and "calibration" (the rest, for int8 calibration); "validation" is empty
    cv_predictions.csv  each photo's nested-CV P(dog) (from a head that never saw it) and fold
    curves.png      CV log loss against the L2 strength: the selection and each outer fold's
"""

from __future__ import annotations

import csv
import json
import os
import time
from dataclasses import dataclass, replace
from pathlib import Path

import keras
import numpy as np
from tqdm import tqdm

from catdog.contract import HEAD_FEATURES, PET, PET_THRESHOLD, PROBABILITIES, RunDir
from catdog import __version__
from catdog.atomic import open_atomic, staged, write_text
from catdog.data import IMAGE_SIZE, LABELS, sha256_file
from catdog.errors import CatdogError
from catdog.features import BackbonePreprocessing, FeatureSet, backbone_names, build_backbone, get_spec, image_input, input_size, view_path
from catdog.training import cv as CV
from catdog.training import metrics as M
from catdog.training.pet import FOLDS as PET_FOLDS, MIN_NEGATIVES, PET_VIEWS, ImagenetTop, PetFit, fit_pet, imagenet_top, pet_head, pet_outputs

PARITY_FRACTION = 0.2  # share of the training photos named for parity (400 of the 2,002 shared photos)


@dataclass(frozen=True)
class HeadConfig:
    l2_grid: tuple[float, ...] = CV.L2_GRID  # L2 strengths CV chooses from (one value: no choice)
    folds: int = 5  # K: the selection's CV folds, and the nested estimate's outer and inner folds
    views: tuple[str, ...] = ()  # also train on these views of each photo (catdog.data.views; needs their features)
    robust: bool = True  # choose l2 by the clean and the shifted CV log loss together (where shifted views are given)
    temperature: bool = False  # fold a temperature, fitted on the CV predictions, into the head
    dropout: float = 0.5  # the full model's dropout layer: only `catdog finetune` trains through it
    dog_prior: bool = True  # the ImageNet top's dog-vs-cat log-odds as one more feature (where the backbone has a top)
    # a fused backbone's head as the mean logit of one head per backbone and one on every column,
    # each with its own l2 (`--late-fusion`); `train_run` sets `parts`. Off by default: better on
    # shifted and group-held-out folds, worse on the two proxies that track unseen photos (README, Robustness)
    late_fusion: bool = False
    parts: tuple = ()  # CV.Options.parts (head_parts), filled in by train_run
    bootstrap: int = 2000  # resamples of photos for the 95 % interval
    seed: int = 0

    @property
    def options(self) -> CV.Options:
        return CV.Options(l2_grid=tuple(self.l2_grid), views=tuple(self.views), temperature=self.temperature, robust=self.robust,
                          parts=self.parts)


def head_parts(backbone: str, n_columns: int, prior: bool) -> tuple:
    """Late fusion's CV.Options.parts for the head's `n_columns` features of `backbone`: each
    backbone's pooled columns (with the prior's, the last, where `prior`), then every column; ()
    for one backbone (nothing to fuse)."""
    names = backbone_names(backbone)
    if len(names) < 2:
        return ()
    parts, start = [], 0
    for name in names:
        stop = start + get_spec(name).feature_dim
        parts.append(((start, stop),) + (((n_columns - 1, n_columns),) if prior else ()))
        start = stop
    return (*parts, ((0, n_columns),))


def stratified_split(labels: np.ndarray, val_fraction: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Seeded split keeping the class ratio: (rest indices, chosen indices), each sorted."""
    if not 0.0 < val_fraction < 1.0:
        raise CatdogError(f"fraction {val_fraction}: must be between 0 and 1 (e.g. 0.2)")
    rng = np.random.default_rng(seed)
    val = []
    for cls in np.unique(labels):
        idx = np.flatnonzero(labels == cls)
        n_val = int(round(len(idx) * val_fraction))
        if n_val < 1 or n_val >= len(idx):
            raise CatdogError(f"class {LABELS[cls]!r} has {len(idx)} photos: too few to split {val_fraction:.0%} off")
        val.extend(rng.choice(idx, n_val, replace=False))
    val = np.sort(np.array(val))
    train = np.setdiff1d(np.arange(len(labels)), val)
    return train, val


def build_head(feature_dim: int, config: HeadConfig = HeadConfig(), l2: float | None = None) -> keras.Model:
    """(C,) features -> dropout -> Dense(2, softmax) = (P(cat), P(dog)).

    l2: Keras' L2 penalty on the Dense kernel, the same penalty the logistic fit used (it only
    acts if `catdog finetune` trains the model further); dropout likewise acts only there.
    """
    features = keras.Input(shape=(feature_dim,), name="features")
    x = keras.layers.Dropout(config.dropout, name="dropout")(features)
    regularizer = keras.regularizers.L2(l2) if l2 else None
    probabilities = keras.layers.Dense(2, activation="softmax", kernel_regularizer=regularizer, name="probabilities")(x)
    return keras.Model(features, probabilities, name="head")


def full_model(backbone_name: str, backbone: keras.Model, head: keras.Model, pet_head: keras.Model) -> keras.Model:
    """The product model: raw RGB photo -> preprocessing -> backbone -> GAP -> trained head, and
    the pooled features -> `pet_head` (catdog.training.pet); outputs {"probabilities", "pet"}.

    The head's layers are rebuilt in line (not nested) so that the CAM stage can reach the
    backbone output (the input of layer "gap") and the Dense kernel (layer "probabilities").
    """
    spec = get_spec(backbone_name)
    image = image_input(input_size(backbone))
    x = BackbonePreprocessing(spec.preprocess_mode, name="preprocess")(image)
    x = backbone(x)
    pooled = keras.layers.GlobalAveragePooling2D(name="gap")(x)
    probabilities, pet = _head_on(pooled, head, pet_head)
    return keras.Model(image, {PROBABILITIES: probabilities, PET: pet}, name=f"catdog_{spec.name.replace(',', '__')}")


def _head_on(pooled, head: keras.Model, pet_head: keras.Model) -> tuple:
    """(probabilities, P(pet)) of pooled features: the pet head, and the trained head's layers
    rebuilt in line on the pooled features and, where the pet head gives it, the ImageNet top's
    dog-vs-cat log-odds as the last feature (layer HEAD_FEATURES)."""
    pet, dog_log_odds = pet_outputs(pet_head, pooled)
    x = pooled if dog_log_odds is None else keras.layers.Concatenate(name=HEAD_FEATURES)([pooled, dog_log_odds])
    for layer in head.layers[1:]:
        clone = layer.__class__.from_config(layer.get_config())
        x = clone(x)
        clone.set_weights(layer.get_weights())
    return x, pet


def pooled_head(feature_dim: int, head: keras.Model, pet_head: keras.Model) -> keras.Model:
    """RUN_DIR/head.keras: (C,) pooled features -> (2,) probabilities, the prior (if any) inside, so
    the cached features score as the full model scores the photos."""
    pooled = keras.Input(shape=(feature_dim,), name="features")
    return keras.Model(pooled, _head_on(pooled, head, pet_head)[0], name="head")


def with_dog_prior(feature_set: FeatureSet, top: ImagenetTop) -> FeatureSet:
    """The head's features: the pooled features and, as one more column, the top's dog-vs-cat
    log-odds (`ImagenetTop.with_dog_log_odds`), as the full model's HEAD_FEATURES layer joins them."""
    return replace(feature_set, features=top.with_dog_log_odds(feature_set.features))


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
        key = "log_loss" if "val_log_loss" in logs else "loss"  # what the epoch is chosen by, as the summary prints it
        self.bar.set_postfix({key: f"{logs.get(key, 0):.4f}", f"val_{key}": f"{logs.get(f'val_{key}', 0):.4f}"})
        self.bar.update(1)

    def on_train_end(self, logs=None):
        self.bar.close()


def head_model(logistic: CV.Logistic, config: HeadConfig = HeadConfig(), l2: float | None = None) -> keras.Model:
    """The Keras head holding a fitted logistic regression: softmax(W f + b) with W = [-w/2, w/2],
    b = [-b0/2, b0/2], so P(dog) = sigmoid(w . f + b0) exactly as fitted."""
    head = build_head(len(logistic.w), config, l2)
    w = np.asarray(logistic.w, np.float32)
    head.get_layer("probabilities").set_weights(
        [np.stack([-w / 2, w / 2], 1), np.array([-logistic.b / 2, logistic.b / 2], np.float32)]
    )
    return head


@dataclass
class TrainResult:
    head: keras.Model  # the shipped head, fitted on every photo of `train_idx`
    logistic: CV.Logistic
    selection: CV.Selection  # how its settings were chosen (K-fold CV on the same photos)
    train_idx: np.ndarray  # rows of the feature set that trained it: every labelled, non-excluded photo


def _labelled(feature_set: FeatureSet, report: bool = True) -> np.ndarray:
    """Rows of the labelled photos (the unlabelled ones are said once and skipped)."""
    labelled = feature_set.labels >= 0
    if labelled.sum() == 0:
        raise CatdogError("no labelled photos in the features: training needs cat.N.jpg/dog.N.jpg names or cat/ dog/ folders")
    if labelled.sum() < len(labelled) and report:
        print(f"train: ignoring {int((~labelled).sum())} unlabelled photos")
    y = feature_set.labels[labelled]
    if len(np.unique(y)) < 2:
        raise CatdogError(f"only {LABELS[int(y[0])]} photos in the features; training needs both cats and dogs")
    return np.flatnonzero(labelled)


def photo_rows(feature_set: FeatureSet, rows: np.ndarray, view: FeatureSet) -> np.ndarray:
    """Each row of a view's features: the position of its photo in `rows` (the training photos of
    `feature_set`), -1 for a photo not among them. Matched by cache key (name, size, mtime) where
    both files have them: a view of a photo since replaced under the same name is not its view."""
    if feature_set.keys and view.keys:
        at = {key: i for i, key in enumerate(feature_set.keys[r] for r in rows)}
        return np.array([at.get(k, -1) for k in view.keys], int)
    at = {name: i for i, name in enumerate(feature_set.names[r] for r in rows)}
    return np.array([at.get(n, -1) for n in view.names], int)


def _data(feature_set: FeatureSet, rows: np.ndarray, views: dict[str, FeatureSet] | None, config: HeadConfig) -> CV.Data:
    """The training data of photos `rows`: with each view file's features, as training rows (the
    views `config.views` names, which must hold every photo) or as shifted photos to score."""
    views = views or {}
    train_views, shifted = {}, {}
    for view in config.views:
        if view not in views:
            raise CatdogError(f"training on view {view!r} needs its features; extract them with `catdog features DATA --out FEATURES.h5 --view {view}` (FEATURES.h5: the photos' file; the view goes to views/{view}.h5 beside it)")
    for view, held in views.items():  # each extracted as the photos were (check_views, in train_run)
        where = photo_rows(feature_set, rows, held)
        keep = where >= 0  # photos left out of training (excluded, unlabelled) are neither trained on nor scored
        if view in config.views:
            if len(set(where[keep])) != len(rows):
                raise CatdogError(f"the {view} view's features lack {len(rows) - len(set(where[keep]))} of the photos; "
                                  f"extract them again from the same DATA (`catdog features DATA --out FEATURES.h5 --view {view}` (FEATURES.h5: the photos' file; the view goes to views/{view}.h5 beside it))")
            x = np.empty((len(rows), held.features.shape[1]), held.features.dtype)
            x[where[keep]] = held.features[keep]
            train_views[view] = x
        shifted[view] = (where[keep], held.features[keep])
    return CV.Data(feature_set.features[rows], feature_set.labels[rows], train_views, shifted=shifted)


def train_head(
    feature_set: FeatureSet, config: HeadConfig = HeadConfig(), views: dict[str, FeatureSet] | None = None, progress: bool = True
) -> TrainResult:
    """Choose the settings by K-fold CV on every labelled photo, then fit the head on all of them."""
    rows = _labelled(feature_set)
    data = _data(feature_set, rows, views, config)
    everyone = np.arange(len(rows))
    selection = CV.select(data, everyone, config.options, config.folds, config.seed, workers=CV.default_workers())
    logistic = CV.fit(data, everyone, config.options, selection.head_l2)
    if config.temperature:  # dividing the logit by T is a rescaled logistic regression
        logistic = CV.Logistic(logistic.w / selection.temperature, logistic.b / selection.temperature)
    return TrainResult(head_model(logistic, config, selection.l2), logistic, selection, rows)


def nested_estimate(
    feature_set: FeatureSet, config: HeadConfig = HeadConfig(), views: dict[str, FeatureSet] | None = None, progress: bool = True
) -> tuple[dict, CV.NestedCV, np.ndarray, CV.Data]:
    """The nested-CV estimate of `train_head`'s log loss on unseen photos: (summary, folds, rows, data)."""
    rows = _labelled(feature_set, report=False)
    data = _data(feature_set, rows, views, config)
    with tqdm(total=config.folds, desc="nested cv", unit="fold", disable=not progress) as bar:
        result = CV.nested_cv(data, config.options, config.folds, config.folds, config.seed, on_fold=lambda: bar.update(1))
    summary = CV.estimate(data.y, result.p_dog, result.folds, config.bootstrap, config.seed)
    summary["chosen_l2"] = [r.selection.l2 for r in result.records]
    if config.temperature:
        summary["chosen_temperature"] = [r.selection.temperature for r in result.records]
    return summary, result, rows, data


def robustness(data: CV.Data, nested: CV.NestedCV, config: HeadConfig, l2: float | tuple, pooled: np.ndarray | None = None) -> dict:
    """metrics.json's "robustness": log loss and accuracy of held-out photos as they are (the nested
    CV), under each shifted view (the same heads: each photo scored by the outer fold's head that
    held it out) and under group-held-out folds (k-means clusters of each class, at the chosen l2)."""
    from catdog.data import VIEWS

    rows = [{"name": "clean", "kind": "clean", "what": "the photos as they are", **M.summary(data.y, nested.p_dog)}]
    for name, (labels, p) in CV.shifted_scores(data, nested).items():
        if len(labels):
            rows.append({"name": name, "kind": "shift", "what": VIEWS[name][0], **M.summary(labels, p)})
    # clustered on the pooled features (`pooled`, where the head's features add the prior's column:
    # one column that would steer the L2-normalised clusters and make the folds another set)
    groups = CV.group_folds(data.x if pooled is None else pooled, data.y, config.folds, config.seed)
    p_groups = CV.fold_predictions(data, config.options, groups, l2)
    rows.append({"name": "groups", "kind": "group", "what": f"{config.folds} group-held-out folds (k-means clusters of each class)",
                 **M.summary(data.y, p_groups)})
    keep = ("name", "kind", "what", "n", "log_loss", "accuracy")
    rows = [{k: r[k] for k in keep} for r in rows]
    shifts = [r["log_loss"] for r in rows if r["kind"] == "shift"]
    return {
        "method": f"held-out photos only: the nested CV's {config.folds} outer folds score each photo as it is and each "
        f"shifted view of it (views of a seeded subset); group folds: {config.folds} k-means clusters per class held out "
        f"in turn, head at the chosen l2",
        "rows": rows,
        # the figure: the mean of the shifted folds' mean and the group-held-out folds'
        "mean_shifted": float((np.mean(shifts) + rows[-1]["log_loss"]) / 2) if shifts else float(rows[-1]["log_loss"]),
    }


def _extraction(fs: FeatureSet) -> tuple:
    """What makes two feature files comparable: backbone, input size and weights."""
    return fs.backbone, fs.attrs.get("image_size"), fs.weights


def check_views(feature_set: FeatureSet, views: dict[str, FeatureSet] | None, features_path: str | None = None) -> None:
    """Raise the one-line error for a view file extracted otherwise than the photos' (a view left
    beside FEATURES.h5 by an earlier --backbone or --image-size): checked before any training."""
    for view, held in (views or {}).items():
        if _extraction(held) != _extraction(feature_set):
            (b, s, w), (fb, fs_, fw) = _extraction(held), _extraction(feature_set)
            features = features_path or "FEATURES.h5"
            # the view's own file: --view into it again is refused while it holds the other settings' rows
            raise CatdogError(f"the {view} view's features are {b} at {s}px ({w} weights), not the photos' {fb} at {fs_}px ({fw}); "
                              f"delete {view_path(features, view)}, then extract it with the photos' settings: "
                              f"`catdog features DATA --out {features} --view {view}`")


def check_negatives(feature_set: FeatureSet, negatives: FeatureSet | None) -> None:
    """Raise the one-line error for negatives the pet detector cannot use: extracted otherwise than
    the photos (backbone, input size, weights), holding training photos (the same feature rows,
    from any folder) or photos named as cats or dogs, or too few for its nested CV (checked before
    any training)."""
    if negatives is not None and _extraction(negatives) != _extraction(feature_set):
        (b, s, w), (fb, fs_, fw) = _extraction(negatives), _extraction(feature_set)
        raise CatdogError(
            f"the negatives' features are {b} at {s} ({w} weights), the photos' {fb} at {fs_} ({fw}); "
            "extract both with the same --backbone, --image-size and --weights"
        )
    if negatives is None:
        return
    where = negatives.attrs.get("data_dir", "?")
    same_dir = negatives.attrs.get("data_dir") and negatives.attrs.get("data_dir") == feature_set.attrs.get("data_dir")
    # the same photo, extracted alike, gives the same row: found by a hash of each row, then compared
    index = {hash(row.tobytes()): i for i, row in enumerate(feature_set.features)}
    shared = sum(i is not None and np.array_equal(row, feature_set.features[i])
                 for row in negatives.features for i in [index.get(hash(row.tobytes()))])
    if same_dir:
        shared = max(shared, len(set(negatives.names) & set(feature_set.names)))
    check_negative_counts(len(negatives.names), shared, int((negatives.labels >= 0).sum()), where)


def check_negative_counts(n: int, shared: int, named: int, where: str) -> None:
    """The one-line error for `n` negatives of which `shared` are training photos and `named` are
    named as cats or dogs, or too few for the pet detector's nested CV; `where`: their folder."""
    if shared:
        raise CatdogError(
            f"--negatives: {shared} of its {n} photos are training photos themselves ({where}); "
            "give the features of a folder of photos with no cat or dog (e.g. ../shared/data/not-pets)"
        )
    if named:
        raise CatdogError(
            f"--negatives: {named} of its photos are named as cats or dogs ({where}: cat.N.jpg/dog.N.jpg or cat/ dog/ folders); "
            "give the features of a folder of photos with no cat or dog"
        )
    if 0 < n < MIN_NEGATIVES:
        raise CatdogError(
            f"--negatives: {n} usable photos with neither cat nor dog in {where}; "
            f"the neither detector's nested {PET_FOLDS}-fold CV needs at least {MIN_NEGATIVES} (a hundred or more of everyday "
            "scenes measure it well): add photos or leave --negatives out"
        )


def train_pet(
    feature_set: FeatureSet, rows: np.ndarray, negatives: FeatureSet | None, top: ImagenetTop | None, note: str, seed: int,
    views: dict[str, FeatureSet] | None = None,
) -> PetFit:
    """Fit the pet detector on the training photos' features and the negatives' (`check_negatives`d),
    and on the views of PET_VIEWS among `views` (`train_run`'s); `top`, `note`: `imagenet_top` of the backbone."""
    pet_views = {}
    for view in (v for v in PET_VIEWS if v in (views or {})):
        where = photo_rows(feature_set, rows, views[view])
        trained = where >= 0  # photos left out of training give no view either
        pet_views[view] = (where[trained], views[view].features[trained])
    fit = fit_pet(feature_set.features[rows], None if negatives is None else negatives.features, top, seed, pet_views)
    fit.estimate["offset"] = note
    return fit


def plot_selection(selection: CV.Selection, nested: CV.NestedCV, path: Path) -> None:
    """CV log loss against l2: the shipped selection (solid) and each outer fold's (thin)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6.5, 4))
    for i, record in enumerate(nested.records):
        grid = sorted(record.selection.cv_log_loss)
        ax.plot(grid, [record.selection.cv_log_loss[g] for g in grid], color="grey", lw=0.8, alpha=0.7,
                label="inner CV of each outer fold" if i == 0 else None)
    grid = sorted(selection.cv_log_loss)
    ax.plot(grid, [selection.cv_log_loss[g] for g in grid], "o-", color="C0", label="CV on every photo (the selection)")
    ax.axvline(selection.l2, color="C1", ls="--", label=f"chosen l2 {selection.l2:g}")
    ax.set_xscale("log")
    ax.set_xlabel("l2 (penalty l2/2 ||w||^2 on the mean log loss)")
    ax.set_ylabel("cross-validated log loss")
    ax.grid(alpha=0.3)
    ax.legend()
    fig.tight_layout()
    with staged(path) as tmp:
        fig.savefig(tmp, dpi=110)
    plt.close(fig)


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
    with staged(path) as tmp:
        fig.savefig(tmp, dpi=110)
    plt.close(fig)


def save_model(model: keras.Model, path: Path) -> None:
    """`model.save`, atomically (the temporary name keeps the .keras suffix Keras asks for), as
    `stable_keras_archive` bytes."""
    with staged(path) as tmp:
        model.save(tmp)
        stable_keras_archive(tmp)


def stable_keras_archive(path: Path) -> None:
    """Rewrite a .keras file so one model always makes the same bytes, and so the same sha256 that
    every artefact records: Keras writes the save time (metadata.json's date_saved, and each zip
    entry's time) and Python object ids (config.json's shared_object_id, which only pair the
    references to one shared object) into it. Here the date is left out, the entries dated
    1980-01-01 (the zip format's first day) and the ids numbered 1, 2, ... in order of appearance."""
    import zipfile

    ids: dict[int, int] = {}

    def renumbered(node):
        if isinstance(node, dict):
            if "shared_object_id" in node:
                node["shared_object_id"] = ids.setdefault(node["shared_object_id"], len(ids) + 1)
            for value in node.values():
                renumbered(value)
        elif isinstance(node, list):
            for value in node:
                renumbered(value)
        return node

    with zipfile.ZipFile(path) as archive:
        entries = [(info, archive.read(info)) for info in archive.infolist()]
    with zipfile.ZipFile(path, "w") as archive:
        for info, data in entries:
            if info.filename == "config.json":
                data = json.dumps(renumbered(json.loads(data))).encode()
            elif info.filename == "metadata.json":
                data = json.dumps({k: v for k, v in json.loads(data).items() if k != "date_saved"}).encode()
            entry = zipfile.ZipInfo(info.filename, date_time=(1980, 1, 1, 0, 0, 0))
            entry.external_attr, entry.compress_type = info.external_attr, info.compress_type
            archive.writestr(entry, data)


def photo_sets(names: list[str], labels: np.ndarray, folds: np.ndarray, seed: int) -> dict:
    """split.json: every training photo with its CV fold, and the photos later stages use.

    "parity": a seeded, class-stratified 20 % of the training photos (400 of 2,002) on which
    parity compares the artefacts with Keras (training photos: parity measures agreement, not
    held-out accuracy); "calibration": the others, from which int8 export draws its calibration
    photos, so the two never overlap. "validation" is empty: every labelled photo trains.
    """
    rest, parity = stratified_split(labels, PARITY_FRACTION, seed)
    return {
        "train": list(names),
        "validation": [],
        "folds": [int(f) for f in folds],
        "parity": [names[i] for i in parity],
        "calibration": [names[i] for i in rest],
    }


def train_run(
    feature_set: FeatureSet,
    run_dir: str | os.PathLike,
    config: HeadConfig = HeadConfig(),
    features_path: str | None = None,
    views: dict[str, FeatureSet] | None = None,
    progress: bool = True,
    negatives: FeatureSet | None = None,
) -> dict:
    """Choose the settings by CV, fit the head on every photo, estimate it by nested CV, fit the
    pet detector (with `negatives`: features of photos with neither cat nor dog), assemble the
    full model, and write the RUN_DIR; returns metrics.json. views: view name -> the features of
    the photos as seen by it (catdog.data.views): `config.views` train, every one is scored."""
    start = time.perf_counter()
    run_dir = Path(run_dir)
    CV.check_nested(feature_set.labels[_labelled(feature_set, report=False)], config.folds, config.folds)
    if config.late_fusion and len(backbone_names(feature_set.backbone)) < 2:  # was ignored without a word
        raise CatdogError(f"--late-fusion: fuses the heads of several backbones, and the features are {feature_set.backbone} alone; "
                          "extract them with --backbone mobilenet,mobilenet_v2, or leave it out")
    check_negatives(feature_set, negatives)
    check_views(feature_set, views, features_path)
    weights = backbone_weights(feature_set)
    top, top_note = imagenet_top(feature_set.backbone, feature_set.weights)
    prior = config.dog_prior and top is not None
    head_set = with_dog_prior(feature_set, top) if prior else feature_set
    head_views = {v: with_dog_prior(fs, top) for v, fs in (views or {}).items()} if prior else views
    if config.late_fusion:
        config = replace(config, parts=head_parts(feature_set.backbone, head_set.features.shape[1], prior))
    result = train_head(head_set, config, head_views, progress)
    estimate, nested, rows, data = nested_estimate(head_set, config, head_views, progress)
    robust = robustness(data, nested, config, result.selection.head_l2, feature_set.features[rows])
    names = [feature_set.names[i] for i in rows]
    labels = feature_set.labels[rows]
    p_train = result.logistic.p_dog(head_set.features[rows])

    run_dir.mkdir(parents=True, exist_ok=True)
    image_size = int(feature_set.attrs.get("image_size", IMAGE_SIZE))
    pet = train_pet(feature_set, rows, negatives, top, top_note, config.seed, views)
    pet_model = pet_head(feature_set.features.shape[1], pet, dog_prior=prior)
    model = full_model(feature_set.backbone, build_backbone(feature_set.backbone, weights, image_size), result.head, pet_model)
    save_model(model, run_dir / RunDir.MODEL)
    save_model(pooled_head(feature_set.features.shape[1], result.head, pet_model), run_dir / RunDir.HEAD)
    plot_selection(result.selection, nested, run_dir / "curves.png")
    write_text(run_dir / "split.json", json.dumps(photo_sets(names, labels, nested.folds, config.seed), indent=1))
    with open_atomic(run_dir / RunDir.CV_PREDICTIONS, "w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(["file", "label", "fold", "p_dog"])
        writer.writerows((n, int(y), int(k), f"{p:.6f}") for n, y, k, p in zip(names, labels, nested.folds, nested.p_dog))
    if not pet.estimate.get("nested_pet"):
        (run_dir / RunDir.PET_PREDICTIONS).unlink(missing_ok=True)  # an earlier run's, into this RUN_DIR
    else:  # each photo's P(pet) from a detector and threshold that never saw it
        pet_names = [(n, "pet") for n in names] + [(n, "neither") for n in (negatives.names if negatives is not None else [])]
        with open_atomic(run_dir / RunDir.PET_PREDICTIONS, "w", newline="") as f:
            writer = csv.writer(f)
            writer.writerow(["file", "kind", "p_pet", "kept", "threshold"])  # threshold: the photo's outer fold's, which decided `kept`
            writer.writerows(
                (n, kind, f"{q:.6f}", int(k), f"{t:.6f}")
                for (n, kind), q, k, t in zip(pet_names, pet.estimate["nested_pet"], pet.estimate["nested_kept"], pet.estimate["nested_threshold"])
            )
    oof = result.selection.oof_p_dog
    calibration = M.calibration_report(M.cat_dog(oof), labels, config.seed)
    calibration["source"] = f"out-of-fold predictions of the {config.folds}-fold CV that chose l2 (not the nested estimate)"
    if config.temperature:  # already folded into the head: --calibrated must not apply it twice
        calibration["folded_into_head"], calibration["temperature"] = result.selection.temperature, 1.0
    metrics = {
        "backbone": feature_set.backbone,
        "weights": feature_set.weights,
        "image_size": image_size,
        "labels": list(LABELS),
        "seed": config.seed,
        "head": {
            "fit": "L2 logistic regression to convergence (scikit-learn L-BFGS), as Dense(2, softmax)",
            "penalty": "mean log loss + l2/2 ||w||^2",
            "l2": result.selection.l2,
            "l2_grid": list(config.l2_grid),
            "folds": config.folds,
            "views": list(config.views),
            "robust": bool(config.robust and data.shifted),
            "temperature": config.temperature,
            "dropout": config.dropout,
            # the last feature: the ImageNet top's dog-vs-cat log-odds (with_dog_prior), or why not
            "dog_prior": f"{top_note}: log P(dog breeds) - log P(cat classes)" if prior else (
                "off (HeadConfig.dog_prior)" if top is not None else f"none: {top_note}"),
            # the head's logit: the mean of one head's per part (columns [start, stop)), each at its l2; l2 above: the last's
            "late_fusion": {"parts": [[list(r) for r in part] for part in config.parts], "l2": list(result.selection.part_l2)}
            if config.parts else None,
        },
        "n_train": int(len(rows)),
        "n_val": 0,
        "n_unlabelled_ignored": int((feature_set.labels < 0).sum()),
        "n_excluded": int(feature_set.attrs.get("excluded", 0)),
        "data_fingerprint": feature_set.attrs.get("data_fingerprint", ""),
        "features_file": features_path or "",
        "data_dir": str(feature_set.attrs.get("data_dir", "")),
        "estimate": {
            "method": f"nested cross-validation: {config.folds} outer folds; l2 chosen by {config.folds}-fold CV inside "
            "each outer fold's training photos; each photo scored once by a head that never saw it; "
            f"95 % interval: bootstrap over photos ({config.bootstrap} resamples)",
            **estimate,
        },
        "selection": {
            "method": f"{config.folds}-fold CV on every training photo"
            + (", by the mean of the clean and the shifted out-of-fold log loss" if config.robust and data.shifted else ""),
            "cv_log_loss": {f"{k:g}": v for k, v in sorted(result.selection.cv_log_loss.items())},
            "clean_log_loss": {f"{k:g}": v for k, v in sorted(result.selection.clean_log_loss.items())},
            "shifted_log_loss": {f"{k:g}": v for k, v in sorted(result.selection.shifted_log_loss.items())},
            "l2": result.selection.l2,
            "log_loss": result.selection.log_loss,
        },
        "train": M.summary(labels, p_train),
        PET: {
            "threshold": pet.threshold,
            "imagenet_top": pet.top.branch if pet.top else None,
            "negatives_dir": str(negatives.attrs.get("data_dir", "")) if negatives is not None else "",
            **{k: v for k, v in pet.estimate.items() if k not in ("nested_pet", "nested_kept", "nested_threshold")},
        },
        PET_THRESHOLD: pet.threshold,
        "calibration": calibration,
        "robustness": robust,
        "model_sha256": sha256_file(run_dir / RunDir.MODEL),
        "catdog_version": __version__,
        "keras_version": keras.__version__,
        "seconds": round(time.perf_counter() - start, 2),
    }
    write_text(run_dir / RunDir.METRICS, json.dumps(metrics, indent=2))
    return metrics
