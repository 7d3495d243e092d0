"""The report's measurements that need the models: held-out predictions, CAM tiles, latencies."""

from __future__ import annotations

import csv
import io
import json
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from catdog.contract import CAM, PROBABILITIES, RunDir
from catdog.errors import CatdogError

CAM_TILES = 12
TILE_SIDE = 256  # longest side of a CAM tile in the page, pixels
OUT_OF_FOLD_SOURCE = "nested cross-validation: each photo scored by a head fitted without it"


@dataclass
class HeldOut:
    """P(dog) of labelled photos a model did not train on (or, where the run kept none, of its training photos)."""

    names: list[str]
    labels: np.ndarray  # (N,) 0 cat, 1 dog
    p_dog: np.ndarray  # (N,)
    source: str  # how the predictions were made, for the page
    held_out: bool  # False: the photos were trained on (no held-out split in this run)
    out_of_fold: bool = False  # True: each P(dog) from the nested CV (cv_predictions.csv), not from the shipped model


def _features_path(run_dir: Path, metrics: dict) -> Path | None:
    """The run's own features.h5, else the file metrics.json names (relative to where training ran)."""
    for candidate in (run_dir / "features.h5", metrics.get("features_file")):
        if candidate and Path(candidate).is_file():
            return Path(candidate)
    return None


def held_out_predictions(run_dir: Path, metrics: dict, model=None) -> HeldOut | None:
    """Labelled photos of the run with a P(dog) from a model that did not train on them, where the run has one.

    First choice: every photo's out-of-fold P(dog) from the nested CV (RUN_DIR/cv_predictions.csv;
    `out_of_fold` and `held_out` True). A fine-tuned run skips it: those predictions are of the
    head it started from, not of its own model. Without a readable file: the validation photos,
    from head.keras on the cached features where the run has both (instant), else from the full
    model on the photos in data_dir (a fine-tuned run). Without a validation split either, the
    training photos are scored instead, and `held_out` says so (False).
    None when neither features nor photos are at hand.
    """
    if metrics.get("finetuned_from") is None:
        oof = out_of_fold_predictions(Path(run_dir) / RunDir.CV_PREDICTIONS)
        if oof is not None:
            return oof
    split = _read_split(run_dir)
    names = split.get("validation") or split.get("train") or []
    held_out = bool(split.get("validation"))
    features, head = _features_path(run_dir, metrics), run_dir / RunDir.HEAD
    if features is not None and head.is_file() and metrics.get("finetuned_from") is None:
        found = _head_on_features(features, head, names)
        if found is not None:
            wanted, labels, p_dog = found
            source = "head.keras on the cached features" + ("" if held_out else " (no validation split: training photos)")
            return HeldOut(wanted, labels, p_dog, source, held_out)
    samples = _samples(metrics, names)
    if not samples or model is None:
        return None
    from catdog.training import predict_images

    predictions = predict_images(model, samples, progress=False)
    labels = np.array([s.label for s in predictions.samples])
    return HeldOut([s.name for s in predictions.samples], labels, predictions.probabilities[:, 1], "the full model on the photos", held_out)


def out_of_fold_predictions(path: Path) -> HeldOut | None:
    """The nested CV's P(dog) of every photo from a cv_predictions.csv (header file,label,fold,p_dog),
    in file order; None where the file is missing, empty or malformed in any row (a missing
    column or field, a label other than 0/1, a P(dog) outside [0, 1]): the report then falls back."""
    try:
        with open(path, newline="") as f:
            rows = list(csv.DictReader(f))
        names = [r["file"] for r in rows]
        labels = np.array([int(r["label"]) for r in rows], dtype=int)
        p_dog = np.array([float(r["p_dog"]) for r in rows], dtype=float)
    except (OSError, csv.Error, UnicodeDecodeError, KeyError, TypeError, ValueError):
        return None  # KeyError: a missing column; TypeError: a short row (DictReader fills in None)
    if not rows or not all(names) or not np.isin(labels, (0, 1)).all() or not ((p_dog >= 0) & (p_dog <= 1)).all():
        return None  # (p_dog >= 0) is False for NaN too
    return HeldOut(names, labels, p_dog, OUT_OF_FOLD_SOURCE, held_out=True, out_of_fold=True)


def _head_on_features(features: Path, head: Path, names: list[str]):
    """(names, labels, P(dog)) of `names` (every labelled photo if empty) from the head on the
    cached features; None if the file does not hold them or does not fit the head."""
    import keras

    from catdog.features import load_features
    from catdog.training import pet as _pet_layers  # noqa: F401  (registers the pet head's layers, which head.keras holds)

    try:
        feature_set = load_features(features)
        model = keras.models.load_model(head)
    except Exception:  # unreadable or foreign: the caller falls back to the photos
        return None
    row = {n: i for i, n in enumerate(feature_set.names)}
    wanted = [n for n in names if n in row] if names else [n for n, y in zip(feature_set.names, feature_set.labels) if y >= 0]
    if not wanted or len(wanted) < len(names) or feature_set.features.shape[1] != model.input_shape[-1]:
        return None
    idx = np.array([row[n] for n in wanted])
    probs = np.asarray(model.predict(feature_set.features[idx], batch_size=512, verbose=0))
    return wanted, feature_set.labels[idx].astype(int), probs[:, 1]


def _read_split(run_dir: Path) -> dict:
    try:
        split = json.loads((run_dir / "split.json").read_text())
    except (OSError, ValueError):
        return {}
    return split if isinstance(split, dict) else {}


