"""Sensitivity-guided mixed precision: which layers to keep in float32 when a model is reduced.

A *unit* is one weighted op of the exported graph: a Conv2D / DepthwiseConv2D with the
BatchNormalization folded into it, the CAM 1x1 conv, or the Dense head. Its Keras layer names
(conv and BN) identify it in every format (`unit_pattern`, the one place that maps names).

fp16 (weights rounded to float16): each unit alone is rounded in the fp32 TFLite model (its
weight buffer patched in place; XNNPACK then computes in float32, exactly what an fp16
weight artefact does) and the calibration photos are run: max |Δp| and the CAM error against
fp32 rank the units.
int8 (weights and activations): TFLite's own QuantizationDebugger ranks the units by its
per-layer error, sqrt(MSE) / scale of each quantised op's output (1/sqrt(12) ≈ 0.29 is pure
rounding noise; more means the op quantises badly).

fp16 targets the probabilities' *logits* too: calibration photos are training photos, on which the
model is sure (P(dog) near 0 or 1, where a logit error barely moves the probability), while a photo
it is unsure of (a car, a blurred pet) moves by up to a quarter of its logit error (σ' ≤ 1/4, at
P = 0.5). So an fp16 choice is scored by the worst of max |Δp|, |Δpet|, the CAM error and that bound
for P(dog) and P(pet), each as a share of its parity tolerance.

fp16 ranks units by their error alone per weight (a few small early layers carry most of it, and
Core ML's float32 activations cost no bytes); those that fit the size budget are the candidates,
and the shortest prefix of them whose reduced model meets the target with a safety margin
(`MARGIN`) on the calibration photos is kept (binary search); int8 keeps units greedily, most
harmful first. Targets: fp16 each error ≤ 5e-3 / 2; int8 top-1 disagreement ≤ 2 % / 2 and
accuracy drop ≤ 1 point / 2. Calibration photos come from the training data, never from the
parity photos. The result is cached per model, photos and settings (`analyse`).
"""

from __future__ import annotations

import hashlib
import json
import re
import tempfile
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

from catdog.atomic import staged, write_text
from catdog.contract import CAM, INPUT_NAME, PET, PROBABILITIES, TOLERANCES
from catdog.export import converted

MARGIN = 2.0
FP16_TOLERANCE = {k: TOLERANCES["fp16"][k] for k in ("prob_max_abs", "pet_max_abs", "cam_max_rel")}  # parity's, aimed inside by MARGIN
INT8_TOLERANCE = {"disagreement": round(1 - TOLERANCES["int8"]["top1_agreement"], 6), "accuracy_drop": TOLERANCES["int8"]["accuracy_drop"]}
SENSITIVITY_PHOTOS = 64
RANKING_PHOTOS = 8  # enough to order the units; the choice is measured on all of them
# fp32 weights cost 2 bytes more than fp16 (3 more than int8): keeping at most this share of the
# parameters keeps fp16 artefacts under 0.55 of fp32's bytes (0.50 + 0.08 / 2 and the files' own
# overhead: 0.54 measured) and int8 under 0.35
KEPT_PARAMS_SHARE = {"fp16": 0.08, "int8": 0.04}
ANALYSIS_VERSION = 9
WEIGHTED_OPS = ("CONV_2D", "DEPTHWISE_CONV_2D", "FULLY_CONNECTED")
# TF op names end a layer's scope with one of these (…/block_1_depthwise_1/depthwise, …_BN_1/batchnorm/…)
_OP_TAILS = "convolution|depthwise|batchnorm|MatMul|BiasAdd|Add"  # Add: a Dense(1)'s bias in Core ML


@dataclass(frozen=True)
class Unit:
    """One weighted op: a conv (with its folded BN) or the Dense head."""

    name: str  # Keras layer name of the conv / dense
    kind: str  # Conv2D, DepthwiseConv2D, Dense
    params: int  # weights and biases of the conv and its BN
    bn: str | None = None  # the BatchNormalization layer folded into it

    @property
    def layer_names(self) -> tuple[str, ...]:
        return (self.name, self.bn) if self.bn else (self.name,)


def unit_pattern(unit: Unit) -> re.Pattern:
    """Matches the names a unit's op or tensors carry in TF, TFLite, ONNX and Core ML.

    Keras scopes a layer as `<name>_<n>` followed by the TF op (`/convolution`, `/depthwise`,
    `/batchnorm/...`, `/MatMul`); Core ML writes `/` as `_`. The op tail keeps `cam` from
    matching the model name `catdog_cam_1` and `conv` from matching its `conv_BN`.
    """
    names = "|".join(re.escape(n) for n in unit.layer_names)
    return re.compile(rf"(?:^|[/_;]){'(?:' + names + ')'}_\d+[/_](?:{_OP_TAILS})")


