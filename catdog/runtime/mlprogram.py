"""catdog's interpreter of the ML Program in an `.mlpackage`: Core ML's numbers on any machine.

Core ML itself runs only on Apple systems. This module reads the package as Core ML does — the
package Manifest.json, the model spec (protobuf), the program's operations and the weight blob
(`weights/weight.bin`) — and executes every operation in order, with the dtypes the program
declares:

* the image input is fed as Core ML feeds an ImageType: 8-bit pixels, NCHW, in the declared
  colour layout (RGB or BGR); the program's own first ops apply the ImageType's scale and bias;
* every tensor the program declares float16 is rounded to float16 (round to nearest even) at the
  output of the op that makes it; float16 weights are read as float16; int8 weights
  (`constexpr_affine_dequantize`) are dequantised as Core ML defines it,
  (data - zero_point) * scale along `axis`, then rounded to the op's declared dtype;
* each op's arithmetic is done in float32 and then rounded, which is exact arithmetic in float16
  to within one rounding: what it cannot reproduce is Apple's own kernels (their accumulation
  order, and the Neural Engine's fp16 accumulation) — the macOS CI job measures those.

Execution: each operation is lowered to one or a few ONNX nodes (Conv, Clip, Pad, Concat, ...)
and the graph is run by ONNX Runtime's CPU kernels, with a Cast to float16 and back after every
float16 op, so a photo costs milliseconds rather than seconds. An op type not in `OPS` is a
one-line `CatdogError` naming the op and the package, never skipped.
"""

from __future__ import annotations

import json
import os
import struct
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from catdog.errors import CatdogError
from catdog.contract import CAM, PROBABILITIES
from catdog.runtime import Model

BLOB_SENTINEL = 0xDEADBEEF
KEEP_INPUT = "keep_float32"  # emulated float16 programs: one bool per switch, true = that op stays float32
FLOAT32 = "float32"  # what `switch_of` answers for an op that stays float32 whatever is kept
# MIL DataType enum values (MIL.proto) -> numpy
DTYPES = {
    1: np.bool_,
    10: np.float16,
    11: np.float32,
    12: np.float64,
    21: np.int8,
    22: np.int16,
    23: np.int32,
    24: np.int64,
    31: np.uint8,
    32: np.uint16,
    33: np.uint32,
    34: np.uint64,
}
# ops whose output, from float16 inputs, is float16 already (they move, select or clip values):
# their Cast pair is left out, which changes no number and saves a pass over the tensor
EXACT_OPS = ("relu", "relu6", "max_pool", "pad", "concat", "transpose", "reshape", "slice_by_index", "reverse")
MIL_DTYPE_NAMES = {"fp16": np.float16, "fp32": np.float32, "int32": np.int32, "int8": np.int8, "uint8": np.uint8, "bool": np.bool_}
# the ops catdog's exports contain; each lowers to ONNX nodes in `_Lowering`
OPS = (
    "const",
    "constexpr_affine_dequantize",
    "mul",
    "add",
    "sub",
    "real_div",
    "cast",
    "conv",
    "relu",
    "relu6",
    "pad",
    "max_pool",
    "avg_pool",
    "concat",
    "transpose",
    "reverse",
    "reshape",
    "reduce_mean",
    "reduce_max",
    "reduce_sum",
    "exp",
    "log",
    "slice_by_index",
    "sigmoid",
    "linear",
    "matmul",
    "softmax",
    "classify",
)


@dataclass
class MilOp:
    """One operation of the program: its type, its inputs (argument name -> list of bindings,
    each a value name or an immediate value), outputs (name, numpy dtype or None, shape) and
    attributes (the const's value)."""

    type: str
    inputs: dict[str, list]
    outputs: list[tuple[str, object, tuple]]
    attributes: dict = field(default_factory=dict)

    @property
    def name(self) -> str:
        return self.outputs[0][0] if self.outputs else ""


@dataclass
class Package:
    """What the interpreter needs of an .mlpackage."""

    path: Path
    ops: list[MilOp]
    input_name: str
    input_shape: tuple[int, ...]  # NCHW, as the program declares it
    colour_layout: str | None  # RGB, BGR or GRAYSCALE for an image input; None for a tensor input
    outputs: list[str]  # the spec's output names
    program_outputs: list[str]  # the block's output value names, in order


