"""ONNX export (tf2onnx through Keras' exporter; fp16 and int8 by the ONNX tool chain).

fp16 stores the conv / matmul weights as float16 and computes in float32 (one Cast per weight,
folded by ONNX Runtime when a session loads), as TFLite's fp16 does. Full fp16 arithmetic
(onnxconverter-common's `convert_float_to_float16`) was measured first: on this model its
activation rounding alone moves the CAM by 4.3e-3 of its range on training photos with 35 of 54
layers kept float32, so it cannot meet the 5e-3 tolerance with margin, and on x86 CPUs it is
slower than fp32 (README, Benchmarks).
"""

from __future__ import annotations

import tempfile
import warnings
from pathlib import Path

import keras
import numpy as np

from catdog.atomic import staged
from catdog.export import converted
from catdog.export.contract import INPUT_NAME, raw_image_input, tensor_outputs
from catdog.export.sensitivity import Unit, matches
from catdog.features import input_size

OPSET = 17


def kept_nodes(model, keep: list[Unit]) -> list[str]:
    """Names of the Conv / MatMul nodes of the kept units (matched on the node's name and its
    weight and bias names: tf2onnx names a Conv `Conv__N` but keeps the layers' tensor names)."""
    return [
        node.name
        for node in model.graph.node
        if node.op_type in ("Conv", "MatMul", "Gemm") and any(matches(u, [node.name, *node.input]) for u in keep)
    ]


def fp16_weights(model, keep_nodes: list[str]):
    """float16 storage for the weight (input 1) of every Conv / MatMul / Gemm node except
    `keep_nodes`; each is cast back to float32 in the graph, so arithmetic stays float32. Biases
    stay float32, as in TFLite's fp16 (BatchNorm folded into them makes some large)."""
    import onnx
    from onnx import TensorProto, helper
    from onnxconverter_common.float16 import convert_tensor_float_to_float16

    graph = model.graph
    initializers = {i.name: i for i in graph.initializer}
    casts, converted = [], set()
    for node in graph.node:
        if node.op_type not in ("Conv", "MatMul", "Gemm") or node.name in keep_nodes:
            continue
        for i, name in list(enumerate(node.input))[1:2]:
            tensor = initializers.get(name)
            if tensor is None or tensor.data_type != TensorProto.FLOAT:
                continue
            if name not in converted:
                half = onnx.TensorProto()
                half.CopyFrom(tensor)
                half.name = f"{name}__fp16"
                with warnings.catch_warnings():  # it warns for every tiny weight it rounds to 1e-7
                    warnings.simplefilter("ignore", UserWarning)
                    graph.initializer.append(convert_tensor_float_to_float16(half))
                casts.append(helper.make_node("Cast", [half.name], [f"{name}__fp32"], to=TensorProto.FLOAT, name=f"{name}__cast"))
                converted.add(name)
            node.input[i] = f"{name}__fp32"
    used = {n for node in graph.node for n in node.input}
    for name in converted - used:
        graph.initializer.remove(initializers[name])
    for cast in reversed(casts):  # casts read only initializers: first in topological order
        graph.node.insert(0, cast)
    return model


def fp32_onnx(cam_model: keras.Model) -> bytes:
    """The CAM model as fp32 ONNX (Keras' exporter, tf2onnx), serialised; made once per model
    (`catdog.export.converted`): fp16 and int8 start from it."""

    def make() -> bytes:
        import tensorflow as tf

        signature = [tf.TensorSpec([None, *cam_model.input.shape[1:]], tf.float32, name=INPUT_NAME)]
        with tempfile.TemporaryDirectory() as tmp:
            path = Path(tmp) / "fp32.onnx"
            cam_model.export(str(path), format="onnx", opset_version=OPSET, verbose=False, input_signature=signature)
            return path.read_bytes()

    return converted.once("onnx_fp32", (converted.model_key(cam_model),), make)


def export_onnx(cam_model: keras.Model, precision: str, path: Path, calibration: np.ndarray | None = None, keep: list[Unit] = ()) -> dict:
    """Write `path` (.onnx): image [batch, S, S, 3] -> probabilities, cam; batch is dynamic.

    keep: units left in float32 (mixed precision): fp16 leaves their weights float32, int8
    excludes them from quantisation.
    """
    import onnx

    size = input_size(cam_model)
    with tempfile.TemporaryDirectory() as tmp:
        fp32 = Path(tmp) / "fp32.onnx"
        fp32.write_bytes(fp32_onnx(cam_model))
        if precision == "fp32":
            model = onnx.load(fp32)
        elif precision == "fp16":
            model = onnx.load(fp32)
            model = fp16_weights(model, kept_nodes(model, list(keep)))
        elif precision == "int8":
            model = _quantize_int8(fp32, Path(tmp), calibration, list(keep))
        else:
            raise ValueError(precision)
        model.doc_string = f"catdog: raw RGB photo (0..255, {size}x{size}) -> probabilities (cat, dog), cam (one map per class)"
        onnx.checker.check_model(model)
        with staged(path) as tmp_path:
            onnx.save(model, tmp_path)
    return {"input": raw_image_input("batch", size), "outputs": tensor_outputs("batch", size), "opset": OPSET}


def _quantize_int8(fp32: Path, tmp: Path, calibration: np.ndarray, keep: list[Unit]):
    """Static QDQ int8 quantisation (weights per channel) calibrated on real photos."""
    import onnx
    from onnxruntime.quantization import CalibrationDataReader, QuantFormat, QuantType, quantize_static
    from onnxruntime.quantization.shape_inference import quant_pre_process

    class Photos(CalibrationDataReader):
        def __init__(self):
            self.images = iter(calibration)

        def get_next(self):
            image = next(self.images, None)
            return None if image is None else {INPUT_NAME: image[None].astype(np.float32)}

    prepared, out = tmp / "prepared.onnx", tmp / "int8.onnx"
    quant_pre_process(str(fp32), str(prepared), skip_symbolic_shape=True)
    quantize_static(
        str(prepared),
        str(out),
        Photos(),
        quant_format=QuantFormat.QDQ,
        per_channel=True,
        activation_type=QuantType.QUInt8,
        weight_type=QuantType.QInt8,
        # 7-bit weights: x86 CPUs without VNNI (AVX2, AVX-512F) multiply u8 x s8 pairs into int16
        # sums that saturate, and one photo's P(dog) moved by 0.58 on such a machine; the reduced
        # range cannot saturate, so the artefact computes the same on every CPU (onnxruntime docs)
        reduce_range=True,
        nodes_to_exclude=kept_nodes(onnx.load(prepared), keep),
    )
    return onnx.load(out)


def write(full_model: keras.Model, precision: str, path: Path, options) -> dict:
    """The format table's exporter (`catdog.export.formats`)."""
    from catdog.cam import cam_model

    return export_onnx(cam_model(full_model), precision, path, options.calibration, list(options.keep))
