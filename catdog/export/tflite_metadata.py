"""Labels and input contract inside the .tflite file, written with the TFLite model schema.

tflite-support (the usual metadata writer) pins protobuf<4 and cannot sit beside TF 2.21, so
catdog uses the TFLite flatbuffer model schema that ai-edge-litert ships
(`ai_edge_litert.schema_py_generated`, object API): it appends one buffer holding a JSON
document and names it in `Model.metadata` as "catdog_metadata" — the same mechanism the TFLite
converter uses for its own "min_runtime_version" entry. Any flatbuffer reader (LiteRT's
Interpreter ignores it) can read it back; `read_metadata` does.
"""

from __future__ import annotations

import json
from pathlib import Path

import flatbuffers
import numpy as np

from catdog import __version__
from catdog.data import LABELS
from catdog.export.contract import raw_image_input, tensor_outputs

METADATA_NAME = "catdog_metadata"


def _schema():
    from ai_edge_litert import schema_py_generated

    return schema_py_generated


def metadata_document(backbone: str, precision: str, image_size: int, extra: dict | None = None) -> dict:
    return {
        "name": f"catdog {backbone} cats-vs-dogs classifier with Class Activation Maps ({precision})",
        "catdog_version": __version__,
        "labels": list(LABELS),
        "input": raw_image_input(1, image_size),
        "normalisation": "none outside the model: feed raw RGB 0..255; the backbone's preprocessing is the first op",
        "outputs": tensor_outputs(1, image_size),
        "license": "Apache-2.0",
        **(extra or {}),
    }


def write_metadata(path: str | Path, backbone: str, precision: str, image_size: int, extra: dict | None = None) -> None:
    """Add (or replace) the catdog metadata entry of the .tflite file at `path`, in place."""
    schema = _schema()
    path = Path(path)
    model = schema.ModelT.InitFromPackedBuf(bytearray(path.read_bytes()), 0)
    model.metadata = [m for m in (model.metadata or []) if m.name.decode() != METADATA_NAME] if model.metadata else []
    buffer = schema.BufferT()
    buffer.data = np.frombuffer(json.dumps(metadata_document(backbone, precision, image_size, extra)).encode(), dtype=np.uint8)
    model.buffers.append(buffer)
    entry = schema.MetadataT()
    entry.name = METADATA_NAME
    entry.buffer = len(model.buffers) - 1
    model.metadata.append(entry)
    builder = flatbuffers.Builder(1024)
    builder.Finish(model.Pack(builder), file_identifier=b"TFL3")
    path.write_bytes(bytes(builder.Output()))


def read_metadata(path: str | Path) -> dict | None:
    """The catdog metadata document of a .tflite file, or None if it has none."""
    schema = _schema()
    model = schema.Model.GetRootAs(bytearray(Path(path).read_bytes()), 0)
    for i in range(model.MetadataLength()):
        entry = model.Metadata(i)
        if entry.Name().decode() == METADATA_NAME:
            data = model.Buffers(entry.Buffer()).DataAsNumpy()
            return json.loads(bytes(data).decode())
    return None
