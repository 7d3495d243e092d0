"""Fine-tune the top blocks of a RUN_DIR's backbone, with augmentation, into a new RUN_DIR.

The result has exactly the layers of the full model (image -> preprocess -> backbone -> gap ->
dropout -> probabilities): augmentation only wraps it during training, so CAM, export and
parity work unchanged. BatchNormalization layers stay frozen (inference mode): the shared
MobileNetV2 weights have BatchNorm folded in, and batch statistics would break them.
"""

from __future__ import annotations

import json
import os
import re
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import keras
import numpy as np

from catdog.contract import PET, PET_THRESHOLD, PROBABILITIES, RunDir, read_json
from catdog import __version__
from catdog.atomic import write_text
from catdog.data import LABELS, MAX_PIXELS, iter_batches, scan, sha256_file, write_rejections
from catdog.errors import CatdogError
from catdog.features import input_size
from catdog.training import metrics as M
from catdog.training.inference import Run
from catdog.training.train import _EpochBar, plot_curves, save_model

# MobileNetV2 block_N / Conv_1, ResNet50 convS_blockN, MobileNet V1 conv_dw_N / conv_pw_N (one block N)
_BLOCK = re.compile(r"^(block_\d+|conv\d_block\d+|Conv_1|conv_(?:dw|pw|pad)_\d+)")


def _block_of(layer_name: str) -> str | None:
    """The block a backbone layer belongs to, or None (stem, pooling)."""
    match = _BLOCK.match(layer_name)
    if not match:
        return None
    return re.sub(r"^conv_(?:dw|pw|pad)_", "conv_", match.group(1))


@dataclass(frozen=True)
class FinetuneConfig:
    # measured on the shared photos: 3 blocks at 1e-5 took validation log loss 0.0497 -> 0.0475,
    # while 2 blocks at 1e-4 and 1 block at 2e-5 never beat the starting model
    blocks: int = 3  # top blocks of the backbone to train (MobileNetV2: Conv_1, block_16, block_15, ...)
    learning_rate: float = 1e-5
    batch_size: int = 32
    max_epochs: int = 8
    patience: int = 4
    seed: int = 0


def augmentation(seed: int) -> keras.Sequential:
    """Flip, zoom/crop, small shear-like rotation and translation, brightness/contrast jitter."""
    return keras.Sequential(
        [
            keras.layers.RandomFlip("horizontal", seed=seed),
            keras.layers.RandomZoom((-0.15, 0.0), seed=seed),  # zoom in: a random crop
            keras.layers.RandomRotation(0.03, seed=seed),
            keras.layers.RandomTranslation(0.05, 0.05, seed=seed),
            keras.layers.RandomBrightness(0.1, value_range=(0, 255), seed=seed),
            keras.layers.RandomContrast(0.1, seed=seed),
        ],
        name="augmentation",
    )


def top_blocks(backbone: keras.Model, n: int) -> list[str]:
    """Names of the last `n` blocks of a Keras application backbone, last first."""
    blocks = []
    for layer in reversed(backbone.layers):
        block = _block_of(layer.name)
        if block and block not in blocks:
            blocks.append(block)
    if n < 1 or n > len(blocks):
        raise CatdogError(f"--blocks {n}: the backbone has {len(blocks)} blocks; choose 1 to {len(blocks)}")
    return blocks[:n]


def set_trainable(full_model: keras.Model, blocks: list[str]) -> int:
    """Train the given backbone blocks and the head; freeze the rest and every BatchNorm."""
    backbone = full_model.get_layer("backbone")
    backbone.trainable = True
    trainable = 0
    for layer in backbone.layers:
        layer.trainable = _block_of(layer.name) in blocks and not isinstance(layer, keras.layers.BatchNormalization)
        trainable += layer.trainable
    full_model.get_layer("probabilities").trainable = True
    full_model.get_layer("pet_head").trainable = False  # fitted on the original features; not trained here
    return trainable


