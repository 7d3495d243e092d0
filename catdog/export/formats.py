"""The one table of export formats, and the options every exporter takes.

Every format module has one exporter with one signature,

    write(full_model, precision, path, options) -> dict   (format-specific manifest fields)

where `full_model` is a RUN_DIR's Keras model (raw photo -> probabilities) and `options` an
`ExportOptions`. `catdog.export.export` looks the format up here, checks what it needs, times
and sizes what it wrote.
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass, field

from catdog.contract import SUFFIXES


@dataclass(frozen=True)
class ExportOptions:
    """What an exporter needs besides the model, the precision and the path.

    backbone: the RUN_DIR's backbone name (its Core ML image preprocessing, names, metadata).
    calibration: raw photos (N, S, S, 3) float32 0..255 at the model's input size, for int8.
    metadata: user metadata written into the artefact (Keras model sha256, temperature...).
    keep: units left float32 in a reduced precision (`catdog.export.sensitivity.Unit`).
    """

    backbone: str
    calibration: object | None = None
    metadata: dict = field(default_factory=dict)
    keep: tuple = ()


@dataclass(frozen=True)
class Format:
    name: str
    suffix: str
    module: str  # catdog.export.<module>.write
    int8_needs_photos: bool  # int8 is calibrated on real photos (activations quantised)
    uniform_twins: bool  # mixed precision also writes the every-layer-reduced twin to ART_DIR/uniform/
    numbers_by: str  # what computes its numbers in parity (catdog.runtime)

    def writer(self):
        return importlib.import_module(f"catdog.export.{self.module}").write


TABLE = {
    f.name: f
    for f in (
        Format("coreml", SUFFIXES["coreml"], "coreml", False, False, "Core ML on macOS, catdog's ML Program interpreter elsewhere"),
        Format("tflite", SUFFIXES["tflite"], "tflite", True, True, "LiteRT"),
        Format("onnx", SUFFIXES["onnx"], "onnx", False, True, "ONNX Runtime"),  # int8: weights only
    )
}
FORMATS = tuple(TABLE)
PRECISIONS = ("fp32", "fp16", "int8")
