"""Metadata inside every catdog .tflite: the standard TFLITE_METADATA, and catdog's own contract entry.

Standard metadata (what MediaPipe Tasks' ImageClassifier, the TFLite Task Library and Android
Studio's model binding read): a `ModelMetadata` flatbuffer (the TFLite metadata schema, file
identifier "M001") in the model buffer that `Model.metadata` names "TFLITE_METADATA", plus the
labels file packed after the model as a zip archive (the associated-file packing of MediaPipe's
`MetadataPopulator`). It is written with the metadata schema's object API:
`catdog/_vendor/tflite_metadata_schema_py_generated.py` is a verbatim copy of the one the MediaPipe
1.2.3 wheel ships (flatc output of metadata_schema.fbs, Apache-2.0; tests/test_mediapipe.py checks
the copy is byte-identical). MediaPipe's own `metadata_writers` cannot run here: they import a
compiled module the wheel lacks, and the wheel pulls opencv-contrib-python, which clashes with the
project's headless OpenCV; tflite-support pins protobuf<4 and cannot sit beside TF 2.21.

catdog's contract entry: a JSON document (labels, input contract, outputs, Keras model sha256,
temperature) in one more buffer, named "catdog_metadata" in `Model.metadata` (the mechanism the
TFLite converter uses for "min_runtime_version"); `read_metadata` reads it back.

The model flatbuffer itself is read and rewritten with the TFLite model schema that ai-edge-litert
ships (`ai_edge_litert.schema_py_generated`). LiteRT's Interpreter ignores both entries and the
trailing zip.
"""

from __future__ import annotations

import io
import json
import zipfile
from pathlib import Path

import flatbuffers
import numpy as np

from catdog.contract import ArtDir
from catdog import __version__
from catdog.atomic import write_bytes
from catdog.data import LABELS
from catdog._vendor import tflite_metadata_schema_py_generated as md
from catdog.export.contract import CAM, INPUT_NAME, PET, PROBABILITIES, cam_grid, raw_image_input, tensor_outputs

METADATA_NAME = "catdog_metadata"
STANDARD_NAME = "TFLITE_METADATA"  # the name MediaPipe and the Task Library look up
METADATA_IDENTIFIER = b"M001"  # file identifier of a ModelMetadata flatbuffer
MODEL_IDENTIFIER = b"TFL3"
LABELS_FILE = ArtDir.LABELS
MIN_PARSER_VERSION = "1.0.0"  # no field added after schema 1.0.0 is used (MediaPipe's metadata_version.cc rules)
AUTHOR = "catdog"
LICENSE = "Apache-2.0"


def _schema():
    from ai_edge_litert import schema_py_generated

    return schema_py_generated


def metadata_document(backbone: str, precision: str, image_size: int, extra: dict | None = None, outputs: list[str] | None = None) -> dict:
    """catdog's own contract entry; `outputs` limits the outputs described (default: both)."""
    described = [o for o in tensor_outputs(1, image_size) if outputs is None or o["name"] in outputs]
    return {
        "name": f"catdog {backbone} cats-vs-dogs classifier{' with Class Activation Maps' if CAM in [o['name'] for o in described] else ''} ({precision})",
        "catdog_version": __version__,
        "labels": list(LABELS),
        "input": raw_image_input(1, image_size),
        "normalisation": "none outside the model: feed raw RGB 0..255; the backbone's preprocessing is the first op",
        "outputs": described,
        "license": LICENSE,
        **(extra or {}),
    }


def _stats(low: list[float], high: list[float]) -> md.StatsT:
    return md.StatsT(max=list(high), min=list(low))


def _image_input(image_size: int) -> md.TensorMetadataT:
    """The raw RGB photo, 0..255: NormalizationOptions mean 0, std 1 (the backbone's own
    preprocessing is the model's first op), so MediaPipe feeds pixel values unchanged."""
    props = md.ImagePropertiesT(colorSpace=md.ColorSpaceType.RGB, defaultSize=md.ImageSizeT(width=image_size, height=image_size))
    normalisation = md.ProcessUnitT(
        optionsType=md.ProcessUnitOptions.NormalizationOptions,
        options=md.NormalizationOptionsT(mean=[0.0, 0.0, 0.0], std=[1.0, 1.0, 1.0]),
    )
    return md.TensorMetadataT(
        name=INPUT_NAME,
        description=f"RGB photo squashed to {image_size}x{image_size} (no crop), raw pixel values 0..255; preprocessing is inside the model.",
        content=md.ContentT(contentPropertiesType=md.ContentProperties.ImageProperties, contentProperties=props),
        processUnits=[normalisation],
        stats=_stats([0.0, 0.0, 0.0], [255.0, 255.0, 255.0]),
    )