def matches(unit: Unit, names) -> bool:
    pattern = unit_pattern(unit)
    return any(pattern.search(n) for n in names if n)


def _all_layers(model):
    for layer in model.layers:
        yield layer
        if hasattr(layer, "layers"):  # nested backbones (a fusion holds several)
            yield from _all_layers(layer)


def weighted_units(cam_model) -> list[Unit]:
    """The units of a catdog CAM model, in graph order."""
    import keras

    layers = list(_all_layers(cam_model))
    bn_of = {}
    for layer in layers:
        if isinstance(layer, keras.layers.BatchNormalization):
            source = layer.input._keras_history.operation
            bn_of[id(source)] = layer
    units = []
    for layer in layers:
        if isinstance(layer, (keras.layers.Conv2D, keras.layers.DepthwiseConv2D, keras.layers.Dense)):
            bn = bn_of.get(id(layer))
            params = sum(int(np.prod(w.shape)) for w in layer.weights) + (sum(int(np.prod(w.shape)) for w in bn.weights) if bn else 0)
            units.append(Unit(layer.name, type(layer).__name__, params, bn.name if bn else None))
    return units


# ---------------------------------------------------------------- TFLite graph access


def _tflite_ops(model_bytes: bytes | bytearray):
    """(graph, [(op, its builtin kind), ...] in order) of a TFLite model's main subgraph."""
    from ai_edge_litert import schema_py_generated as schema

    model = schema.Model.GetRootAs(model_bytes, 0)
    graph = model.Subgraphs(0)
    op_names = {v: k for k, v in vars(schema.BuiltinOperator).items() if not k.startswith("_")}
    ops = []
    for i in range(graph.OperatorsLength()):
        op = graph.Operators(i)
        code = model.OperatorCodes(op.OpcodeIndex())
        ops.append((op, op_names.get(max(code.BuiltinCode(), code.DeprecatedBuiltinCode()))))
    return graph, ops


def tflite_weighted_ops(model_bytes: bytes | bytearray) -> list[dict]:
    """Every conv / fully-connected op of a TFLite model: index, type, output tensor name, and
    the names and tensor indices of its weight and bias."""
    graph, ops = _tflite_ops(model_bytes)
    weighted = []
    for i, (op, kind) in enumerate(ops):
        if kind not in WEIGHTED_OPS:
            continue
        inputs = [op.Inputs(j) for j in range(op.InputsLength())]
        weighted.append(
            {
                "index": i,
                "type": kind,
                "output": graph.Tensors(op.Outputs(0)).Name().decode(),
                "weight": graph.Tensors(inputs[1]).Name().decode(),
                "weight_tensor": inputs[1],
            }
        )
    return weighted


# The pet head's arithmetic after its fully-connected layers (log-sum-exp, the sum, the sigmoid)
# stays float32 in every int8 artefact: quantised to 8 bits, exp and log of a 1,000-logit softmax
# collapse (P(pet) came out 0.50 on every photo); its weights are int8 like the rest.
FLOAT_PET_SCOPE = "pet_head"


def tflite_float_pet_ops(model_bytes: bytes | bytearray) -> list[str]:
    """Output tensor names of the pet head's ops that stay float32 in int8: every op of the pet
    head but its fully-connected ones, and the ops downstream of those (the sigmoid)."""
    graph, ops = _tflite_ops(model_bytes)
    floated, names = set(), []
    for op, kind in ops:  # topological order
        out = graph.Tensors(op.Outputs(0)).Name().decode()
        reads_floated = any(op.Inputs(j) in floated for j in range(op.InputsLength()))
        # the slice that feeds the fully-connected layers stays int8 too: a float slice would make
        # its readers, the 1.28 M ImageNet weights, float32 as well
        # and so does a weighted op outside the head that reads its float output (the cat/dog head's
        # FULLY_CONNECTED reads the ImageNet dog-vs-cat log-odds): its input is quantised instead
        int8 = kind in ("FULLY_CONNECTED", "STRIDED_SLICE", "CONV_2D", "DEPTHWISE_CONV_2D")
        if not int8 and (FLOAT_PET_SCOPE in out or reads_floated):
            floated.add(op.Outputs(0))
            names.append(out)
    return names


def tflite_ops_of(units: list[Unit], ops: list[dict]) -> dict[str, dict]:
    """unit name -> its TFLite op (matched on the weight tensor's name)."""
    found = {}
    for unit in units:
        hits = [op for op in ops if matches(unit, [op["weight"]])]
        if len(hits) == 1:
            found[unit.name] = hits[0]
    return found