def _model_paths(path: Path) -> tuple[Path, Path]:
    """(model spec, weights folder) of an .mlpackage, through its Manifest.json."""
    manifest_path = path / "Manifest.json"
    try:
        manifest = json.loads(manifest_path.read_text())
        root = manifest["itemInfoEntries"][manifest["rootModelIdentifier"]]
    except (OSError, ValueError, KeyError) as exc:
        raise CatdogError(f"{path}: not a readable .mlpackage ({type(exc).__name__} in Manifest.json); export it again") from None
    spec = path / "Data" / root["path"]
    return spec, spec.parent / "weights"


def _tensor_value(value, dtype, shape) -> np.ndarray | str | list:
    """An immediate value of a const: a tensor (numpy), a string, or a list of them."""
    kind = value.immediateValue.WhichOneof("value")
    if kind == "list":
        return [_tensor_value(v, None, ()) for v in value.immediateValue.list.values]
    tensor = value.immediateValue.tensor
    which = tensor.WhichOneof("value")
    if which == "strings":
        strings = list(tensor.strings.values)
        return strings[0] if len(strings) == 1 and not shape else strings
    if which == "bytes":
        data = np.frombuffer(tensor.bytes.values, dtype=dtype or np.uint8)
    else:
        data = np.asarray(list(getattr(tensor, which).values))
        if dtype is not None:
            data = data.astype(dtype)
    return data.reshape(shape) if shape or data.size == 1 else data


def _blob(weights: Path, file_name: str, offset: int, dtype, shape) -> np.ndarray:
    """A tensor from the weight blob: a 64-byte header at `offset` (sentinel, dtype, size, data offset)."""
    blob_path = weights / Path(file_name.replace("@model_path/weights/", "")).name
    with open(blob_path, "rb") as f:
        f.seek(offset)
        header = f.read(64)
        sentinel, _, size, data_offset = struct.unpack("<IIQQ", header[:24])
        if sentinel != BLOB_SENTINEL:
            raise CatdogError(f"{blob_path}: no blob header at offset {offset}; the package is damaged, export it again")
        f.seek(data_offset)
        data = np.frombuffer(f.read(size), dtype=dtype)
    return data.reshape(shape)


def _value_type(vt) -> tuple[object, tuple]:
    tensor = vt.tensorType
    dims = tuple(int(d.constant.size) for d in tensor.dimensions)
    return DTYPES.get(tensor.dataType), dims


def read_package(path: str | os.PathLike) -> Package:
    """Parse an .mlpackage's ML Program (main function) and its weights."""
    from coremltools.proto import Model_pb2

    path = Path(path)
    spec_path, weights = _model_paths(path)
    spec = Model_pb2.Model()
    try:
        spec.ParseFromString(spec_path.read_bytes())
    except Exception as exc:
        raise CatdogError(f"{spec_path}: not a Core ML model spec ({exc}); export it again") from None
    if spec.WhichOneof("Type") != "mlProgram":
        raise CatdogError(f"{path}: a Core ML {spec.WhichOneof('Type')} model, not an ML Program; catdog's interpreter runs ML Programs")
    function = spec.mlProgram.functions["main"]
    block = function.block_specializations[function.opset]
    ops = []
    for op in block.operations:
        outputs = [(o.name, *_value_type(o.type)) for o in op.outputs]
        inputs = {}
        for arg_name, argument in op.inputs.items():
            bindings = []
            for binding in argument.arguments:
                if binding.WhichOneof("binding") == "name":
                    bindings.append(binding.name)
                else:
                    dtype, shape = _value_type(binding.value.type)
                    bindings.append(_Immediate(_tensor_value(binding.value, dtype, shape)))
            inputs[arg_name] = bindings
        attributes = {}  # a const's `val`; a constexpr op's data, scale, zero point and axis
        for key, val in op.attributes.items():
            if val.WhichOneof("value") is None or key == "name":
                continue
            dtype, shape = _value_type(val.type)
            if val.WhichOneof("value") == "blobFileValue":
                attributes[key] = _blob(weights, val.blobFileValue.fileName, val.blobFileValue.offset, dtype, shape)
            else:
                attributes[key] = _tensor_value(val, dtype, shape)
        ops.append(MilOp(op.type, inputs, outputs, attributes))
    description = spec.description
    if len(description.input) != 1:
        raise CatdogError(f"{path}: {len(description.input)} inputs; catdog's interpreter runs programs with one input")
    feature = description.input[0]
    colour = None
    if feature.type.WhichOneof("Type") == "imageType":
        from coremltools.proto import FeatureTypes_pb2

        colour = FeatureTypes_pb2.ImageFeatureType.ColorSpace.Name(feature.type.imageType.colorSpace)
    program_input = next(i for i in function.inputs if i.name == feature.name)
    return Package(
        path=path,
        ops=ops,
        input_name=feature.name,
        input_shape=_value_type(program_input.type)[1],
        colour_layout=colour,
        outputs=[o.name for o in description.output],
        program_outputs=list(block.outputs),
    )