def _load_split(run: Run, data_dir: str | os.PathLike, seed: int = 0, max_pixels: int = MAX_PIXELS):
    """(train, validation) photos as arrays, and that split (names). Fine-tuning needs a validation split for early
    stopping; a run trained on every photo (no "validation" in split.json) gets a seeded,
    class-stratified 20 % of its photos for it. A photo that cannot be used now is named and left out."""
    from catdog.training.train import stratified_split

    size = input_size(run.model)
    split = json.loads((run.path / "split.json").read_text())
    samples = {s.name: s for s in scan(data_dir)[0] if s.label is not None}
    missing = [n for n in split["train"] + split.get("validation", []) if n not in samples]
    if missing:
        raise CatdogError(f"{data_dir}: {len(missing)} photos of the run's split are missing (e.g. {missing[0]}); pass the DATA the run was trained on")
    if not split.get("validation"):
        names = split["train"]
        rest, val = stratified_split(np.array([samples[n].label for n in names]), 0.2, seed)
        split = {**split, "train": [names[i] for i in rest], "validation": [names[i] for i in val]}  # parity, calibration kept

    rejections = []

    def arrays(part):
        batches = list(iter_batches([samples[n] for n in split[part]], batch_size=64, size=size, max_pixels=max_pixels))
        for rejection in (r for b in batches for r in b.rejections):
            print(rejection.line())  # trained on before (a photo since damaged, or over --max-pixels): not dropped unsaid
            rejections.append(rejection)
        split[part] = [s.name for b in batches for s in b.samples]  # the split it used: what split.json and the report count
        return np.concatenate([b.images for b in batches]), np.array([s.label for b in batches for s in b.samples])

    return arrays("train"), arrays("validation"), split, rejections