def _feature_content() -> md.ContentT:
    return md.ContentT(contentPropertiesType=md.ContentProperties.FeatureProperties, contentProperties=md.FeaturePropertiesT())


def _probabilities() -> md.TensorMetadataT:
    labels = md.AssociatedFileT(
        name=LABELS_FILE, description="Labels for categories that the model can recognize.", type=md.AssociatedFileType.TENSOR_AXIS_LABELS
    )
    return md.TensorMetadataT(
        name=PROBABILITIES,
        description=f"Softmax probabilities of the classes, in the order of {LABELS_FILE} ({', '.join(LABELS)}).",
        content=_feature_content(),
        stats=_stats([0.0], [1.0]),
        associatedFiles=[labels],
    )


def _pet() -> md.TensorMetadataT:
    return md.TensorMetadataT(
        name=PET,
        description=(
            "P(the photo shows a cat or a dog), [1, 1]; under manifest.json's pet_threshold the answer is neither. "
            "Not a class score: MediaPipe's ImageClassifier lists it as a head of its own, unlabelled."
        ),
        content=_feature_content(),
        stats=_stats([0.0], [1.0]),
    )


def _cam(image_size: int) -> md.TensorMetadataT:
    g = cam_grid(image_size)
    return md.TensorMetadataT(
        name=CAM,
        description=(
            f"Class activation maps, a [1, {g}, {g}, {len(LABELS)}] feature map (NHWC): one {g}x{g} map per class, "
            f"channel i for line i of {LABELS_FILE}; unnormalised. Not scores: MediaPipe's ImageClassifier "
            "lists it as head 1, unlabelled; the classification is head 0."
        ),
        dimensionNames=["batch", "height", "width", "class"],
        content=_feature_content(),
    )


def standard_metadata(backbone: str, precision: str, image_size: int, outputs: list[str]) -> md.ModelMetadataT:
    """The TFLITE_METADATA tree for a catdog model whose subgraph outputs are `outputs`, in order."""
    describe = {PROBABILITIES: _probabilities, CAM: lambda: _cam(image_size), PET: _pet}
    unknown = [o for o in outputs if o not in describe]
    if unknown:
        raise ValueError(f"no metadata for output(s) {unknown}; a catdog model has {list(describe)}")
    with_cam = CAM in outputs
    return md.ModelMetadataT(
        name=f"catdog {backbone} cats-vs-dogs classifier{' with CAM' if with_cam else ''} ({precision})",
        description=(
            f"Classifies a photo as {' or '.join(LABELS)} ({backbone} ImageNet features, logistic head)"
            + ("; also returns class activation maps showing where each class was seen." if with_cam else ".")
            + f" Input {image_size}x{image_size} RGB, raw 0..255."
        ),
        version=__version__,
        author=AUTHOR,
        license=LICENSE,
        subgraphMetadata=[md.SubGraphMetadataT(inputTensorMetadata=[_image_input(image_size)], outputTensorMetadata=[describe[o]() for o in outputs])],
        minParserVersion=MIN_PARSER_VERSION,
    )


def subgraph_output_names(model) -> list[str]:
    """Signature names (probabilities, cam) of subgraph 0's outputs, in the subgraph's order: the
    order TFLITE_METADATA's output tensor metadata must follow. `model`: a schema ModelT."""
    by_tensor = {t.tensorIndex: t.name.decode() for s in (model.signatureDefs or []) for t in (s.outputs or [])}
    outputs = list(model.subgraphs[0].outputs)
    missing = [i for i in outputs if i not in by_tensor]
    if missing:
        raise ValueError(f"subgraph outputs {missing} are in no signature; export through catdog.export.tflite")
    return [by_tensor[i] for i in outputs]


def probabilities_first(model) -> None:
    """Put `probabilities` first among subgraph 0's outputs, in place (`model`: a schema ModelT).

    MediaPipe's ImageClassifier makes every output a classification head, in the subgraph's output
    order (the converter sorts them by name: cam first). With probabilities first, head 0 (what
    `classifications[0]` reads) is cat/dog and the CAM is head 1. Signature runners address
    outputs by name, so the apps and parity are unaffected.
    """
    names = subgraph_output_names(model)
    outputs = list(model.subgraphs[0].outputs)
    order = sorted(range(len(outputs)), key=lambda i: names[i] != PROBABILITIES)
    model.subgraphs[0].outputs = [outputs[i] for i in order]