@dataclass(frozen=True)
class _Immediate:
    value: object


def const_values(package: Package) -> dict[str, np.ndarray]:
    """Every weight of the program by value name: consts as stored, int8 weights
    (constexpr_affine_dequantize) dequantised as Core ML defines it."""
    lowering = _Lowering(package)
    values = {}
    for op in package.ops:
        if op.type == "const" and isinstance(op.attributes.get("val"), np.ndarray):
            values[op.name] = op.attributes["val"]
        elif op.type == "constexpr_affine_dequantize":
            values[op.name] = lowering.dequantize(op)
    return values


class _Lowering:
    """Builds the ONNX graph: one or a few nodes per MIL op, float16 outputs rounded.

    As written (`switch_of` None): an op computes in float16 where the program declares its
    output float16. Emulated (`switch_of` given, on a float32 program): the program Core ML's
    float16 conversion makes of it — every op computes in float16 (inputs, weights and output
    rounded) except the ops `switch_of` maps to a switch index whose flag in the graph input
    KEEP_INPUT is true: those stay float32 (what `FP16ComputePrecision(op_selector=...)` keeps).
    The flags are fed at run time, so one session measures any choice of kept ops.
    """

    def __init__(self, package: Package, switch_of=None):
        import onnx

        self.onnx = onnx
        self.package = package
        self.declared = {name: shape for op in package.ops for name, _, shape in op.outputs}  # static shapes
        self.nodes, self.initializers = [], []
        self.consts: dict[str, object] = {}  # value name -> numpy / python value known at lowering time
        self.tensors: set[str] = set()  # value names that are graph tensors
        self.float16_tensors: set[str] = set()  # of them, those holding float16 values (a program as written)
        self.switch_of = switch_of
        self.switch_flags: dict[int, str] = {}  # switch index -> its scalar bool tensor
        self.maybe_float32: dict[str, str] = {}  # emulated: tensor a switched op may leave unrounded -> its flag
        self.count = 0

    @property
    def emulated(self) -> bool:
        return self.switch_of is not None

    def fresh(self, hint: str) -> str:
        self.count += 1
        return f"{hint}__{self.count}"

    def node(self, op_type: str, inputs: list[str], output: str | None = None, **attrs) -> str:
        output = output or self.fresh(op_type)
        self.nodes.append(self.onnx.helper.make_node(op_type, inputs, [output], **attrs))
        return output

    def initializer(self, array: np.ndarray, hint: str = "const") -> str:
        name = self.fresh(hint)
        self.initializers.append(self.onnx.numpy_helper.from_array(np.ascontiguousarray(array), name))
        return name

    def round16(self, x: str) -> str:
        """x rounded to float16 (round to nearest even), kept as a float32 tensor."""
        half = self.node("Cast", [x], to=self.onnx.TensorProto.FLOAT16)
        return self.node("Cast", [half], to=self.onnx.TensorProto.FLOAT)

    def switch(self, op: MilOp) -> str | None:
        """The scalar bool tensor that keeps this op float32 ("true" for an always-float32 op),
        or None: always float16."""
        index = self.switch_of(op) if self.emulated else None
        if index is None:
            return None
        if index == FLOAT32:
            if FLOAT32 not in self.switch_flags:
                self.switch_flags[FLOAT32] = self.initializer(np.bool_(True), "always_float32")
            return self.switch_flags[FLOAT32]
        if index not in self.switch_flags:
            self.switch_flags[index] = self.node("Gather", [KEEP_INPUT, self.initializer(np.int64(index), "switch")])
        return self.switch_flags[index]

    def rounded_unless_kept(self, op: MilOp, x: str, rounded: str | None = None) -> str:
        """x where the op's flag keeps it float32, else x rounded to float16: an If node, so only
        the chosen branch runs (a Where would compute both and copy every element)."""
        flag = self.switch(op)
        if flag is None:
            return rounded or self.round16(x)
        if flag == self.switch_flags.get(FLOAT32):
            return x
        helper, proto = self.onnx.helper, self.onnx.TensorProto
        out = self.fresh("kept_or_rounded")
        keep_branch = helper.make_graph(
            [helper.make_node("Identity", [x], [out + "_kept"])], out + "_then", [],
            [helper.make_tensor_value_info(out + "_kept", proto.FLOAT, None)],
        )
        half = out + "_half"
        round_branch = helper.make_graph(
            [helper.make_node("Cast", [x], [half], to=proto.FLOAT16), helper.make_node("Cast", [half], [out + "_rounded"], to=proto.FLOAT)],
            out + "_else", [], [helper.make_tensor_value_info(out + "_rounded", proto.FLOAT, None)],
        )
        return self.node("If", [flag], out, then_branch=keep_branch, else_branch=round_branch)

    # -- values

    def value(self, binding):
        """A binding as a Python/numpy value known now (consts), or raise if it is a tensor."""
        if isinstance(binding, _Immediate):
            return binding.value
        if binding in self.consts:
            return self.consts[binding]
        raise KeyError(binding)

    def tensor(self, op: MilOp, binding) -> str:
        """A binding as the graph tensor (float32 in the graph) the op computes from: a const
        becomes an initializer; in an emulated program a float16 op's inputs are rounded."""
        if not isinstance(binding, _Immediate) and binding in self.tensors:
            if self.emulated and binding in self.maybe_float32 and self.switch(op) != self.maybe_float32[binding]:
                # Core ML casts a float32 tensor to float16 where a float16 op reads it
                return self.rounded_unless_kept(op, binding)
            return binding
        array = np.asarray(self.value(binding))
        if array.dtype.kind != "f":
            return self.initializer(array.astype(np.int64) if array.dtype.kind in "iu" else array, "w")
        if not self.emulated:
            return self.initializer(array.astype(np.float32), "w")
        with np.errstate(over="ignore"):  # a value past float16's range becomes inf, as Core ML's conversion makes it
            half = array.astype(np.float16).astype(np.float32)
        if self.switch(op) is None:
            return self.initializer(half, "w16")
        if self.switch(op) == self.switch_flags.get(FLOAT32):
            return self.initializer(array.astype(np.float32), "w32")
        helper, proto = self.onnx.helper, self.onnx.TensorProto
        out = self.fresh("weight")
        wide, narrow = self.initializer(array.astype(np.float32), "w32"), self.initializer(half, "w16")
        branch = lambda source, name: helper.make_graph(  # noqa: E731
            [helper.make_node("Identity", [source], [name])], name, [], [helper.make_tensor_value_info(name, proto.FLOAT, None)]
        )
        return self.node("If", [self.switch(op)], out, then_branch=branch(wide, out + "_32"), else_branch=branch(narrow, out + "_16"))

    def arg(self, op: MilOp, name: str, default=None):
        bindings = op.inputs.get(name)
        if not bindings:
            return default
        return self.value(bindings[0])

    # -- the walk

    def lower(self):
        self.tensors.add(self.package.input_name)
        for op in self.package.ops:
            if op.type not in OPS:
                raise CatdogError(
                    f"{self.package.path}: ML Program op '{op.type}' ({op.name}) is not supported by catdog's interpreter "
                    f"(it runs {', '.join(OPS)}); nothing was computed"
                )
            if self.emulated and op.type == "cast":
                raise CatdogError(f"{self.package.path}: already a reduced-precision program (cast ops); emulate float16 from the float32 package")
            if op.type == "const":
                self.consts[op.name] = op.attributes["val"]
                continue
            if op.type == "constexpr_affine_dequantize":
                self.consts[op.name] = self.dequantize(op)
                continue
            getattr(self, "op_" + op.type)(op)

    def finish(self, op: MilOp, result: str, index: int = 0) -> None:
        """Name the op's output; round it to float16 where the op computes in float16 (not where
        the op only moves, selects or clips float16 values: its output is float16 already)."""
        name = op.outputs[index][0]
        if self.emulated:
            result = self.rounded_unless_kept(op, result)
            if self.switch(op) is not None:
                self.maybe_float32[name] = self.switch(op)
        elif op.outputs[index][1] is np.float16 and not self.exact_in_float16(op):
            result = self.round16(result)
        self.node("Identity", [result], name)
        self.tensors.add(name)
        if op.outputs[index][1] is np.float16 and not self.emulated:
            self.float16_tensors.add(name)

    def exact_in_float16(self, op: MilOp) -> bool:
        """True where rounding the op's output to float16 cannot change it: an op of EXACT_OPS
        whose every tensor input is a float16 output (and, for pad, the padding value is one)."""
        if op.type not in EXACT_OPS:
            return False
        bindings = op.inputs.get("values") if op.type == "concat" else [op.inputs.get("x", [None])[0]]
        if not bindings or any(b is None or isinstance(b, _Immediate) or b not in self.float16_tensors for b in bindings):
            return False
        if op.type == "pad":
            value = float(np.asarray(self.arg(op, "constant_val", 0.0)))
            return str(self.arg(op, "mode", "constant")) != "constant" or float(np.float16(value)) == value
        return True

    def inputs(self, op: MilOp, *names: str) -> list[str]:
        return [self.tensor(op, op.inputs[n][0]) for n in names]

    # -- ops

    def dequantize(self, op: MilOp) -> np.ndarray:
        given = lambda key, default=None: op.attributes.get(key, self.arg(op, key, default))  # noqa: E731
        data = np.asarray(given("quantized_data"))
        scale = np.asarray(given("scale"), np.float32)
        zero = np.asarray(given("zero_point", np.zeros(1, data.dtype)), np.float32)
        axis = int(np.asarray(given("axis", 0)))
        shape = [1] * data.ndim
        shape[axis] = -1
        scale = scale.reshape(shape) if scale.size > 1 else scale.reshape([1] * data.ndim)
        zero = zero.reshape(shape) if zero.size > 1 else zero.reshape([1] * data.ndim)
        dtype = op.outputs[0][1] or np.float32
        return ((data.astype(np.float32) - zero) * scale).astype(dtype)

    def _binary(self, op, onnx_type):
        x, y = self.inputs(op, "x", "y")
        self.finish(op, self.node(onnx_type, [x, y]))

    def op_mul(self, op):
        self._binary(op, "Mul")

    def op_add(self, op):
        self._binary(op, "Add")

    def op_sub(self, op):
        self._binary(op, "Sub")

    def op_real_div(self, op):
        self._binary(op, "Div")

    def op_cast(self, op):
        (x,) = self.inputs(op, "x")
        if MIL_DTYPE_NAMES.get(str(self.arg(op, "dtype"))) is np.float16:
            x = self.round16(x)
        self.node("Identity", [x], op.outputs[0][0])
        self.tensors.add(op.outputs[0][0])

    def op_relu(self, op):
        (x,) = self.inputs(op, "x")
        self.finish(op, self.node("Relu", [x]))

    def op_relu6(self, op):
        (x,) = self.inputs(op, "x")
        lo, hi = self.initializer(np.float32(0.0)), self.initializer(np.float32(6.0))
        self.finish(op, self.node("Clip", [x, lo, hi]))

    def op_conv(self, op):
        x, w = self.inputs(op, "x", "weight")
        weight_shape = np.asarray(self.value(op.inputs["weight"][0])).shape
        strides = [int(s) for s in np.asarray(self.arg(op, "strides", [1, 1])).ravel()]
        dilations = [int(d) for d in np.asarray(self.arg(op, "dilations", [1, 1])).ravel()]
        groups = int(np.asarray(self.arg(op, "groups", 1)))
        pad_type = str(self.arg(op, "pad_type", "valid"))
        in_shape = self._shape(op.inputs["x"][0])
        pads = conv_pads(pad_type, self.arg(op, "pad"), in_shape[2:], weight_shape[2:], strides, dilations)
        args = [x, w]
        if "bias" in op.inputs:
            args += self.inputs(op, "bias")
        y = self.node("Conv", args, strides=strides, dilations=dilations, group=groups, pads=pads, kernel_shape=list(weight_shape[2:]))
        self.finish(op, y)

    def _pool(self, op, onnx_type, **extra):
        (x,) = self.inputs(op, "x")
        kernel = [int(k) for k in np.asarray(self.arg(op, "kernel_sizes")).ravel()]
        strides = [int(k) for k in np.asarray(self.arg(op, "strides", [1] * len(kernel))).ravel()]
        in_shape = self._shape(op.inputs["x"][0])
        pads = conv_pads(str(self.arg(op, "pad_type", "valid")), self.arg(op, "pad"), in_shape[2:], kernel, strides, [1] * len(kernel))
        ceil = int(bool(np.asarray(self.arg(op, "ceil_mode", False))))
        self.finish(op, self.node(onnx_type, [x], kernel_shape=kernel, strides=strides, pads=pads, ceil_mode=ceil, **extra))

    def op_max_pool(self, op):
        self._pool(op, "MaxPool")

    def op_avg_pool(self, op):
        exclude = bool(np.asarray(self.arg(op, "exclude_padding_from_average", False)))
        self._pool(op, "AveragePool", count_include_pad=0 if exclude else 1)

    def op_pad(self, op):
        (x,) = self.inputs(op, "x")
        pad = [int(p) for p in np.asarray(self.arg(op, "pad")).ravel()]
        mode = str(self.arg(op, "mode", "constant"))
        rank = len(self._shape(op.inputs["x"][0]))
        k = len(pad) // 2
        begins = [0] * (rank - k) + pad[0::2]
        ends = [0] * (rank - k) + pad[1::2]
        onnx_mode = {"constant": "constant", "reflect": "reflect", "replicate": "edge"}[mode]
        args = [x, self.initializer(np.asarray(begins + ends, np.int64))]
        if mode == "constant":
            args.append(self.initializer(np.float32(float(np.asarray(self.arg(op, "constant_val", 0.0))))))
        self.finish(op, self.node("Pad", args, mode=onnx_mode))

    def op_concat(self, op):
        values = [self.tensor(op, b) for b in op.inputs["values"]]
        if bool(np.asarray(self.arg(op, "interleave", False))):
            raise CatdogError(f"{self.package.path}: concat with interleave=True ({op.name}) is not supported by catdog's interpreter")
        axis = int(np.asarray(self.arg(op, "axis")))
        self.finish(op, self.node("Concat", values, axis=axis))

    def op_transpose(self, op):
        (x,) = self.inputs(op, "x")
        perm = [int(p) for p in np.asarray(self.arg(op, "perm")).ravel()]
        self.finish(op, self.node("Transpose", [x], perm=perm))

    def op_reverse(self, op):
        """ResNet50's RGB -> BGR inside a fusion: a Slice with step -1 along each axis."""
        (x,) = self.inputs(op, "x")
        rank = len(self._shape(op.inputs["x"][0]))
        axes = [int(a) % rank for a in np.asarray(self.arg(op, "axes", list(range(rank)))).ravel()]
        n = len(axes)
        ints = lambda values: self.initializer(np.asarray(values, np.int64))  # noqa: E731
        y = self.node("Slice", [x, ints([-1] * n), ints([np.iinfo(np.int64).min] * n), ints(axes), ints([-1] * n)])
        self.finish(op, y)

    def op_reshape(self, op):
        (x,) = self.inputs(op, "x")
        shape = np.asarray(self.arg(op, "shape"), np.int64).ravel().copy()
        if len(shape) and shape[0] == 1:
            shape[0] = -1 if (shape[1:] > 0).all() else shape[0]  # the batch dimension: any N photos
        self.finish(op, self.node("Reshape", [x, self.initializer(shape)]))

    def op_reduce_mean(self, op):
        self._reduce(op, "ReduceMean")

    def _reduce(self, op, onnx_type):
        (x,) = self.inputs(op, "x")
        axes = np.asarray(self.arg(op, "axes"), np.int64).ravel()
        keep = int(bool(np.asarray(self.arg(op, "keep_dims", False))))
        self.finish(op, self.node(onnx_type, [x, self.initializer(axes)], keepdims=keep))

    def op_reduce_max(self, op):
        self._reduce(op, "ReduceMax")

    def op_reduce_sum(self, op):
        self._reduce(op, "ReduceSum")

    def _unary(self, op, onnx_type):
        (x,) = self.inputs(op, "x")
        self.finish(op, self.node(onnx_type, [x]))

    def op_sigmoid(self, op):
        self._unary(op, "Sigmoid")

    def op_exp(self, op):
        self._unary(op, "Exp")

    def op_log(self, op):
        # MIL's log takes an epsilon added to x (default 1e-45)
        (x,) = self.inputs(op, "x")
        epsilon = float(np.asarray(self.arg(op, "epsilon", 1e-45)))
        if epsilon:
            x = self.node("Add", [x, self.initializer(np.float32(epsilon))])
        self.finish(op, self.node("Log", [x]))

    def op_slice_by_index(self, op):
        """x[begin:end:stride] per axis; a masked begin / end is the axis' start / end, a masked
        squeeze drops the axis (MIL's slice_by_index)."""
        (x,) = self.inputs(op, "x")
        rank = len(self._shape(op.inputs["x"][0]))
        flags = lambda key: [bool(v) for v in np.asarray(self.arg(op, key, [False] * rank)).ravel()]  # noqa: E731
        begin = [int(v) for v in np.asarray(self.arg(op, "begin")).ravel()]
        end = [int(v) for v in np.asarray(self.arg(op, "end")).ravel()]
        stride = [int(v) for v in np.asarray(self.arg(op, "stride", [1] * rank)).ravel()]
        big = np.iinfo(np.int64).max
        starts = [0 if m else b for b, m in zip(begin, flags("begin_mask"))]
        ends = [big if m else e for e, m in zip(end, flags("end_mask"))]
        ints = lambda values: self.initializer(np.asarray(values, np.int64))  # noqa: E731
        y = self.node("Slice", [x, ints(starts), ints(ends), ints(list(range(rank))), ints(stride)])
        squeeze = [i for i, m in enumerate(flags("squeeze_mask")) if m]
        if squeeze:
            y = self.node("Squeeze", [y, ints(squeeze)])
        self.finish(op, y)

    def op_linear(self, op):
        x, w = self.inputs(op, "x", "weight")
        y = self.node("MatMul", [x, self.node("Transpose", [w], perm=[1, 0])])
        if "bias" in op.inputs:
            y = self.node("Add", [y, *self.inputs(op, "bias")])
        self.finish(op, y)

    def op_matmul(self, op):
        x, y = self.inputs(op, "x", "y")
        if bool(np.asarray(self.arg(op, "transpose_x", False))):
            x = self.node("Transpose", [x], perm=list(range(len(self._shape(op.inputs["x"][0])) - 2)) + [-1, -2])
        if bool(np.asarray(self.arg(op, "transpose_y", False))):
            rank = len(np.asarray(self.value(op.inputs["y"][0])).shape) if op.inputs["y"][0] not in self.tensors else 2
            y = self.node("Transpose", [y], perm=list(range(rank - 2)) + [rank - 1, rank - 2])
        self.finish(op, self.node("MatMul", [x, y]))

    def op_softmax(self, op):
        (x,) = self.inputs(op, "x")
        self.finish(op, self.node("Softmax", [x], axis=int(np.asarray(self.arg(op, "axis", -1)))))

    def op_classify(self, op):
        # outputs: the class label and the label -> probability dictionary; catdog reads the
        # probabilities tensor in the classes' order (the dictionary's values)
        (p,) = self.inputs(op, "probabilities")
        self.node("Identity", [p], op.outputs[1][0])
        self.tensors.add(op.outputs[1][0])

    # -- shapes (static, from the program's declared types)

    def _shape(self, binding) -> tuple:
        if isinstance(binding, _Immediate):
            return np.asarray(binding.value).shape
        if binding in self.consts:
            return np.asarray(self.consts[binding]).shape
        if binding == self.package.input_name:
            return self.package.input_shape
        return self.declared[binding]