class _PatchedTFLite:
    """An fp32 TFLite model whose chosen units' weights can be rounded to fp16 in place (biases
    stay float32, as in the fp16 artefacts)."""

    def __init__(self, path: Path, units: list[Unit]):
        from ai_edge_litert import schema_py_generated as schema

        self.buffer = bytearray(Path(path).read_bytes())
        model = schema.Model.GetRootAs(self.buffer, 0)
        graph = model.Subgraphs(0)
        self.views: dict[str, list[np.ndarray]] = {}
        for name, op in tflite_ops_of(units, tflite_weighted_ops(self.buffer)).items():
            data = model.Buffers(graph.Tensors(op["weight_tensor"]).Buffer()).DataAsNumpy()
            self.views[name] = [data.view(np.float32)]  # a view into self.buffer
        self.original = {k: [v.copy() for v in vs] for k, vs in self.views.items()}

    def run(self, images: np.ndarray, rounded: set[str] = frozenset()) -> dict[str, np.ndarray]:
        for name, views in self.views.items():
            for view, original in zip(views, self.original[name]):
                with np.errstate(over="ignore"):  # a weight past fp16's range becomes inf, as in the fp16 file: it ranks first
                    view[:] = original.astype(np.float16).astype(np.float32) if name in rounded else original
        from catdog.runtime import tflite_bytes

        return tflite_bytes(bytes(self.buffer)).run(images)


def logit(q: np.ndarray) -> np.ndarray:
    """log(q / (1 - q)) in float64, finite for q of 0 and 1."""
    q = q.astype(np.float64)
    return np.log(np.clip(q, 1e-30, None)) - np.log(np.clip(1 - q, 1e-30, None))


def output_error(reference: dict, outputs: dict) -> dict:
    """max |Δp|, max |Δpet|, CAM max |Δ| relative to the largest |CAM|, and the largest change of
    the logits of P(dog) and P(pet); infinite where an output is not finite (a weight past
    fp16's 65504 becomes inf)."""
    p_ref, p = reference[PROBABILITIES].astype(np.float64), outputs[PROBABILITIES].astype(np.float64)
    c_ref, c = reference[CAM].astype(np.float64), outputs[CAM].astype(np.float64)
    pet_ref, pet = reference[PET].astype(np.float64), outputs[PET].astype(np.float64)
    keys = ("prob_max_abs", "pet_max_abs", "cam_max_rel", "logit_max_abs", "pet_logit_max_abs")
    if not (np.isfinite(p).all() and np.isfinite(c).all() and np.isfinite(pet).all()):
        return {k: float("inf") for k in keys}
    margin = lambda q: np.log(np.clip(q[:, 1], 1e-30, None)) - np.log(np.clip(q[:, 0], 1e-30, None))  # noqa: E731
    return {
        "prob_max_abs": float(np.abs(p - p_ref).max()),
        "pet_max_abs": float(np.abs(pet - pet_ref).max()),
        "cam_max_rel": float(np.abs(c - c_ref).max() / (np.abs(c_ref).max() or 1.0)),
        "logit_max_abs": float(np.abs(margin(p) - margin(p_ref)).max()),
        "pet_logit_max_abs": float(np.abs(logit(pet) - logit(pet_ref)).max()),
    }


# σ'(z) ≤ 1/4: the most a probability can move for a logit change, reached at P = 0.5
SIGMOID_SLOPE = 0.25


def _fp16_shares(error: dict) -> dict:
    """Each fp16 error as a share of its parity tolerance; the logit changes as the probability
    change they would make on a photo the model is unsure of."""
    shares = {k: error[k] / FP16_TOLERANCE[k] for k in FP16_TOLERANCE}
    shares["prob_bound"] = SIGMOID_SLOPE * error["logit_max_abs"] / FP16_TOLERANCE["prob_max_abs"]
    shares["pet_bound"] = SIGMOID_SLOPE * error["pet_logit_max_abs"] / FP16_TOLERANCE["pet_max_abs"]
    return shares


FP16_ERROR_WORDS = {
    "prob_max_abs": "max |Δp|", "pet_max_abs": "max |ΔP(pet)|", "cam_max_rel": "the CAM error",
    "prob_bound": "the P(dog) logit's error (a quarter of it at P 0.5)", "pet_bound": "the P(pet) logit's error (a quarter of it at P 0.5)",
}


def _fp16_score(error: dict) -> float:
    return max(_fp16_shares(error).values())


def _fp16_ok(error: dict) -> bool:
    return _fp16_score(error) <= 1 / MARGIN


