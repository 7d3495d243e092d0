"""ONNX export (tf2onnx through Keras' exporter; fp16 and int8 by the ONNX tool chain).

fp16 stores the conv / matmul weights as float16 and computes in float32 (one Cast per weight,
folded by ONNX Runtime when a session loads), as TFLite's fp16 does. Full fp16 arithmetic
(onnxconverter-common's `convert_float_to_float16`) was measured first: on this model its
activation rounding alone moves the CAM by 4.3e-3 of its range on training photos with 35 of 54
layers kept float32, so it cannot meet the 5e-3 tolerance with margin, and on x86 CPUs it is
slower than fp32 (README, Benchmarks). int8 stores them as int8, one scale per output channel,
and also computes in float32 (`int8_weights`), as Core ML's int8 does.
"""

from __future__ import annotations

import re
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


def _stored_weights(model, keep_nodes: list[str], store):
    """Each weight (input 1) of every Conv / MatMul / Gemm node but `keep_nodes`, stored another
    way: `store(name, tensor, op_type)` gives the new initializers and the one node that turns them
    back into float32 `<name>__fp32`, which the weight's readers then take. Biases stay float32."""
    from onnx import TensorProto

    graph = model.graph
    initializers = {i.name: i for i in graph.initializer}
    decoders, converted = [], set()
    for node in graph.node:
        if node.op_type not in ("Conv", "MatMul", "Gemm") or node.name in keep_nodes:
            continue
        name = node.input[1]
        tensor = initializers.get(name)
        if tensor is None or tensor.data_type != TensorProto.FLOAT:
            continue
        if name not in converted:
            stored, decoder = store(name, tensor, node.op_type)
            graph.initializer.extend(stored)
            decoders.append(decoder)
            converted.add(name)
        node.input[1] = f"{name}__fp32"
    used = {n for node in graph.node for n in node.input}
    for name in converted - used:
        graph.initializer.remove(initializers[name])
    for decoder in reversed(decoders):  # they read only initializers: first in topological order
        graph.node.insert(0, decoder)
    return model


def int8_weights(model, keep_nodes: list[str]):
    """int8 storage for the weights of every Conv / MatMul / Gemm node but `keep_nodes`: symmetric,
    one scale per output channel (Conv axis 0, MatMul axis 1), each dequantized in the graph
    (DequantizeLinear), so arithmetic stays float32 as in Core ML's int8.

    ONNX Runtime's static int8 (activations quantised too) was measured first: on AVX2 it needed
    7-bit weights to avoid saturation, and then moved P(dog) by up to 0.40 and P(pet) by up to 0.45
    on the shared photos (CAM correlation 0.97), flipping "neither" verdicts (README, Export)."""
    from onnx import helper, numpy_helper

    def store(name, tensor, op_type):
        w = numpy_helper.to_array(tensor).astype(np.float32)
        axis = 0 if op_type == "Conv" else w.ndim - 1
        scale = np.abs(w).max(axis=tuple(i for i in range(w.ndim) if i != axis)) / 127.0
        scale[scale == 0] = 1.0
        shape = [1] * w.ndim
        shape[axis] = -1
        q = np.clip(np.round(w / scale.reshape(shape)), -127, 127).astype(np.int8)
        stored = [
            numpy_helper.from_array(q, f"{name}__int8"),
            numpy_helper.from_array(scale.astype(np.float32), f"{name}__scale"),
            numpy_helper.from_array(np.zeros(len(scale), np.int8), f"{name}__zero"),
        ]
        inputs = [f"{name}__int8", f"{name}__scale", f"{name}__zero"]
        return stored, helper.make_node("DequantizeLinear", inputs, [f"{name}__fp32"], axis=axis, name=f"{name}__dequantize")

    return _stored_weights(model, keep_nodes, store)


def fp16_weights(model, keep_nodes: list[str]):
    """float16 storage for the weights of every Conv / MatMul / Gemm node but `keep_nodes`; each is
    cast back to float32 in the graph, so arithmetic stays float32. Biases stay float32, as in
    TFLite's fp16 (BatchNorm folded into them makes some large)."""
    import onnx
    from onnx import TensorProto, helper
    from onnxconverter_common.float16 import convert_tensor_float_to_float16

    def store(name, tensor, op_type):
        half = onnx.TensorProto()
        half.CopyFrom(tensor)
        half.name = f"{name}__fp16"
        with warnings.catch_warnings():  # it warns for every tiny weight it rounds to 1e-7
            warnings.simplefilter("ignore", UserWarning)
            stored = convert_tensor_float_to_float16(half)
        return [stored], helper.make_node("Cast", [half.name], [f"{name}__fp32"], to=TensorProto.FLOAT, name=f"{name}__cast")

    return _stored_weights(model, keep_nodes, store)


