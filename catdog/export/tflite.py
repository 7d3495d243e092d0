"""TFLite export: fp32, fp16 weights, int8 full-integer; mixed precision keeps chosen units float32.

fp32: the converter Keras' own LiteRT exporter builds (ExportArchive -> SavedModel ->
TFLiteConverter), kept in hand so the int8 QuantizationDebugger can use it.
fp16: ai-edge-quantizer on the fp32 model: float16 weight-only (`float_casting`) for every
conv / fully-connected op, `no_quantize` for the kept ones (matched on their output tensor names).
int8: the TFLiteConverter's full-integer quantisation calibrated on real photos; kept units stay
float32 through the QuantizationDebugger's denylist.
"""

from __future__ import annotations

import contextlib
import io
import re
from pathlib import Path

import keras
import numpy as np

from catdog.atomic import write_bytes
from catdog.console import libraries_quiet
from catdog.export.contract import raw_image_input, tensor_outputs
from catdog.export.sensitivity import Unit, fp32_tflite, int8_tflite_model, matches, tflite_weighted_ops, weighted_units
from catdog.features import input_size


def fp32_model(cam_model: keras.Model) -> bytes:
    """The fp32 flatbuffer (converted once per model; `catdog.export.converted`)."""
    return fp32_tflite(cam_model)


def fp16_weights(fp32: bytes, keep: list[Unit]) -> bytes:
    """fp16 weights for every conv / fully-connected op except the kept units' (ai-edge-quantizer)."""
    from ai_edge_quantizer import algorithm_manager, qtyping, quantizer

    qt = quantizer.Quantizer(bytearray(fp32))
    every_op = qtyping.TFLOperationName.ALL_SUPPORTED
    qt.add_weight_only_config(".*", every_op, num_bits=16, algorithm_key=algorithm_manager.AlgorithmName.FLOAT_CASTING)
    kept_scopes = [op["output"] for op in tflite_weighted_ops(fp32) if any(matches(u, [op["weight"]]) for u in keep)]
    if kept_scopes:  # an op's scope is its output tensor names joined by ";" with a trailing ";"
        regex = "^(?:" + "|".join(re.escape(s) + ";" for s in kept_scopes) + ")$"
        qt.update_quantization_recipe(regex, every_op, algorithm_key=algorithm_manager.AlgorithmName.NO_QUANTIZE)
    # enable_progress_bar does not reach the graph transformation in ai-edge-quantizer 0.10 (its
    # _get_quantized_model drops it), which draws a bar for models over 100 tensors: hide its stderr.
    with contextlib.redirect_stderr(io.StringIO()) if libraries_quiet() else contextlib.nullcontext():
        result = qt.quantize(enable_progress_bar=False, enable_progress_report=False)
    return inline_buffers(bytes(result.quantized_model))


def inline_buffers(data: bytes) -> bytes:
    """The same model with every buffer inside the flatbuffer. ai-edge-quantizer writes models
    with over 256 KB of weights in the large-model layout (weights appended after the flatbuffer,
    found by offset), which flatbuffer rewriters such as the metadata writer would drop."""
    import flatbuffers
    from ai_edge_litert import schema_py_generated as schema

    model = schema.ModelT.InitFromPackedBuf(bytearray(data), 0)
    moved = False
    for buffer in model.buffers or []:
        if buffer.offset > 1:
            buffer.data = np.frombuffer(data, np.uint8, buffer.size, buffer.offset)
            buffer.offset = buffer.size = 0
            moved = True
    if not moved:
        return data
    builder = flatbuffers.Builder(len(data) + 1024)
    builder.Finish(model.Pack(builder), file_identifier=b"TFL3")
    return bytes(builder.Output())


def export_tflite(
    cam_model: keras.Model,
    precision: str,
    path: Path,
    calibration: np.ndarray | None = None,
    keep: list[Unit] = (),
) -> dict:
    """Write `path` (.tflite) with signature "serving_default": image -> probabilities, cam.

    keep: units left in float32 (mixed precision); ignored for fp32.
    """
    keep = list(keep)
    if precision == "fp32":
        data = fp32_model(cam_model)
    elif precision == "fp16":
        data = fp16_weights(fp32_model(cam_model), keep)
    elif precision == "int8":
        data = int8_tflite_model(cam_model, calibration, [u.name for u in keep], weighted_units(cam_model))
    else:
        raise ValueError(precision)
    write_bytes(path, data)
    size = input_size(cam_model)
    return {"input": raw_image_input(1, size), "outputs": tensor_outputs(1, size), "signature": "serving_default"}


def float_ops(path: Path) -> list[str]:
    """Weight names of the conv / fully-connected ops whose weights are stored as float32 (not
    int8, and not fp16 behind a DEQUANTIZE op)."""
    from ai_edge_litert import schema_py_generated as schema

    data = bytearray(Path(path).read_bytes())
    graph = schema.Model.GetRootAs(data, 0).Subgraphs(0)
    produced = {graph.Operators(i).Outputs(j) for i in range(graph.OperatorsLength()) for j in range(graph.Operators(i).OutputsLength())}
    return [
        op["weight"]
        for op in tflite_weighted_ops(data)
        if graph.Tensors(op["weight_tensor"]).Type() == schema.TensorType.FLOAT32 and op["weight_tensor"] not in produced
    ]


def write(full_model: keras.Model, precision: str, path: Path, options) -> dict:
    """The format table's exporter (`catdog.export.formats`): the CAM model, then the standard
    TFLite metadata (labels, image input, outputs) and catdog's own entry."""
    from catdog.cam import cam_model
    from catdog.export.tflite_metadata import write_metadata
    from catdog.features import input_size

    info = export_tflite(cam_model(full_model), precision, path, options.calibration, list(options.keep))
    write_metadata(path, options.backbone, precision, input_size(full_model), options.metadata)
    return info
