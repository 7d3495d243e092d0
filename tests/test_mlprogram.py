"""catdog's ML Program interpreter, op by op: tiny real Core ML programs (built with coremltools'
MIL builder and saved as .mlpackage) against TensorFlow and numpy on small real tensors."""

from __future__ import annotations

import warnings

import numpy as np
import pytest

ct = pytest.importorskip("coremltools")
tf = pytest.importorskip("tensorflow")
from coremltools.converters.mil import Builder as mb  # noqa: E402

from catdog.errors import CatdogError  # noqa: E402
from catdog.runtime.mlprogram import Program, read_package  # noqa: E402

RNG = np.random.default_rng(0)


def save(prog, path, precision=ct.precision.FLOAT32, inputs=None, **kwargs):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        model = ct.convert(
            prog,
            convert_to="mlprogram",
            compute_precision=precision,
            minimum_deployment_target=ct.target.iOS16,
            inputs=inputs,
            **kwargs,
        )
    model.save(str(path))
    return model


def run(path, x) -> np.ndarray:
    out = Program(read_package(path)).run(x)
    assert len(out) == 1
    return next(iter(out.values()))


def tf_conv(x_nchw, weight, bias, strides, padding, groups):
    """TensorFlow's conv (NHWC) of an NCHW input with a MIL (O, I/groups, kH, kW) weight."""
    x = tf.constant(x_nchw.transpose(0, 2, 3, 1))
    if isinstance(padding, list):  # explicit [[top, bottom], [left, right]]
        x = tf.pad(x, [[0, 0], *padding, [0, 0]])
        padding = "VALID"
    if groups == 1:
        y = tf.nn.conv2d(x, weight.transpose(2, 3, 1, 0), strides=strides, padding=padding)
    else:  # depthwise: one filter per channel
        y = tf.nn.depthwise_conv2d(x, weight.transpose(2, 3, 0, 1), strides=[1, *strides, 1], padding=padding)
    if bias is not None:
        y = y + bias
    return y.numpy().transpose(0, 3, 1, 2)