def _within_budget(ranked: list[str], params: dict[str, int], budget: float) -> list[str]:
    """The ranking, skipping each unit that would take the kept weights past the budget."""
    candidates = []
    for name in ranked:
        if sum(params[n] for n in candidates) + params[name] <= budget:
            candidates.append(name)
    return candidates


def _fp16_choice(names: list[str], units: list[Unit], alone: dict, error_of) -> dict:
    """The shortest prefix of the units ranked by error alone per weight (within the size budget)
    whose reduced model meets FP16_TOLERANCE / MARGIN (`error_of(kept)` measures one on every
    calibration photo); all the candidates where none does (best effort). Binary search: about 7
    measurements."""
    params = {u.name: u.params for u in units}
    # per weight: many small layers do more within the size budget than a few large ones (Core ML's
    # float32 activations cost no bytes; on the MobileNetV2 model 24 units ranked so met the target,
    # the 11 largest-error ones that fit did not; TFLite's fused model: the logits' bound met with
    # 6 % of the weights ranked so, missed with the 8 % ranked by error alone)
    ranked = sorted(names, key=lambda n: -_fp16_score(alone[n]) / max(params[n], 1))
    candidates = _within_budget(ranked, params, KEPT_PARAMS_SHARE["fp16"] * sum(params.values()))
    measured: dict[int, dict] = {}

    def error(k: int) -> dict:
        if k not in measured:
            measured[k] = error_of(candidates[:k])
        return measured[k]

    lo, hi = 0, len(candidates)
    if not _fp16_ok(error(hi)):
        lo = hi
    while lo < hi:  # the error falls, unevenly, as units are kept
        mid = (lo + hi) // 2
        if _fp16_ok(error(mid)):
            hi = mid
        else:
            lo = mid + 1
    steps = [{"kept": candidates[:k], **measured[k]} for k in sorted(measured)]
    return {"alone": alone, "ranked": ranked, "kept": candidates[:lo], "steps": steps, "met": _fp16_ok(error(lo)), "final": error(lo)}


def fp16_analysis(fp32_tflite: Path, units: list[Unit], images: np.ndarray, progress=None) -> dict:
    """TFLite's and ONNX's fp16 set: each unit's weights alone rounded in the fp32 TFLite model
    (on RANKING_PHOTOS photos) rank the units; `_fp16_choice` picks the set on every photo."""
    model = _PatchedTFLite(fp32_tflite, units)
    names = [u.name for u in units if u.name in model.views]
    reference = model.run(images)
    few = images[:RANKING_PHOTOS]
    few_reference = {k: v[: len(few)] for k, v in reference.items()}
    alone = {}
    for name in names:
        alone[name] = output_error(few_reference, model.run(few, {name}))
        if progress:
            progress()
    choice = _fp16_choice(names, units, alone, lambda kept: output_error(reference, model.run(images, set(names) - set(kept))))
    uniform = output_error(reference, model.run(images, set(names)))
    return {**choice, "uniform": {"kept": [], **uniform}}


# ---------------------------------------------------------------- Core ML fp16

# Core ML's float16 program rounds weights, biases and every activation, so a unit kept float32
# there is its conv *and* the ops that follow it up to the next conv (activation, pad, residual
# add): `coreml_unit` is the one rule, used by the export's op selector and by the analysis.
COREML_WEIGHTED = ("conv", "linear")
COREML_FIRST_INPUT = ("x", "values", "probabilities")  # the input an op's unit follows
COREML_RANKING_PHOTOS = 4


def coreml_always_float32(name: str) -> bool:
    """coremltools applies an ImageType's scale and bias in float32 whatever the precision."""
    return name.startswith(f"{INPUT_NAME}__")


def coreml_unit(op, kind, name, first_input, units, memo: dict) -> str | None:
    """The unit an op of a Core ML program belongs to (None: none). A conv/linear op is the
    unit its name matches; another op belongs to the unit of the op that makes its first input
    (x, values[0], probabilities). kind(op), name(op), first_input(op) -> op or None adapt this
    to coremltools' MIL ops (export) and to catdog's interpreter's (the analysis)."""
    key = name(op)
    if key not in memo:
        if kind(op) in COREML_WEIGHTED:
            hits = [u.name for u in units if matches(u, [key])]
            memo[key] = hits[0] if len(hits) == 1 else None
        else:
            producer = first_input(op)
            memo[key] = None if producer is None else coreml_unit(producer, kind, name, first_input, units, memo)
    return memo[key]


def mil_first_input(op):
    """coremltools' MIL op -> the op that makes its first tensor input (None: a const or an input)."""
    for key in COREML_FIRST_INPUT:
        var = op.inputs.get(key) if hasattr(op, "inputs") else None
        var = var[0] if isinstance(var, (list, tuple)) and var else var
        if var is not None and getattr(var, "op", None) is not None and var.op.op_type != "const":
            return var.op
    return None