def _samples(metrics: dict, names: list[str]):
    """The labelled photos of `names` in the run's data_dir, where they still are."""
    data_dir = metrics.get("data_dir")
    if not data_dir or not Path(data_dir).is_dir():
        return []
    from catdog.data import scan

    wanted = set(names)
    return [s for s in scan(data_dir)[0] if s.label is not None and (not wanted or s.name in wanted)]


def pick_cam_photos(held: HeldOut, n: int = CAM_TILES) -> list[int]:
    """Indices of up to `n` photos for the CAM grid: the worst mistakes (up to half), then right
    answers spread from the most to the least confident, so the grid shows both."""
    predicted = (held.p_dog >= 0.5).astype(int)
    p_true = np.where(held.labels == 1, held.p_dog, 1 - held.p_dog)
    wrong = [int(i) for i in np.argsort(p_true) if predicted[i] != held.labels[i]][: n // 2]
    right = [int(i) for i in np.argsort(-p_true) if predicted[i] == held.labels[i]]
    take = n - len(wrong)
    if len(right) > take:
        right = [right[int(round(k))] for k in np.linspace(0, len(right) - 1, take)]
    return wrong + right


def cam_tiles(model, held: HeldOut, data_dir: str, indices: list[int]) -> list[dict]:
    """For each chosen photo (a photo that cannot be read is left out): its label; the class
    `held` predicts, that prediction's confidence and P(dog), and whether it is right; and JPEG
    bytes of the photo with `model`'s CAM for that class over it, with `model`'s own P(dog).

    Right, wrong and confidence are `held`'s (out-of-fold where it is): the shipped model was
    fitted on every photo, so its own answer on them would hide the mistakes."""
    from PIL import Image

    from catdog.cam import cam_model, overlay
    from catdog.data import LABELS, ImageError, open_rgb, resize
    from catdog.features import input_size

    photos, kept = [], []
    for i in indices:
        try:
            photos.append(open_rgb(Path(data_dir) / held.names[i]))
            kept.append(i)
        except (ImageError, OSError):
            continue
    if not photos:
        return []
    size = input_size(model)
    out = cam_model(model).predict_on_batch(np.stack([resize(p, size) for p in photos]).astype(np.float32))
    probs, cams = np.asarray(out[PROBABILITIES]), np.asarray(out[CAM])
    tiles = []
    for photo, i, p, cam in zip(photos, kept, probs, cams):
        p_dog = float(held.p_dog[i])
        predicted, label = int(p_dog >= 0.5), int(held.labels[i])  # the same threshold as pick_cam_photos
        photo.thumbnail((TILE_SIDE, TILE_SIDE))
        buffer = io.BytesIO()
        Image.fromarray(overlay(np.asarray(photo), cam[..., predicted])).save(buffer, "JPEG", quality=85)
        tiles.append(
            {
                "name": held.names[i],
                "jpeg": buffer.getvalue(),
                "label": LABELS[label],
                "predicted": LABELS[predicted],
                "confidence": p_dog if predicted else 1 - p_dog,
                "p_dog": p_dog,
                "right": predicted == label,
                "model_p_dog": float(p[1]),
            }
        )
    return tiles


def latencies(art_dir: Path, manifest: dict, image: np.ndarray, runs: int = 15, warmup: int = 3) -> dict[str, dict]:
    """Single-photo latency of each TFLite and ONNX artefact on this machine (its `catdog.runtime`
    model on every core): median and 90th percentile of `runs` calls after `warmup`, in ms
    ({file: {...}}). Core ML runs on macOS only."""
    x = np.ascontiguousarray(image, np.float32)
    result = {}
    for a in manifest.get("artefacts", []):
        path = Path(art_dir) / a.get("file", "")
        if a.get("format") == "coreml":
            result[a["file"]] = {"note": "macOS only"}
            continue
        try:
            model = _runner(a.get("format"), path)
            if model is None:
                continue
            for _ in range(warmup):
                model(x)
            times = []
            for _ in range(runs):
                start = time.perf_counter()
                model(x)
                times.append((time.perf_counter() - start) * 1000)
            result[a["file"]] = {"median_ms": float(np.median(times)), "p90_ms": float(np.percentile(times, 90)), "runs": runs}
        except Exception as exc:  # a broken artefact is parity's verdict to give; here it only has no latency
            why = "missing" if not path.exists() else str(exc).removeprefix(f"{path}: ") if isinstance(exc, CatdogError) else type(exc).__name__
            result[a["file"]] = {"note": f"not run ({why})"}
    return result


def _runner(fmt: str, path: Path):
    """The runtime model of a TFLite or ONNX artefact (every core); None for other formats."""
    if fmt not in ("tflite", "onnx"):
        return None
    from catdog.runtime import open_model

    return open_model(path)


def keras_latency(model, image: np.ndarray, runs: int = 15, warmup: int = 3) -> dict:
    """The same single-photo timing for the Keras model (predict_on_batch), as the reference row."""
    x = image[None].astype(np.float32)
    for _ in range(warmup):
        model.predict_on_batch(x)
    times = []
    for _ in range(runs):
        start = time.perf_counter()
        model.predict_on_batch(x)
        times.append((time.perf_counter() - start) * 1000)
    return {"median_ms": float(np.median(times)), "p90_ms": float(np.percentile(times, 90)), "runs": runs}
