"""Load a RUN_DIR and run its full model on photos: evaluation, predictions, Kaggle submissions."""

from __future__ import annotations

import csv
import json
import os
import zipfile
from dataclasses import dataclass
from pathlib import Path

import keras
import numpy as np
from tqdm import tqdm

from catdog.contract import LABELS, MANIFEST, PET, PET_THRESHOLD, PROBABILITIES, RunDir, exported_from, owned_file, verdict
from catdog.training import pet as _pet_layers  # noqa: F401  (registers the pet head's layers for load_model)
from catdog.atomic import open_atomic
from catdog.features import input_size  # importing catdog.features registers BackbonePreprocessing for loading
from catdog.data import MAX_PIXELS, Rejection, Sample, iter_batches, natural_key, sha256_file
from catdog.errors import CatdogError
from catdog.training import metrics as M


@dataclass
class Run:
    """A trained RUN_DIR: its full Keras model and its metrics.json. (Or, from `load_scorer`, an
    exported artefact: `model` its catdog.runtime Model, `metrics` the manifest's threshold.)"""

    path: Path
    model: keras.Model
    metrics: dict
    artefact: bool = False

    @property
    def temperature(self) -> float:
        return float(self.metrics.get("calibration", {}).get("temperature", 1.0))

    @property
    def pet_threshold(self) -> float:
        """P(pet) under which the answer is "neither" (chosen by `catdog train`)."""
        return float(self.metrics[PET_THRESHOLD])