def coreml_op_selector(keep: list[Unit]):
    """FP16ComputePrecision's op_selector: True (float16) for every op but the kept units' and
    the ImageType's preprocessing."""
    kept = {u.name for u in keep}
    memo: dict = {}

    def selector(op) -> bool:
        if coreml_always_float32(op.name):
            return False
        return coreml_unit(op, lambda o: o.op_type, lambda o: o.name, mil_first_input, keep, memo) not in kept

    return selector


def coreml_switches(package, units: list[Unit]):
    """For catdog's interpreter: MilOp -> the index of its unit in `units` (a switch), FLOAT32 for
    the always-float32 ops, None for ops of no unit (always float16)."""
    from catdog.runtime.mlprogram import FLOAT32

    producer = {out[0]: op for op in package.ops for out in op.outputs}
    index = {u.name: i for i, u in enumerate(units)}
    memo: dict = {}

    def first_input(op):
        for key in COREML_FIRST_INPUT:
            bindings = op.inputs.get(key)
            if bindings and isinstance(bindings[0], str) and bindings[0] in producer:
                p = producer[bindings[0]]
                return None if p.type in ("const", "constexpr_affine_dequantize") else p
        return None

    def switch_of(op):
        if coreml_always_float32(op.name):
            return FLOAT32
        unit = coreml_unit(op, lambda o: o.type, lambda o: o.name, first_input, units, memo)
        return None if unit is None else index[unit]

    return switch_of


def coreml_fp16_analysis(fp32_package: Path, units: list[Unit], images: np.ndarray, progress=None, threads: int | None = None) -> dict:
    """Core ML's own float32 set: the float16 program Core ML's conversion makes is emulated by
    catdog's interpreter from the fp32 package (weights, biases and activations in float16, the
    kept units' ops in float32), one session for every choice (on `threads` threads, default every
    CPU). Units are ranked by the error of each alone in float16 (on a few photos); `_fp16_choice`
    picks the set on every photo."""
    from catdog.runtime.mlprogram import Program, read_package

    package = read_package(fp32_package)
    emulated = Program(package, coreml_switches(package, units), len(units), threads=threads)
    names = [units[i].name for i in emulated.switched]
    index = {u.name: i for i, u in enumerate(units)}
    reference = Program(package, threads=threads).run(images)
    run = lambda kept, photos: emulated.run(photos, [index[n] for n in kept])  # noqa: E731
    few = images[:COREML_RANKING_PHOTOS]
    few_reference = {k: v[: len(few)] for k, v in reference.items()}
    alone = {}
    for name in names:
        alone[name] = output_error(few_reference, run(set(names) - {name}, few))
        if progress:
            progress()
    choice = _fp16_choice(names, units, alone, lambda kept: output_error(reference, run(kept, images)))
    uniform = output_error(few_reference, run([], few))  # on the ranking photos: the search never needs it on all
    return {**choice, "uniform": {**uniform, "photos": len(few)}, "engine": "catdog ML Program interpreter (emulated float16 program)"}


# ---------------------------------------------------------------- int8


def tflite_converter(cam_model):
    """A TFLiteConverter for the CAM model, built the way Keras' LiteRT exporter builds it
    (ExportArchive -> SavedModel -> from_saved_model), so the QuantizationDebugger can use it.
    The SavedModel is written once per model (`catdog.export.converted`)."""
    import tensorflow as tf

    converter = tf.lite.TFLiteConverter.from_saved_model(str(converted.saved_model(cam_model)))
    converter.experimental_enable_resource_variables = True
    return converter


def fp32_tflite(cam_model) -> bytes:
    """The CAM model as an fp32 TFLite flatbuffer (converted once per model)."""
    return converted.once("tflite_fp32", (converted.model_key(cam_model),), lambda: tflite_converter(cam_model).convert())


def int8_converter(cam_model, calibration: np.ndarray, float_fallback: bool):
    import tensorflow as tf

    converter = tflite_converter(cam_model)
    converter.optimizations = [tf.lite.Optimize.DEFAULT]
    converter.representative_dataset = lambda: ([image[None].astype(np.float32)] for image in calibration)
    ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8] + ([tf.lite.OpsSet.TFLITE_BUILTINS] if float_fallback else [])
    converter.target_spec.supported_ops = ops
    return converter


