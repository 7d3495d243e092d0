"""TFLite export (fp32, fp16 weights, int8 full-integer) through Keras' own LiteRT exporter."""

from __future__ import annotations

from pathlib import Path

import keras
import numpy as np

from catdog.export.contract import raw_image_input, tensor_outputs
from catdog.features import input_size


def converter_options(precision: str, calibration: np.ndarray | None) -> dict:
    """TFLiteConverter settings for one precision (passed through `Model.export`)."""
    import tensorflow as tf

    if precision == "fp32":
        return {}
    if precision == "fp16":
        return {"optimizations": [tf.lite.Optimize.DEFAULT], "target_spec": {"supported_types": [tf.float16]}}
    if precision == "int8":

        def representative_dataset():
            for image in calibration:
                yield [image[None].astype(np.float32)]

        return {
            "optimizations": [tf.lite.Optimize.DEFAULT],
            "representative_dataset": representative_dataset,
            # every op in int8; float32 in and out keep the app contract (raw 0..255 photo)
            "target_spec": {"supported_ops": [tf.lite.OpsSet.TFLITE_BUILTINS_INT8]},
        }
    raise ValueError(precision)


def export_tflite(cam_model: keras.Model, precision: str, path: Path, calibration: np.ndarray | None = None) -> dict:
    """Write `path` (.tflite) with signature "serving_default": image -> probabilities, cam."""
    import tensorflow as tf

    spec = [tf.TensorSpec([1, *cam_model.input.shape[1:]], tf.float32, name="image")]
    cam_model.export(str(path), format="litert", verbose=False, input_signature=spec, **converter_options(precision, calibration))
    size = input_size(cam_model)
    return {"input": raw_image_input(1, size), "outputs": tensor_outputs(1, size), "signature": "serving_default"}