def finetune(run: Run, data_dir: str | os.PathLike, out_dir: str | os.PathLike, config: FinetuneConfig = FinetuneConfig(), progress: bool = True,
             max_pixels: int = MAX_PIXELS) -> dict:
    """Fine-tune `run` on its training photos less a validation split (for early stopping); write a RUN_DIR.
    max_pixels: a photo over this many pixels is named and left out."""
    start = time.perf_counter()
    out_dir = Path(out_dir)
    if "," in run.metrics.get("backbone", ""):
        raise CatdogError(
            f"{run.path}: fuses {run.metrics['backbone']}; fine-tuning takes a run with one backbone (train one per backbone)"
        )
    if out_dir.resolve() == run.path.resolve():
        raise CatdogError(f"{out_dir}: the run being fine-tuned; give --out a new RUN_DIR (it would overwrite the model it starts from)")
    # another kind of run there kept its head.keras and cv_predictions.csv beside the new model (a run
    # of two runs); an earlier fine-tune into the same folder is replaced whole, as before
    held = [name for name in (RunDir.HEAD, RunDir.CV_PREDICTIONS, RunDir.FEATURES) if (out_dir / name).exists()]
    if held or ((out_dir / RunDir.METRICS).is_file() and "finetuned_from" not in (read_json(out_dir / RunDir.METRICS) or {})):
        raise CatdogError(f"{out_dir}: holds another run already ({', '.join(held or [RunDir.METRICS])}); give --out a new folder")
    (x_train, y_train), (x_val, y_val), split, rejections = _load_split(run, data_dir, config.seed, max_pixels)
    keras.utils.set_random_seed(config.seed)
    model = keras.models.load_model(run.path / RunDir.MODEL)  # an independent copy to train
    blocks = top_blocks(model.get_layer("backbone"), config.blocks)
    n_trainable = set_trainable(model, blocks)
    image = keras.Input(model.input.shape[1:], name="image")
    trainer = keras.Model(image, model(augmentation(config.seed)(image))[PROBABILITIES], name="finetune")
    # stopped on the log loss alone: Keras' val_loss adds the head's L2 penalty, which outweighed the
    # log loss (0.0034 against 0.0004) and so chose the epoch by the weights' size
    log_loss = keras.metrics.SparseCategoricalCrossentropy(name="log_loss")
    trainer.compile(keras.optimizers.Adam(config.learning_rate), "sparse_categorical_crossentropy", metrics=["accuracy", log_loss])
    before = M.log_loss(y_val, model.predict(x_val.astype(np.float32), batch_size=64, verbose=0)[PROBABILITIES][:, 1])
    stop = keras.callbacks.EarlyStopping(monitor="val_log_loss", patience=config.patience, restore_best_weights=True)
    fit = trainer.fit(
        x_train.astype(np.float32), y_train, validation_data=(x_val.astype(np.float32), y_val),
        epochs=config.max_epochs, batch_size=config.batch_size, verbose=0,
        callbacks=[stop, _EpochBar(config.max_epochs, progress, desc=f"fine-tune {', '.join(blocks)}")],
    )
    history = {k: [float(v) for v in vs] for k, vs in fit.history.items()}
    best_epoch = int(np.argmin(history["val_log_loss"])) + 1
    val_out = model.predict(x_val.astype(np.float32), batch_size=64, verbose=0)
    improved = M.log_loss(y_val, val_out[PROBABILITIES][:, 1]) < before
    if not improved:  # the starting point is a checkpoint too: never hand back a worse model
        model = keras.models.load_model(run.path / RunDir.MODEL)
        val_out = model.predict(x_val.astype(np.float32), batch_size=64, verbose=0)
        best_epoch = 0
    p_val = val_out[PROBABILITIES]
    out_dir.mkdir(parents=True, exist_ok=True)
    save_model(model, out_dir / RunDir.MODEL)
    write_text(out_dir / "split.json", json.dumps(split))  # the split it used: validation held out for early stopping
    write_rejections(out_dir / RunDir.REJECTED, rejections)  # photos of the split it could not use now (report.html counts them)
    # The split chose the epoch, so it is not held out for calibration, and a split the model gets
    # all right drives the fitted temperature to its bound (0.05-0.12: every P becomes 0 or 1).
    calibration = M.calibration_report(p_val, y_val, config.seed)
    calibration.update(fitted_temperature=calibration["temperature"], temperature=1.0,
                       source="the early-stopping validation split (it chose the epoch): the temperature fitted there is not applied")
    plot_curves(history, best_epoch, out_dir / "curves.png")
    write_text(out_dir / "history.json", json.dumps(history, indent=1))
    metrics = {
        **{k: run.metrics[k] for k in ("backbone", "weights", "image_size", "labels", "data_fingerprint", "data_dir") if k in run.metrics},
        # the pet head is not trained here: its threshold (and rates) are the original run's, and
        # the share of the validation photos it keeps on the tuned features says whether that holds
        **{k: run.metrics[k] for k in (PET, PET_THRESHOLD) if k in run.metrics},
        **({"pet_keep_validation": float(np.mean(val_out[PET][:, 0] >= run.metrics[PET_THRESHOLD]))} if PET_THRESHOLD in run.metrics else {}),
        "n_train": int(len(y_train)),
        "n_val": int(len(y_val)),
        "finetuned_from": str(run.path.resolve()),
        "data_dir": str(Path(data_dir).resolve()),
        "finetune": {**asdict(config), "blocks_trained": blocks, "trainable_layers": n_trainable, "optimizer": "adam",
                     "augmentation": [layer.name for layer in augmentation(0).layers]},
        "seed": config.seed,
        "epochs": len(history["loss"]),
        "best_epoch": best_epoch,
        "val_before": {"log_loss": before},
        "improved": bool(improved),
        "val": M.summary(y_val, p_val[:, 1]),
        "calibration": calibration,
        "model_sha256": sha256_file(out_dir / RunDir.MODEL),
        "catdog_version": __version__,
        "keras_version": keras.__version__,
        "seconds": round(time.perf_counter() - start, 1),
    }
    write_text(out_dir / RunDir.METRICS, json.dumps(metrics, indent=2))
    return metrics


__all__ = ["FinetuneConfig", "augmentation", "finetune", "set_trainable", "top_blocks", "LABELS"]