def int8_tflite_model(cam_model, calibration: np.ndarray, keep: list[str], units: list[Unit]) -> bytes:
    """Integer TFLite model; the units in `keep` and the pet head's arithmetic stay float32
    (QuantizationDebugger's denylist, `int8_denylist`). Made once per model,
    calibration set and kept units: the analysis measures the very flatbuffer the export writes."""
    key = (converted.model_key(cam_model), converted.array_key(calibration), tuple(sorted(keep)))
    return converted.once("tflite_int8", key, lambda: _int8_tflite_model(cam_model, calibration, keep, units))


def int8_denylist(cam_model, keep: list[str], units: list[Unit]) -> list[str]:
    """The TFLite nodes left float32 in int8: the kept units' and the pet head's arithmetic."""
    fp32 = fp32_tflite(cam_model)
    kept_units = [u for u in units if u.name in keep]
    nodes = [op["output"] for op in tflite_weighted_ops(fp32) if any(matches(u, [op["weight"]]) for u in kept_units)]
    return nodes + tflite_float_pet_ops(fp32)


def _int8_debugger(cam_model, calibration: np.ndarray, keep: list[str], units: list[Unit], debug_images: np.ndarray):
    """TFLite's QuantizationDebugger over the int8 conversion, with `int8_denylist` left float32."""
    import tensorflow as tf

    return tf.lite.experimental.QuantizationDebugger(
        converter=int8_converter(cam_model, calibration, float_fallback=True),
        debug_dataset=lambda: ([image[None].astype(np.float32)] for image in debug_images),
        debug_options=tf.lite.experimental.QuantizationDebugOptions(denylisted_nodes=int8_denylist(cam_model, keep, units)),
    )


def _int8_tflite_model(cam_model, calibration: np.ndarray, keep: list[str], units: list[Unit]) -> bytes:
    return _int8_debugger(cam_model, calibration, keep, units, calibration[:4]).get_nondebug_quantized_model()


def int8_layer_statistics(cam_model, calibration: np.ndarray, images: np.ndarray, units: list[Unit]) -> dict[str, float]:
    """unit name -> sqrt(MSE)/scale of its quantised output, from TFLite's QuantizationDebugger."""
    import csv
    import io

    debugger = _int8_debugger(cam_model, calibration, [], units, images)
    debugger.run()
    text = io.StringIO()
    debugger.layer_statistics_dump(text)
    # the debugger calibrated the plain int8 model on these photos already: the analysis' first
    # step (and the uniform int8 artefact) need not calibrate it again
    key = (converted.model_key(cam_model), converted.array_key(calibration), ())
    converted.once("tflite_int8", key, debugger.get_nondebug_quantized_model)
    rows = list(csv.DictReader(io.StringIO(text.getvalue())))
    scores = {}
    for unit in units:
        hits = [r for r in rows if matches(unit, re.split(r"[;]", r["tensor_name"]))]
        if hits:
            r = hits[0]
            scale = float(r["scale"]) or 1.0
            scores[unit.name] = float(np.sqrt(float(r["mean_squared_error"])) / scale)
    return scores


def _run_tflite_bytes(model: bytes, images: np.ndarray) -> dict[str, np.ndarray]:
    from catdog.runtime import tflite_bytes

    return tflite_bytes(model).run(images)


def agreement_error(reference: dict, outputs: dict, labels: np.ndarray) -> dict:
    p_ref, p = reference[PROBABILITIES], outputs[PROBABILITIES]
    acc = lambda q: float(np.mean((q[:, 1] >= 0.5) == (labels == 1)))  # noqa: E731
    return {
        "disagreement": float(np.mean(p.argmax(1) != p_ref.argmax(1))),
        "accuracy_drop": acc(p_ref) - acc(p),
        "prob_max_abs": float(np.abs(p - p_ref).max()),
    }


def _int8_ok(error: dict) -> bool:
    return all(error[k] <= INT8_TOLERANCE[k] / MARGIN for k in INT8_TOLERANCE)


def int8_analysis(cam_model, fp32_tflite: Path, units, calibration, images, labels, max_kept: int = 8, progress=None) -> dict:
    """Rank units by the debugger's per-layer error; keep the fewest float so that the int8
    model's top-1 disagreement and accuracy drop meet INT8_TOLERANCE / MARGIN. progress: called
    with 1 after each quantised model measured (the statistics, the uniform model, each kept layer)."""
    step = progress or (lambda n: None)
    scores = int8_layer_statistics(cam_model, calibration, images[:16], units)
    step(1)
    ranked = sorted(scores, key=lambda n: -scores[n])
    reference = _run_tflite_bytes(Path(fp32_tflite).read_bytes(), images)
    kept, steps = [], []
    error = agreement_error(reference, _run_tflite_bytes(int8_tflite_model(cam_model, calibration, [], units), images), labels)
    steps.append({"kept": [], **error})
    step(1)
    budget = KEPT_PARAMS_SHARE["int8"] * sum(u.params for u in units)
    params = {u.name: u.params for u in units}
    for name in ranked:
        if _int8_ok(error) or len(kept) == max_kept:
            break
        if sum(params[n] for n in kept) + params[name] > budget:
            continue
        kept.append(name)
        model = int8_tflite_model(cam_model, calibration, kept, units)
        error = agreement_error(reference, _run_tflite_bytes(model, images), labels)
        steps.append({"kept": list(kept), **error})
        step(1)
    return {"alone": {n: {"sqrt_mse_over_scale": s} for n, s in scores.items()}, "ranked": ranked, "kept": kept,
            "steps": steps, "met": _int8_ok(error), "uniform": steps[0]}


