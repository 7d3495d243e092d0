"""Run the feature model with LiteRT's XNNPACK CPU kernels instead of TensorFlow.

Measured here (`python -m bench features`, 2 cores, MobileNetV2): TensorFlow runs the feature
model at about 105 images/s, LiteRT at about 250 (64 % of the CPU's matrix-multiply peak);
features agree to 2e-5 (values up to ~6). The converted model is cached on disk next to Keras'
weights ($KERAS_HOME/catdog/), keyed by backbone, weights, input size and Keras version, so the ~10 s
conversion happens once.
"""

from __future__ import annotations

import hashlib
import os
import tempfile
from pathlib import Path

import keras
import numpy as np

ENGINES = ("litert", "keras")


def _cache_path(name: str, weights_key: str, image_size: int) -> Path:
    key = hashlib.sha256(f"{name}|{weights_key}|{image_size}|{keras.__version__}".encode()).hexdigest()[:16]
    from catdog.features.backbones import keras_models_dir

    return keras_models_dir().parent / "catdog" / f"{name}_features_{key}.tflite"


class LiteRTFeatures:
    """Callable: raw photos (N, S, S, 3) float32 -> (N, C) features, through LiteRT."""

    def __init__(self, model: keras.Model, name: str, weights_key: str, threads: int | None = None):
        import tensorflow as tf
        from ai_edge_litert.interpreter import Interpreter

        from catdog.features.backbones import input_size

        path = _cache_path(name, weights_key, input_size(model))
        if not path.is_file():
            path.parent.mkdir(parents=True, exist_ok=True)
            with tempfile.TemporaryDirectory(dir=path.parent) as tmp:
                staged = Path(tmp) / path.name
                spec = [tf.TensorSpec([None, *model.input.shape[1:]], tf.float32, name="image")]
                model.export(str(staged), format="litert", verbose=False, input_signature=spec)
                os.replace(staged, path)  # atomic: a concurrent or killed run never sees half a file
        interpreter = Interpreter(model_path=str(path), num_threads=threads or os.cpu_count())
        self._runner = interpreter.get_signature_runner("serving_default")
        self.path = path

    def __call__(self, images: np.ndarray) -> np.ndarray:
        return next(iter(self._runner(image=np.ascontiguousarray(images, np.float32)).values()))


def feature_runner(model: keras.Model, name: str, weights_key: str, engine: str = "litert"):
    """A callable images -> features for `engine` ("litert" or "keras")."""
    if engine == "keras":
        return lambda images: np.asarray(model.predict_on_batch(images))
    if engine == "litert":
        return LiteRTFeatures(model, name, weights_key)
    from catdog.errors import CatdogError

    raise CatdogError(f"unknown engine {engine!r}; choose one of {', '.join(ENGINES)}")
