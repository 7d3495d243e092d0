"""The input/output contract every catdog artefact keeps, and small helpers shared by formats."""

from __future__ import annotations

import os
from pathlib import Path

from catdog.data import LABELS

from catdog.contract import CAM, INPUT_NAME, PET, PROBABILITIES, cam_grid  # noqa: F401  (the one definition)


def raw_image_input(batch: int | str, image_size: int) -> dict:
    """The input of the TFLite and ONNX artefacts: the raw photo, preprocessing inside."""
    return {
        "name": INPUT_NAME,
        "shape": [batch, image_size, image_size, 3],
        "dtype": "float32",
        "layout": "NHWC",
        "channel_order": "RGB",
        "value_range": [0.0, 255.0],
        "resize": f"squash the whole photo to {image_size}x{image_size} (no crop), bilinear",
        "normalisation": "inside the model; feed raw pixel values",
    }


def tensor_outputs(batch: int | str, image_size: int) -> list[dict]:
    g = cam_grid(image_size)
    return [
        {"name": PROBABILITIES, "shape": [batch, 2], "dtype": "float32", "labels": list(LABELS), "meaning": "softmax (P(cat), P(dog))"},
        {
            "name": CAM,
            "shape": [batch, g, g, 2],
            "dtype": "float32",
            "layout": "NHWC",
            "labels": list(LABELS),
            "meaning": f"class activation maps, one {g}x{g} map per class (channel 0 cat, 1 dog), unnormalised",
        },
        pet_output(batch),
    ]


def pet_output(batch: int | str) -> dict:
    return {
        "name": PET,
        "shape": [batch, 1],
        "dtype": "float32",
        "meaning": "P(the photo shows a cat or a dog); under the manifest's pet_threshold the answer is neither",
    }


def size_bytes(path: str | os.PathLike) -> int:
    path = Path(path)
    return path.stat().st_size if path.is_file() else sum(p.stat().st_size for p in path.rglob("*") if p.is_file())