# ---------------------------------------------------------------- the analysis, cached


def _cache_key(model_sha256: str, images: np.ndarray, calibration: np.ndarray | None, precisions, temperature: float = 1.0) -> str:
    # the temperature folded in (--calibrated) is part of the model analysed: another key
    folded = f":T{temperature!r}" if temperature != 1.0 else ""
    h = hashlib.sha256(f"v{ANALYSIS_VERSION}:{model_sha256}{folded}:{MARGIN}:{sorted(precisions)}".encode())
    h.update(np.ascontiguousarray(images).tobytes())
    if calibration is not None:
        h.update(np.ascontiguousarray(calibration).tobytes())
    return h.hexdigest()[:16]


def analyse(
    cam_model,
    model_sha256: str,
    images: np.ndarray,
    labels: np.ndarray,
    precisions: list[str],
    calibration: np.ndarray | None = None,
    cache_dir: Path | None = None,
    progress: bool = True,
    coreml_fp16=None,
    temperature: float = 1.0,
) -> dict:
    """Per-layer sensitivity and the kept-float32 layers for each reduced precision in
    `precisions` ("fp16", "int8"). images, labels: sensitivity photos (training photos, never
    parity photos) at the model's input size. calibration: int8 calibration photos.

    coreml_fp16: for Core ML's own fp16 choice ("coreml_fp16"), a function (units, images, progress)
    that starts `coreml_fp16_analysis` of the model's fp32 .mlpackage and returns a function giving
    its result (export_run runs it in a second process beside the analyses here); called only when
    the analysis is not cached.

    Cached in `cache_dir` (one JSON per model, temperature folded in, photos and settings): a
    second call is free. Each precision's result is also cached on its own, so an export of a
    subset (`--formats coreml`, an app's recipe) reuses what `catdog run` measured (it measured the
    int8 analysis again, 100 s, the key being the whole set of precisions).
    """
    from tqdm import tqdm

    if coreml_fp16 is not None and "fp16" in precisions:
        precisions = [*precisions, "coreml_fp16"]
    key = _cache_key(model_sha256, images, calibration, precisions, temperature)
    cached = Path(cache_dir) / f"sensitivity_{key}.json" if cache_dir else None
    if cached and cached.is_file():
        return json.loads(cached.read_text())
    order = [p for p in ("fp16", "int8", "coreml_fp16") if p in precisions]  # the order they are computed in
    alone = {p: Path(cache_dir) / f"sensitivity_{_cache_key(model_sha256, images, calibration, [p], temperature)}.json"
             for p in order} if cache_dir else {}
    found = {}
    for p, path in alone.items():
        try:
            found[p] = json.loads(path.read_text())["precisions"][p]
        except (OSError, ValueError, KeyError, TypeError):
            pass
    todo = [p for p in order if p not in found]
    units = weighted_units(cam_model)
    result = {
        "version": ANALYSIS_VERSION,
        "model_sha256": model_sha256,
        "photos": int(len(images)),
        "margin": MARGIN,
        "targets": {"fp16": {k: v / MARGIN for k, v in FP16_TOLERANCE.items()}, "int8": {k: v / MARGIN for k, v in INT8_TOLERANCE.items()}},
        "units": [asdict(u) for u in units],
        "precisions": {},
    }
    computed = {}
    coreml_bar = None
    if "coreml_fp16" in todo:  # started first: it may run beside the TFLite analyses below
        coreml_bar = tqdm(total=len(units), desc="sensitivity Core ML fp16", unit="layer", disable=not progress, leave=False)
        coreml_result = coreml_fp16(units, images, coreml_bar.update)
    if {"fp16", "int8"} & set(todo):
        with tempfile.TemporaryDirectory() as tmp:
            fp32 = Path(tmp) / "fp32.tflite"
            fp32.write_bytes(fp32_tflite(cam_model))
            if "fp16" in todo:
                with tqdm(total=len(units), desc="sensitivity fp16", unit="layer", disable=not progress) as bar:
                    computed["fp16"] = fp16_analysis(fp32, units, images, progress=bar.update)
            if "int8" in todo:  # about 100 s with no word on the console: a bar (at most 8 layers kept, so 10 steps)
                with tqdm(total=10, desc="sensitivity int8", unit="model", disable=not progress, leave=False) as bar:
                    computed["int8"] = int8_analysis(cam_model, fp32, units, calibration, images, labels, progress=bar.update)
    if coreml_bar is not None:
        computed["coreml_fp16"] = coreml_result()
        coreml_bar.close()
    result["precisions"] = {p: found[p] if p in found else computed[p] for p in order}
    if cached:
        cached.parent.mkdir(parents=True, exist_ok=True)
        for p in computed:
            write_text(alone[p], json.dumps({**result, "precisions": {p: computed[p]}}, indent=1))
        write_text(cached, json.dumps(result, indent=1))
    return result