def _set_entry(model, name: str, data: bytes) -> None:
    """Put `data` in the buffer `Model.metadata` names `name` (replacing an older one)."""
    schema = _schema()
    buffer = schema.BufferT()
    buffer.data = np.frombuffer(data, dtype=np.uint8)
    for entry in model.metadata or []:
        if entry.name.decode() == name:
            model.buffers[entry.buffer] = buffer
            return
    model.buffers.append(buffer)
    entry = schema.MetadataT()
    entry.name = name.encode()  # as read back from a packed model
    entry.buffer = len(model.buffers) - 1
    model.metadata = [*(model.metadata or []), entry]


def _finish(table, identifier: bytes) -> bytes:
    builder = flatbuffers.Builder(1024)
    builder.Finish(table.Pack(builder), file_identifier=identifier)
    return bytes(builder.Output())


def pack_associated_files(model_bytes: bytes, files: dict[str, bytes]) -> bytes:
    """The model followed by a zip archive of `files`, as MediaPipe's MetadataPopulator packs
    associated files (zip offsets count from the start of the .tflite). Each entry carries a fixed
    date (zip's earliest), not the clock's: the same model and files give the same bytes and sha256."""
    out = io.BytesIO(model_bytes)
    with zipfile.ZipFile(out, "a") as archive:
        for name, data in files.items():
            entry = zipfile.ZipInfo(name, date_time=(1980, 1, 1, 0, 0, 0))
            entry.external_attr = 0o600 << 16  # what writestr gives a name
            archive.writestr(entry, data)
    return out.getvalue()


def write_metadata(path: str | Path, backbone: str, precision: str, image_size: int, extra: dict | None = None) -> None:
    """Write both metadata entries into the .tflite at `path` and pack labels.txt after it
    (outputs reordered by `probabilities_first`).

    Replaces any earlier entries and packed files; the file is rewritten atomically.
    """
    path = Path(path)
    model = _schema().ModelT.InitFromPackedBuf(bytearray(path.read_bytes()), 0)
    probabilities_first(model)
    outputs = subgraph_output_names(model)
    _set_entry(model, STANDARD_NAME, _finish(standard_metadata(backbone, precision, image_size, outputs), METADATA_IDENTIFIER))
    _set_entry(model, METADATA_NAME, json.dumps(metadata_document(backbone, precision, image_size, extra, outputs)).encode())
    data = pack_associated_files(_finish(model, MODEL_IDENTIFIER), {LABELS_FILE: ("\n".join(LABELS) + "\n").encode()})
    write_bytes(path, data)


def _entry(path: str | Path, name: str) -> bytes | None:
    model = _schema().Model.GetRootAs(bytearray(Path(path).read_bytes()), 0)
    for i in range(model.MetadataLength()):
        entry = model.Metadata(i)
        if entry.Name().decode() == name:
            return bytes(model.Buffers(entry.Buffer()).DataAsNumpy())
    return None


def read_metadata(path: str | Path) -> dict | None:
    """The catdog metadata document of a .tflite file, or None if it has none."""
    data = _entry(path, METADATA_NAME)
    return None if data is None else json.loads(data.decode())


def read_standard_metadata(path: str | Path) -> md.ModelMetadataT | None:
    """The TFLITE_METADATA tree of a .tflite file (object API), or None if it has none."""
    data = _entry(path, STANDARD_NAME)
    if data is None:
        return None
    if not md.ModelMetadata.ModelMetadataBufferHasIdentifier(data, 0):
        raise ValueError(f"{path}: the {STANDARD_NAME} buffer is not a ModelMetadata flatbuffer (identifier {data[4:8]!r})")
    return md.ModelMetadataT.InitFromPackedBuf(bytearray(data), 0)


def packed_files(path: str | Path) -> dict[str, bytes]:
    """The associated files packed after the model (name -> bytes); {} if none."""
    data = Path(path).read_bytes()
    if not zipfile.is_zipfile(io.BytesIO(data)):
        return {}
    with zipfile.ZipFile(io.BytesIO(data)) as archive:
        return {name: archive.read(name) for name in archive.namelist()}
