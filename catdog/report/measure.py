"""The report's measurements that need the models: held-out predictions, CAM tiles, latencies."""

from __future__ import annotations

import io
import json
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from catdog.contract import CAM, PROBABILITIES, RunDir

CAM_TILES = 12
TILE_SIDE = 256  # longest side of a CAM tile in the page, pixels


@dataclass
class HeldOut:
    """P(dog) of labelled photos a model did not train on (or, where the run kept none, of its training photos)."""

    names: list[str]
    labels: np.ndarray  # (N,) 0 cat, 1 dog
    p_dog: np.ndarray  # (N,)
    source: str  # how the predictions were made, for the page
    held_out: bool  # False: the photos were trained on (no held-out split in this run)


def _features_path(run_dir: Path, metrics: dict) -> Path | None:
    """The run's own features.h5, else the file metrics.json names (relative to where training ran)."""
    for candidate in (run_dir / "features.h5", metrics.get("features_file")):
        if candidate and Path(candidate).is_file():
            return Path(candidate)
    return None


def held_out_predictions(run_dir: Path, metrics: dict, model=None) -> HeldOut | None:
    """The run's validation photos with their P(dog).

    From head.keras on the cached features where the run has both (instant); else from the full
    model on the photos in data_dir (a fine-tuned run). Without a validation split (e.g. a refit
    on every photo) the training photos are scored instead, and `held_out` says so.
    None when neither features nor photos are at hand.
    """
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


def _head_on_features(features: Path, head: Path, names: list[str]):
    """(names, labels, P(dog)) of `names` (every labelled photo if empty) from the head on the
    cached features; None if the file does not hold them or does not fit the head."""
    import keras

    from catdog.features import load_features

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
    """For each chosen photo: JPEG bytes of its CAM overlay (the predicted class's map), the
    model's P(dog) on the photo, its label and whether the model is right."""
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
        predicted = int(p.argmax())
        photo.thumbnail((TILE_SIDE, TILE_SIDE))
        buffer = io.BytesIO()
        Image.fromarray(overlay(np.asarray(photo), cam[..., predicted])).save(buffer, "JPEG", quality=85)
        label = int(held.labels[i])
        tiles.append(
            {
                "name": held.names[i],
                "jpeg": buffer.getvalue(),
                "label": LABELS[label],
                "predicted": LABELS[predicted],
                "confidence": float(p[predicted]),
                "right": predicted == label,
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
            result[a["file"]] = {"note": f"not run ({type(exc).__name__})"}
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