def load_run(run_dir: str | os.PathLike) -> Run:
    run_dir = Path(run_dir)
    model_path = run_dir / RunDir.MODEL
    if run_dir.is_file() and run_dir.name == MANIFEST and owned_file(run_dir):  # its ART_DIR's own line: the run, or an artefact
        return load_run(run_dir.parent)
    if run_dir.is_file() and (owner := owned_file(run_dir)):  # run/model.keras
        raise CatdogError(f"{run_dir} is {owner}; give the folder, {run_dir.parent}")
    if run_dir.is_file():  # an artefact renamed (model.bin), a photo: it said "no such RUN_DIR" of a file that is there
        raise CatdogError(f"{run_dir}: a file, neither a RUN_DIR nor a catdog artefact (.tflite, .onnx, .mlpackage); "
                          "give the RUN_DIR or an artefact under its exported name")
    if not run_dir.is_dir():
        raise CatdogError(f"{run_dir}: no such RUN_DIR; make one with `catdog train` or `catdog run`")
    if not model_path.is_file() and (run_dir / MANIFEST).is_file():
        source, artefact = exported_from(run_dir)
        raise CatdogError(
            f"{run_dir}: an ART_DIR (it holds manifest.json), not a RUN_DIR; give the RUN_DIR it was exported from"
            + (f" ({source})" if source else "") + (f", or, to evaluate, predict or cam, one of its artefacts ({artefact})" if artefact else "")
        )
    if not model_path.is_file():
        raise CatdogError(f"{model_path}: missing; {run_dir} is not a finished catdog RUN_DIR (run `catdog train` again)")
    if not zipfile.is_zipfile(model_path):  # Keras would say "File not found" of a file that is there
        raise CatdogError(f"{model_path}: not a whole .keras file (truncated or damaged); train the run again")
    try:
        model = keras.models.load_model(model_path)
    except Exception as exc:  # a damaged or foreign file: one line, not a traceback
        raise CatdogError(f"{model_path}: cannot load the model ({str(exc).splitlines()[0][:200]}); train the run again") from None
    try:
        metrics = json.loads((run_dir / RunDir.METRICS).read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        reason = exc.strerror if isinstance(exc, OSError) and exc.strerror else str(exc).splitlines()[0][:200]
        raise CatdogError(f"{run_dir / RunDir.METRICS}: cannot read it ({reason}); train the run again") from None
    if not isinstance(model.output, dict) or PET not in model.output or PET_THRESHOLD not in metrics:
        raise CatdogError(f"{run_dir}: trained by an older catdog (no '{PET}' output, no neither answer); train it again")
    recorded = metrics.get("model_sha256") if isinstance(metrics, dict) else None
    if isinstance(recorded, str) and sha256_file(model_path) != recorded:  # its threshold and rates are another model's
        raise CatdogError(f"{model_path}: not the model {RunDir.METRICS} describes (sha256 differs: a train stopped part-way, "
                          "or a model.keras copied in); train the run again")
    return Run(run_dir, model, metrics)


def load_scorer(path: str | os.PathLike) -> Run:
    """What `catdog evaluate` and `predict` score photos with: a RUN_DIR's full Keras model, or an
    artefact (`.tflite`, `.onnx`, `.mlpackage`) run by catdog.runtime with the neither threshold
    of the manifest.json beside it, so a phone's model is measured as the phone runs it."""
    from catdog.contract import pet_threshold
    from catdog.runtime import SUFFIX_FORMAT, open_model

    path = Path(path)
    if path.suffix not in SUFFIX_FORMAT:
        return load_run(path)
    # open_model holds the artefact to its manifest's sha256, so the manifest's threshold (one line
    # where an older export has none, nor the pet output) is the artefact's own
    model = open_model(path)
    return Run(path, model, {PET_THRESHOLD: pet_threshold(path)}, artefact=True)


def run_photos(run: Run, which: str) -> list[Sample]:
    """The photos a RUN_DIR's split.json names under `which`, where they still are.

    "train": every photo the model was trained on; "parity": labelled training photos for
    comparing artefacts with Keras; "calibration": the other training photos, for int8
    calibration ("parity" and "calibration" never overlap). Runs made before issue 14 have no
    "parity" or "calibration": their "validation" and "train" photos stand in.
    """
    from catdog.data import scan

    data_dir = run.metrics.get("data_dir")
    split_file = run.path / "split.json"
    if not data_dir or not Path(data_dir).is_dir() or not split_file.is_file():
        return []
    split = json.loads(split_file.read_text())
    fallback = {"parity": "validation", "calibration": "train"}
    names = set(split.get(which) or split.get(fallback.get(which, which), []))
    return [s for s in scan(data_dir)[0] if s.name in names]


def calibrated_model(full_model: keras.Model, temperature: float) -> keras.Model:
    """A copy of the full model with the temperature folded into its Dense layer (W/T, b/T).

    softmax((W f + b) / T) is the temperature-scaled probability, and the CAM model built from
    the copy has maps divided by T, so the CAM identity still holds.
    """
    if not temperature > 0:
        raise CatdogError(f"temperature {temperature}: must be > 0")
    model = keras.models.clone_model(full_model)
    model.set_weights(full_model.get_weights())
    dense = model.get_layer("probabilities")
    kernel, bias = dense.get_weights()
    dense.set_weights([kernel / temperature, bias / temperature])
    return model


@dataclass
class Predictions:
    samples: list[Sample]  # the photos that decoded, in input order
    probabilities: np.ndarray  # (N, 2): P(cat), P(dog)
    rejections: list[Rejection]
    pet: np.ndarray = None  # (N,): P(a cat or a dog is in the photo)


def predict_batch(model: keras.Model, images: np.ndarray, tta: bool = False) -> np.ndarray:
    """(N, S, S, 3) photos, 0..255 -> (N, 2) probabilities; tta: the mean with each photo's mirror image."""
    return predict_outputs(model, images, tta)[PROBABILITIES]


def _outputs(model, x: np.ndarray) -> dict[str, np.ndarray]:
    """probabilities and pet of a full Keras model or a catdog.runtime Model (an artefact)."""
    out = model.predict_on_batch(x) if isinstance(model, keras.Model) else model.run(x)
    return {k: np.asarray(out[k]) for k in (PROBABILITIES, PET)}


def predict_outputs(model, images: np.ndarray, tta: bool = False) -> dict[str, np.ndarray]:
    """(N, S, S, 3) photos, 0..255 -> {"probabilities": (N, 2), "pet": (N, 1)}; tta: each the mean
    with the photo's mirror image's. model: a full Keras model or a catdog.runtime Model."""
    x = images.astype(np.float32)
    out = _outputs(model, x)
    if tta:
        mirrored = _outputs(model, np.ascontiguousarray(x[:, :, ::-1]))
        out = {k: (v + mirrored[k]) / 2 for k, v in out.items()}
    return out


def predict_images(
    model,
    samples: list[Sample],
    batch_size: int = 32,
    max_pixels: int = MAX_PIXELS,
    progress: bool = True,
    tta: bool = False,
    view: str = "plain",
) -> Predictions:
    """Run the full model (or a catdog.runtime Model: an artefact) on photos; unusable files are
    reported and skipped.

    tta: test-time augmentation, the mean of the probabilities of each photo and its mirror image.
    view: each photo as seen by that view of catdog.data.views (a shifted photo), not as it is.
    """
    kept, probs, pets, rejections = [], [], [], []
    desc = "predict" if view == "plain" else f"predict {view}"
    bar = tqdm(total=len(samples), unit="img", desc=desc, disable=not progress, dynamic_ncols=True)
    size = input_size(model) if isinstance(model, keras.Model) else model.image_size
    for batch in iter_batches(samples, batch_size=batch_size, size=size, max_pixels=max_pixels, view=view):
        for r in batch.rejections:
            if view == "plain":  # a view's rejections are the plain photos', said once
                tqdm.write(r.line())
        rejections.extend(batch.rejections)
        if batch.samples:
            out = predict_outputs(model, batch.images, tta)
            probs.append(out[PROBABILITIES])
            pets.append(out[PET][:, 0])
            kept.extend(batch.samples)
        bar.update(len(batch.samples) + len(batch.rejections))
    bar.close()
    return Predictions(
        kept, np.concatenate(probs) if probs else np.zeros((0, 2), np.float32), rejections,
        np.concatenate(pets) if pets else np.zeros(0, np.float32),
    )


NO_LABELLED = "no labelled photos to evaluate; use cat.N.jpg/dog.N.jpg names or cat/ and dog/ folders"


def evaluate(predictions: Predictions) -> dict:
    """Log loss, accuracy and confusion matrix over the labelled photos among `predictions`."""
    labels = np.array([-1 if s.label is None else s.label for s in predictions.samples])
    mask = labels >= 0
    if not mask.any():
        raise CatdogError(NO_LABELLED)
    return M.summary(labels[mask], predictions.probabilities[mask, 1])


def submission_rows(
    predictions: Predictions, clip: tuple[float, float] | None = M.DEFAULT_CLIP, temperature: float | None = None,
    *, threshold: float,
) -> list[tuple[str, float, float, str]]:
    """(id, P(dog), P(pet), verdict) rows sorted by id (numerically where ids are numbers, other ids in
    natural order: cat.2 before cat.10).

    P(dog) is clipped and temperature-scaled as asked (Kaggle's `label`); P(pet) is as the model
    gives it; the verdict (cat, dog or neither below `threshold`) is `catdog.contract.verdict` of
    the model's own probabilities (neither clipping nor a temperature changes which is larger)."""
    p_dog = predictions.probabilities[:, 1].astype(np.float64)
    if temperature is not None:
        p_dog = M.apply_temperature(predictions.probabilities, temperature)
    if clip is not None:
        p_dog = np.clip(p_dog, clip[0], clip[1])
    rows = [
        (s.id, float(p), float(q), verdict(probs, q, threshold, LABELS))
        for s, p, q, probs in zip(predictions.samples, p_dog, predictions.pet, predictions.probabilities)
    ]
    # Kaggle's numbers first, in number order; other ids in natural order (cat.2 before cat.10), as scan lists them
    return sorted(rows, key=lambda r: (0, int(r[0]), []) if r[0].isascii() and r[0].isdigit() else (1, 0, natural_key(r[0])))


def write_submission(path: str | os.PathLike, rows: list[tuple[str, float, float, str]]) -> Path:
    """`id,label,pet,verdict` (Kaggle reads the first two)."""
    path = Path(path)
    with open_atomic(path, "w", newline="") as f:  # a killed run leaves no half submission
        writer = csv.writer(f)
        writer.writerow(["id", "label", PET, "verdict"])
        for id_, p, q, answer in rows:
            writer.writerow([id_, f"{p:.6f}", f"{q:.6f}", answer])
    return path
