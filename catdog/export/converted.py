"""The conversions one export run asks for more than once, made once per process.

The sensitivity analysis and the exports convert the same CAM model again and again: a SavedModel
(about 17 s for the fused model) behind every TFLite conversion, the fp32 flatbuffer behind fp32,
fp16 and the analysis, the int8 flatbuffers the analysis measures and the export then writes, and
the fp32 ONNX model behind all three ONNX precisions. Each is keyed by what it is made from (the
model's architecture and weights, the calibration photos, the kept units), so a changed model never
gets a stale conversion; the SavedModels live in temporary folders removed at exit.
"""

from __future__ import annotations

import atexit
import hashlib
import json
import shutil
import tempfile
from concurrent.futures import BrokenExecutor, CancelledError
from pathlib import Path
from typing import Callable

import numpy as np

_made: dict[tuple, object] = {}


def model_key(model) -> str:
    """sha256 of a Keras model's architecture and weights."""
    h = hashlib.sha256(json.dumps(model.get_config(), sort_keys=True, default=str).encode())
    for weight in model.weights:
        h.update(weight.path.encode())
        h.update(np.ascontiguousarray(weight.numpy()).tobytes())
    return h.hexdigest()


def array_key(array: np.ndarray | None) -> str:
    return "none" if array is None else hashlib.sha256(np.ascontiguousarray(array).tobytes()).hexdigest()


class _Promised:
    def __init__(self, future):
        self.future = future


def once(kind: str, key: tuple, make: Callable[[], object]):
    """`make()`'s result, made on the first call with this kind and key (or the promised one)."""
    made = (kind, *key)
    if isinstance(_made.get(made), _Promised):
        future = _made.pop(made).future
        try:
            _made[made] = future.result()
        except (CancelledError, BrokenExecutor):
            pass  # the process promising it was stopped (an interrupted export): made here
    if made not in _made:
        _made[made] = make()
    return _made[made]


def promise(kind: str, key: tuple, future) -> None:
    """`once(kind, key, ...)` will return `future.result()`: the same conversion, being made
    elsewhere (export_run's second process)."""
    _made[(kind, *key)] = _Promised(future)


def saved_model(cam_model) -> Path:
    """The CAM model as a SavedModel, written the way Keras' LiteRT exporter writes it
    (ExportArchive with a "serve" endpoint of batch 1), so the TFLite converter and the
    QuantizationDebugger can start from it."""

    def write() -> Path:
        import functools

        import keras
        import tensorflow as tf

        from catdog.contract import INPUT_NAME

        folder = Path(tempfile.mkdtemp(prefix="catdog-savedmodel-"))
        atexit.register(shutil.rmtree, folder, True)
        archive = keras.export.ExportArchive()
        archive.track(cam_model)
        spec = [tf.TensorSpec([1, *cam_model.input.shape[1:]], tf.float32, name=INPUT_NAME)]
        archive.add_endpoint("serve", functools.partial(cam_model.__call__, training=False), input_signature=spec)
        archive.write_out(str(folder / "saved"), verbose=False)
        return folder / "saved"

    return once("saved_model", (model_key(cam_model),), write)