@pytest.mark.parametrize("groups", [1, 6])
@pytest.mark.parametrize("stride", [1, 2])
@pytest.mark.parametrize("pad_type", ["valid", "same", "custom"])
def test_conv_matches_tensorflow(tmp_path, pad_type, stride, groups):
    """Every pad type, stride and group count catdog's exports use (a depthwise conv is groups = C),
    on odd and even sizes."""
    channels, size = 6, 11 if stride == 2 else 10
    weight = RNG.normal(size=(channels, channels // groups, 3, 3)).astype(np.float32)
    bias = RNG.normal(size=channels).astype(np.float32)
    pad = [1, 2, 0, 1]
    kwargs = {"pad": pad} if pad_type == "custom" else {}

    @mb.program(input_specs=[mb.TensorSpec(shape=(1, channels, size, size))], opset_version=ct.target.iOS16)
    def prog(x):
        return mb.conv(x=x, weight=weight, bias=bias, strides=[stride, stride], pad_type=pad_type, groups=groups, **kwargs)

    save(prog, tmp_path / "conv.mlpackage")
    x = RNG.uniform(-2, 2, size=(3, channels, size, size)).astype(np.float32)  # a batch of 3
    padding = {"valid": "VALID", "same": "SAME", "custom": [pad[0:2], pad[2:4]]}[pad_type]
    expected = tf_conv(x, weight, bias, [stride, stride], padding, groups)
    got = run(tmp_path / "conv.mlpackage", x)
    assert got.shape == expected.shape
    np.testing.assert_allclose(got, expected, atol=2e-5, rtol=1e-5)


def test_float16_program_rounds_every_op_output(tmp_path):
    """A float16 program: the input is cast to float16, each op's output is rounded to float16
    (round to nearest even), exactly as numpy rounds the float32 result of that op."""
    y = np.float32(1.0 / 3.0)

    @mb.program(input_specs=[mb.TensorSpec(shape=(1, 64))], opset_version=ct.target.iOS16)
    def prog(x):
        return mb.mul(x=mb.add(x=x, y=y), y=np.float32(3.0))

    save(prog, tmp_path / "fp16.mlpackage", precision=ct.precision.FLOAT16)
    assert [op.type for op in read_package(tmp_path / "fp16.mlpackage").ops if op.type != "const"] == ["cast", "add", "mul", "cast"]
    x = RNG.uniform(-100, 100, size=(1, 64)).astype(np.float32)
    h = np.float16
    expected = (((x.astype(h).astype(np.float32) + np.float32(h(y))).astype(h).astype(np.float32)) * 3).astype(h).astype(np.float32)
    got = run(tmp_path / "fp16.mlpackage", x)
    np.testing.assert_array_equal(got, expected)
    assert np.abs(got - (x + y) * 3).max() > 1e-3  # float32 arithmetic would not round so much


def test_ops_that_only_move_float16_values_are_not_rounded_again(tmp_path, monkeypatch):
    """relu, relu6, max_pool, pad, concat, transpose, reshape of float16 values are float16
    already: the interpreter leaves their Cast pair out (fewer nodes) and every number stays the
    same as with the pair (what rounding them again would give)."""
    import catdog.runtime.mlprogram as mlprogram

    @mb.program(input_specs=[mb.TensorSpec(shape=(1, 4, 6, 6))], opset_version=ct.target.iOS16)
    def prog(x):
        a = mb.relu6(x=mb.mul(x=x, y=np.float32(0.37)))
        b = mb.max_pool(x=mb.relu(x=mb.add(x=x, y=np.float32(0.1))), kernel_sizes=[2, 2], strides=[1, 1], pad_type="same")
        c = mb.pad(x=mb.concat(values=[a, b], axis=1), pad=[0, 0, 0, 0, 1, 1, 1, 1], mode="constant", constant_val=0.0)
        return mb.reshape(x=mb.transpose(x=c, perm=[0, 2, 3, 1]), shape=[1, -1])

    save(prog, tmp_path / "fp16.mlpackage", precision=ct.precision.FLOAT16)
    x = RNG.uniform(-10, 10, size=(1, 4, 6, 6)).astype(np.float32)
    package = read_package(tmp_path / "fp16.mlpackage")
    lean = Program(package)
    fast = lean.run(x)
    monkeypatch.setattr(mlprogram, "EXACT_OPS", ())
    full = Program(package)
    slow = full.run(x)
    for k in fast:
        np.testing.assert_array_equal(fast[k], slow[k])
    casts = lambda p: sum(n.op_type == "Cast" for n in p.graph.node)  # noqa: E731
    assert casts(lean) <= casts(full) - 2 * 6  # relu6, relu, max_pool, concat, pad, transpose: no pair each


def test_int8_weights_are_dequantised_as_core_ml_defines(tmp_path):
    """linear_quantize_weights stores an int8 weight behind constexpr_affine_dequantize; the
    interpreter's conv equals the conv with coremltools' own dequantised weight."""
    weight = RNG.normal(size=(8, 4, 3, 3)).astype(np.float32)

    @mb.program(input_specs=[mb.TensorSpec(shape=(1, 4, 8, 8))], opset_version=ct.target.iOS16)
    def prog(x):
        return mb.conv(x=x, weight=weight, pad_type="same")

    model = save(prog, tmp_path / "fp32.mlpackage")
    config = ct.optimize.coreml.OptimizationConfig(
        global_config=ct.optimize.coreml.OpLinearQuantizerConfig(mode="linear_symmetric", dtype="int8", weight_threshold=1)
    )
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        int8 = ct.optimize.coreml.linear_quantize_weights(model, config)
    int8.save(str(tmp_path / "int8.mlpackage"))
    ops = read_package(tmp_path / "int8.mlpackage").ops
    assert "constexpr_affine_dequantize" in [op.type for op in ops]
    dequantise = next(op for op in int8._mil_program.functions["main"].operations if op.op_type == "constexpr_affine_dequantize")
    core_ml_weight = np.asarray(dequantise.materialized_val_inference(), np.float32)
    assert np.abs(core_ml_weight - weight).max() > 1e-4  # really quantised
    x = RNG.uniform(-2, 2, size=(2, 4, 8, 8)).astype(np.float32)
    expected = tf_conv(x, core_ml_weight, None, [1, 1], "SAME", 1)
    np.testing.assert_allclose(run(tmp_path / "int8.mlpackage", x), expected, atol=2e-5, rtol=1e-5)


@pytest.mark.parametrize("pad_type", ["valid", "same"])
def test_pools_match_tensorflow(tmp_path, pad_type):
    """max_pool (ResNet50's stem) and avg_pool, 3x3 stride 2, on an odd size."""

    @mb.program(input_specs=[mb.TensorSpec(shape=(1, 3, 9, 9))], opset_version=ct.target.iOS16)
    def prog(x):
        a = mb.max_pool(x=x, kernel_sizes=[3, 3], strides=[2, 2], pad_type=pad_type)
        b = mb.avg_pool(x=x, kernel_sizes=[3, 3], strides=[2, 2], pad_type=pad_type, exclude_padding_from_average=True)
        return mb.concat(values=[a, b], axis=1)

    save(prog, tmp_path / "pool.mlpackage")
    x = RNG.uniform(-2, 2, size=(2, 3, 9, 9)).astype(np.float32)
    nhwc = tf.constant(x.transpose(0, 2, 3, 1))
    padding = pad_type.upper()
    a = tf.nn.max_pool2d(nhwc, 3, 2, padding).numpy()
    b = tf.nn.avg_pool2d(nhwc, 3, 2, padding).numpy()  # TensorFlow's SAME average leaves padding out
    expected = np.concatenate([a, b], axis=-1).transpose(0, 3, 1, 2)
    np.testing.assert_allclose(run(tmp_path / "pool.mlpackage", x), expected, atol=1e-6)


def test_other_ops_match_numpy(tmp_path):
    """pad (constant, reflect, replicate), concat, transpose, reshape, relu, relu6, reduce_mean,
    linear, softmax, mul, add."""
    w = RNG.normal(size=(5, 12)).astype(np.float32)
    b = RNG.normal(size=5).astype(np.float32)

    @mb.program(input_specs=[mb.TensorSpec(shape=(1, 2, 4, 4))], opset_version=ct.target.iOS16)
    def prog(x):
        a = mb.pad(x=x, pad=[1, 0, 0, 1], mode="constant", constant_val=0.5)
        r = mb.pad(x=x, pad=[1, 0, 0, 1], mode="reflect")
        e = mb.pad(x=x, pad=[1, 0, 0, 1], mode="replicate")
        c = mb.concat(values=[a, mb.relu(x=r), mb.relu6(x=mb.mul(x=e, y=np.float32(4.0)))], axis=1)  # (1, 6, 5, 5)
        c = mb.reverse(x=c, axes=[1])  # a fusion's RGB -> BGR for ResNet50
        t = mb.transpose(x=c, perm=[0, 2, 3, 1])
        m = mb.reduce_mean(x=t, axes=[1, 2], keep_dims=False)  # (1, 6)
        m = mb.concat(values=[m, mb.add(x=m, y=np.float32(1.0))], axis=1)  # (1, 12)
        return mb.softmax(x=mb.linear(x=m, weight=w, bias=b), axis=-1)

    save(prog, tmp_path / "ops.mlpackage")
    x = RNG.uniform(-3, 3, size=(1, 2, 4, 4)).astype(np.float32)
    widths = [(0, 0), (0, 0), (1, 0), (0, 1)]
    a = np.pad(x, widths, constant_values=0.5)
    r = np.pad(x, widths, mode="reflect")
    e = np.pad(x, widths, mode="edge")
    c = np.concatenate([a, np.maximum(r, 0), np.clip(e * 4, 0, 6)], axis=1)[:, ::-1]
    m = c.transpose(0, 2, 3, 1).mean(axis=(1, 2))
    m = np.concatenate([m, m + 1], axis=1)
    logits = m @ w.T + b
    expected = np.exp(logits - logits.max()) / np.exp(logits - logits.max()).sum()
    np.testing.assert_allclose(run(tmp_path / "ops.mlpackage", x), expected, atol=1e-6)


@pytest.mark.parametrize("layout", ["RGB", "BGR"])
def test_image_input_fed_as_core_ml_does(tmp_path, layout):
    """An ImageType input: 8-bit pixels, NCHW, the declared colour layout, then its scale and bias."""

    @mb.program(input_specs=[mb.TensorSpec(shape=(1, 3, 4, 5))], opset_version=ct.target.iOS16)
    def prog(image):
        return mb.reduce_mean(x=image, axes=[2, 3], keep_dims=False)

    colour = ct.colorlayout.BGR if layout == "BGR" else ct.colorlayout.RGB
    image = ct.ImageType(name="image", shape=(1, 3, 4, 5), scale=1 / 127.5, bias=[-1.0, -0.5, 0.25], color_layout=colour)
    save(prog, tmp_path / "img.mlpackage", inputs=[image])
    package = read_package(tmp_path / "img.mlpackage")
    assert package.colour_layout == layout
    photo = RNG.uniform(0, 255, size=(2, 4, 5, 3)).astype(np.float32)  # NHWC RGB, not yet 8-bit
    pixels = np.round(photo)[..., ::-1] if layout == "BGR" else np.round(photo)
    expected = pixels.mean(axis=(1, 2)) / 127.5 + np.float32([-1.0, -0.5, 0.25])
    np.testing.assert_allclose(Program(package).run(photo)[next(iter(package.outputs))], expected, atol=1e-5)


def test_unknown_op_is_one_line_naming_op_and_package(tmp_path):
    @mb.program(input_specs=[mb.TensorSpec(shape=(1, 4))], opset_version=ct.target.iOS16)
    def prog(x):
        return mb.sin(x=x)

    save(prog, tmp_path / "sin.mlpackage")
    with pytest.raises(CatdogError) as info:
        Program(read_package(tmp_path / "sin.mlpackage"))
    message = str(info.value)
    assert "'sin'" in message and "sin.mlpackage" in message and "\n" not in message


def test_damaged_package_is_one_line(tmp_path):
    (tmp_path / "empty.mlpackage").mkdir()
    with pytest.raises(CatdogError, match="empty.mlpackage: not a readable .mlpackage"):
        read_package(tmp_path / "empty.mlpackage")