def missed_targets(analysis: dict) -> list[str]:
    """One line per reduced precision whose choice misses its target on the calibration photos
    (best effort: as many units kept as the size budget, or int8's cap, allows); parity then decides."""
    names = {"fp16": "fp16 (TFLite, ONNX)", "coreml_fp16": "Core ML fp16", "int8": "int8"}
    lines = []
    for key, info in analysis["precisions"].items():
        if info.get("met", True):
            continue
        if key == "int8":
            worst = f"disagreement {info['steps'][-1]['disagreement']:.1%}, accuracy drop {info['steps'][-1]['accuracy_drop']:.1%}"
        else:
            shares = _fp16_shares(info.get("final") or info["steps"][-1])
            what = max(shares, key=shares.get)
            worst = f"{FP16_ERROR_WORDS[what]} at {shares[what]:.2f} of its tolerance"
        lines.append(
            f"catdog: note: {names.get(key, key)} misses its target ({1 / MARGIN:g} of the tolerance) on the {analysis['photos']} calibration photos "
            f"with {len(info['kept'])} layers float32, as many as it may keep: {worst}; parity measures the artefacts"
        )
    return lines


def kept_units(analysis: dict, precision: str, fmt: str = "tflite") -> list[Unit]:
    """The units a format keeps float32 at a precision: Core ML fp16 its own choice, the others
    (and Core ML int8, whose weights are what int8 changes) TFLite's."""
    units = {u["name"]: Unit(**u) for u in analysis["units"]}
    key = "coreml_fp16" if fmt == "coreml" and precision == "fp16" and "coreml_fp16" in analysis["precisions"] else precision
    return [units[n] for n in analysis["precisions"].get(key, {}).get("kept", [])]


def _kept_text(kept: list[str], listed: int = 6) -> str:
    """The kept layers for a chart title: named where few, else counted (a title of 48 names ran
    off the figure; sensitivity.json lists them all)."""
    if len(kept) <= listed:
        return f"kept float32: {', '.join(kept) or 'none'}"
    return f"the {len(kept)} layers kept float32, listed in sensitivity.json"


def plot(analysis: dict, path: Path) -> None:
    """Bar chart of each unit's error alone, per precision, kept units in red."""
    fig = figure(analysis)  # selects the Agg backend before pyplot is imported
    import matplotlib.pyplot as plt

    with staged(path) as tmp:
        fig.savefig(tmp, dpi=110)
    plt.close(fig)


def figure(analysis: dict):
    """The matplotlib figure `plot` writes."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    precisions = list(analysis["precisions"])
    names = [u["name"] for u in analysis["units"]]
    fig, axes = plt.subplots(len(precisions), 1, figsize=(max(8, len(names) * 0.16), 3.2 * len(precisions)), squeeze=False)
    for ax, precision in zip(axes[:, 0], precisions):
        info = analysis["precisions"][precision]
        if precision == "int8":
            values = [info["alone"].get(n, {}).get("sqrt_mse_over_scale", 0.0) for n in names]
        else:  # the worst of the errors (and the logits' bounds), as a share of its tolerance
            values = [_fp16_score(info["alone"][n]) if n in info["alone"] else 0.0 for n in names]
        colours = ["tab:red" if n in info["kept"] else "tab:blue" for n in names]
        ax.bar(range(len(names)), values, color=colours)
        ax.set_xticks(range(len(names)), names, rotation=90, fontsize=6)
        ax.set_ylabel("√MSE / scale" if precision == "int8" else "error / tolerance, alone")
        ax.set_title(f"{precision}: error of each layer reduced alone (red: {_kept_text(info['kept'])})", fontsize=9)
        if precision != "int8":
            ax.axhline(1 / MARGIN, color="grey", lw=0.8, ls="--")
    fig.tight_layout()
    return fig