_NUMBERED = re.compile(r"__\d+(?=(:\d+)?$)")  # tf2onnx's `<name>__<n>` (and its `:0` output suffix)
_UNKNOWN_DIM = re.compile(r"unk__\d+")  # tf2onnx's name for a dimension the signature leaves open


def canonical_names(model):
    """`model` (onnx.ModelProto, changed in place and returned) with the names tf2onnx numbers from
    a process-wide counter given numbers from the graph itself, so one Keras model always makes
    the same bytes: numbered nodes and their outputs by their place in the node list (which is
    deterministic), numbered constants after their first reader (`<node>/input_<k>`: tf2onnx
    merges equal constants under whichever copy's name it meets first). Constants are stored
    in the order they are first read. Two more names came from process-wide counters: the
    graph's doc string (TensorFlow's traced function, `__inference___call___12681`), now saying
    where the graph came from, and the dynamic batch dimension (`unk__1661`), now `batch`."""
    graph = model.graph
    graph.doc_string = "converted from the Keras CAM model by tf2onnx"
    for value in (*graph.input, *graph.output, *graph.value_info):
        for dim in value.type.tensor_type.shape.dim:
            if _UNKNOWN_DIM.fullmatch(dim.dim_param):
                dim.dim_param = "batch"  # the only dimension tf2onnx leaves unknown here
    new: dict[str, str] = {}
    for node in graph.node:
        for name in (node.name, *node.output):
            if _NUMBERED.search(name) and name not in new:
                new[name] = _NUMBERED.sub(f"__{len(new)}", name, count=1)
    constants = {i.name for i in graph.initializer}
    first_read: dict[str, int] = {}
    for node in graph.node:
        for k, name in enumerate(node.input):
            if name in constants and name not in first_read:
                first_read[name] = len(first_read)
                if _NUMBERED.search(name):
                    new[name] = f"{new.get(node.name, node.name)}/input_{k}"
    for node in graph.node:
        node.name = new.get(node.name, node.name)
        node.input[:] = [new.get(n, n) for n in node.input]
        node.output[:] = [new.get(n, n) for n in node.output]
    for value in (*graph.value_info, *graph.output):
        value.name = new.get(value.name, value.name)
    ordered = sorted(graph.initializer, key=lambda i: first_read.get(i.name, len(first_read)))
    for tensor in ordered:
        tensor.name = new.get(tensor.name, tensor.name)
    del graph.initializer[:]
    graph.initializer.extend(ordered)
    return model


def fp32_onnx(cam_model: keras.Model) -> bytes:
    """The CAM model as fp32 ONNX (Keras' exporter, tf2onnx), serialised with `canonical_names`;
    made once per model (`catdog.export.converted`): fp16 and int8 start from it."""

    def make() -> bytes:
        import onnx
        import tensorflow as tf

        signature = [tf.TensorSpec([None, *cam_model.input.shape[1:]], tf.float32, name=INPUT_NAME)]
        with tempfile.TemporaryDirectory() as tmp:
            path = Path(tmp) / "fp32.onnx"
            cam_model.export(str(path), format="onnx", opset_version=OPSET, verbose=False, input_signature=signature)
            return canonical_names(onnx.load(path)).SerializeToString()

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
            model = onnx.load(fp32)
            model = int8_weights(model, kept_nodes(model, list(keep)))
        else:
            raise ValueError(precision)
        model.doc_string = f"catdog: raw RGB photo (0..255, {size}x{size}) -> probabilities (cat, dog), cam (one map per class)"
        onnx.checker.check_model(model)
        with staged(path) as tmp_path:
            onnx.save(model, tmp_path)
    return {"input": raw_image_input("batch", size), "outputs": tensor_outputs("batch", size), "opset": OPSET}


def write(full_model: keras.Model, precision: str, path: Path, options) -> dict:
    """The format table's exporter (`catdog.export.formats`)."""
    from catdog.cam import cam_model

    return export_onnx(cam_model(full_model), precision, path, options.calibration, list(options.keep))