def conv_pads(pad_type, pad, spatial, kernel, strides, dilations) -> list[int]:
    """ONNX pads [begin..., end...] for a MIL conv's pad_type (valid, same, same_lower, custom)."""
    k = len(spatial)
    if pad_type == "valid":
        return [0] * 2 * k
    if pad_type == "custom":
        pad = [int(p) for p in np.asarray(pad).ravel()]
        return pad[0::2] + pad[1::2]
    begins, ends = [], []
    for size, kern, stride, dilation in zip(spatial, kernel, strides, dilations):
        effective = (kern - 1) * dilation + 1
        out = -(-size // stride)
        total = max((out - 1) * stride + effective - size, 0)
        small, large = total // 2, total - total // 2
        begins.append(large if pad_type == "same_lower" else small)
        ends.append(small if pad_type == "same_lower" else large)
    return begins + ends


class Program:
    """An .mlpackage's program lowered for execution: `run(images)` -> {output: array}.

    switch_of: None runs the program as written (its own dtypes). A function MilOp -> switch
    index (or None) instead emulates, from this float32 program, the float16 program Core ML's
    conversion would make: every op in float16 except the switched ops whose flag `run` gets as
    `keep` (mixed precision, `catdog.export.sensitivity`); n_switches flags in all.
    """

    def __init__(self, package: Package, switch_of=None, n_switches: int = 0, threads: int | None = None):
        import onnx
        import onnxruntime as ort

        self.package = package
        self.n_switches = n_switches if switch_of is not None else 0
        lowering = _Lowering(package, switch_of)
        graph_inputs = [onnx.helper.make_tensor_value_info(package.input_name, onnx.TensorProto.FLOAT, ["N", *package.input_shape[1:]])]
        if switch_of is not None:
            graph_inputs.append(onnx.helper.make_tensor_value_info(KEEP_INPUT, onnx.TensorProto.BOOL, [self.n_switches]))
        lowering.lower()
        self.switched = sorted(k for k in lowering.switch_flags if k != FLOAT32)  # switch indices some op answered to
        outputs = self._output_map(package)
        graph_outputs = [onnx.helper.make_tensor_value_info(value, onnx.TensorProto.FLOAT, None) for value in outputs.values()]
        graph = onnx.helper.make_graph(lowering.nodes, "mlprogram", graph_inputs, graph_outputs, lowering.initializers)
        model = onnx.helper.make_model(graph, opset_imports=[onnx.helper.make_opsetid("", 18)])
        model.ir_version = 8
        options = ort.SessionOptions()
        options.intra_op_num_threads = threads or os.cpu_count()
        # the float16 rounding is a pair of Casts, which no optimisation fuses across or drops (tested)
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        options.log_severity_level = 3
        self.session = ort.InferenceSession(model.SerializeToString(), options, providers=["CPUExecutionProvider"])
        self.outputs = outputs  # spec output name -> graph value
        self.graph = graph  # the lowered ONNX graph, before ONNX Runtime's optimisations
        self.image_size = int(package.input_shape[-1])

    @staticmethod
    def _output_map(package: Package) -> dict[str, str]:
        """Spec output name -> program value. A classifier's probability dictionary is the
        classify op's; other outputs are the block's outputs by name."""
        classify = next((op for op in package.ops if op.type == "classify"), None)
        result = {}
        for name in package.outputs:
            if classify is not None and name == classify.outputs[0][0]:
                continue  # the class label, a string: argmax of the probabilities, in the classes' order
            if classify is not None and name == PROBABILITIES:
                result[name] = classify.outputs[1][0]
            elif name in package.program_outputs:
                result[name] = name
            else:
                raise CatdogError(f"{package.path}: output {name!r} is not produced by the program")
        return result

    def feed(self, images: np.ndarray) -> np.ndarray:
        """Photos (N, S, S, 3) RGB 0..255 -> the program's image input as Core ML feeds it:
        8-bit pixels, the declared colour layout, NCHW float32. A tensor input is fed as given."""
        if self.package.colour_layout is None:
            return np.ascontiguousarray(images, np.float32)
        pixels = np.clip(np.round(images), 0, 255).astype(np.float32)
        if self.package.colour_layout == "BGR":
            pixels = pixels[..., ::-1]
        elif self.package.colour_layout == "GRAYSCALE":
            pixels = np.round(pixels @ np.float32([0.299, 0.587, 0.114]))[..., None]
        return np.ascontiguousarray(pixels.transpose(0, 3, 1, 2))

    def run(self, images: np.ndarray, keep=None, batch: int = 16) -> dict[str, np.ndarray]:
        """images: (N, S, S, 3) RGB 0..255 photos (or the tensor input). keep: for an emulated
        program, the switch indices that stay float32 (a collection of ints)."""
        feed = {}
        if self.n_switches:
            flags = np.zeros(self.n_switches, np.bool_)
            flags[list(keep or [])] = True
            feed[KEEP_INPUT] = flags
        parts = []
        for start in range(0, len(images), batch):
            feed[self.package.input_name] = self.feed(images[start : start + batch])
            parts.append(self.session.run(list(self.outputs.values()), feed))
        return {name: np.concatenate([p[i] for p in parts]) for i, name in enumerate(self.outputs)}


class MLProgramModel(Model):
    """A Core ML artefact run by catdog's interpreter (any machine)."""

    format, engine = "coreml", "catdog ML Program interpreter"

    def __init__(self, path: str | os.PathLike, threads: int | None = None):
        self.path = Path(path)
        self.program = Program(read_package(path), threads=threads)
        self.image_size = self.program.image_size

    def _run(self, images):
        result = {k: v.astype(np.float32, copy=False) for k, v in self.program.run(images).items()}
        if CAM in result:
            result[CAM] = result[CAM].reshape(len(images), *result[CAM].shape[-3:])
        return result


__all__ = ["FLOAT32", "OPS", "const_values", "MLProgramModel", "Package", "Program", "conv_pads", "read_package"]

