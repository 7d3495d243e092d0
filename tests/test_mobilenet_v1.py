"""Issue 14: MobileNet (V1) as a backbone, alone and fused with MobileNetV2, on real photos and
the real ImageNet weights in ../shared: offline loading, features (LiteRT = Keras), CAM
identity, export to TFLite, ONNX and Core ML, and parity."""

from __future__ import annotations

import json
from pathlib import Path

import h5py
import keras
import numpy as np
import pytest

from catdog.cam import cam_model, probabilities_from_cam
from catdog.cli import main
from catdog.data import decode, scan
from catdog.contract import load_manifest
from catdog.features import BackbonePreprocessing, build_backbone, extract_features, get_spec, keras_models_dir, load_features
from catdog.training import load_run
from conftest import REFERENCE, TRAIN, copy_photos, kaggle_names, needs_shared

pytestmark = needs_shared

V1_FILE = "mobilenet_1_0_224_tf_no_top.h5"


def test_mobilenet_loads_the_shared_imagenet_weights_offline_at_any_size():
    """Keras finds the V1 no-top file in $KERAS_HOME/models (seeded from ../shared; no network here)."""
    path = keras_models_dir() / V1_FILE
    assert path.is_file()
    with h5py.File(path, "r") as f:
        stored = f["conv_pw_13/conv_pw_13/kernel"][:]
    for size, grid in ((224, 7), (288, 9)):
        net = build_backbone("mobilenet", "imagenet", size)
        assert net.output.shape[1:] == (grid, grid, 1024)
        assert np.array_equal(net.get_layer("conv_pw_13").get_weights()[0], stored)
    spec = get_spec("mobilenet")
    assert spec.preprocess_mode == "tf" and spec.feature_dim == 1024 and spec.notop_weights_file == V1_FILE


def test_v1_and_v2_fuse_with_one_preprocessing():
    spec = get_spec("mobilenet,mobilenet_v2")
    assert spec.preprocess_mode == "tf" and spec.feature_dim == 1024 + 1280
    fused = build_backbone("mobilenet,mobilenet_v2", None, 224)
    assert not [layer for layer in fused.layers if isinstance(layer, BackbonePreprocessing)]  # once, outside it
    assert get_spec("mobilenet_v2,resnet50").preprocess_mode == "raw"  # different preprocessings: per branch


def test_finetune_finds_mobilenet_v1_blocks():
    from catdog.training.finetune import top_blocks

    assert top_blocks(build_backbone("mobilenet", None, 224), 2) == ["conv_13", "conv_12"]


@pytest.fixture(scope="module")
def photos(tmp_path_factory):
    root = tmp_path_factory.mktemp("v1")
    return copy_photos(root / "data", kaggle_names("cat", range(300, 316)) + kaggle_names("dog", range(300, 316)))


@pytest.fixture(scope="module")
def v1_run(photos):
    """`catdog run --backbone mobilenet` on 16 + 16 real photos, exported at fp32 to ONNX and Core ML
    (its TFLite conversion is exercised by the LiteRT feature engine here, and by the fused run)."""
    run_dir = photos.parent / "run_v1"
    args = ["run", "--views", "none", "--shift-photos", "0", str(photos), "--backbone", "mobilenet", "--out", str(run_dir), "--formats", "onnx,coreml",
            "--precision", "fp32", "--cv", "3"]
    assert main(args) == 0  # 0 only if parity passed
    return run_dir


def _cam_identity(run_dir, grid: int, size: int = 224) -> np.ndarray:
    run = load_run(run_dir)
    paths = sorted(REFERENCE.glob("*.jpg"))[:3] + [TRAIN / "cat.950.jpg", TRAIN / "dog.950.jpg"]
    x = np.stack([decode(p, size) for p in paths]).astype(np.float32)
    out = cam_model(run.model).predict_on_batch(x)
    assert out["cam"].shape == (5, grid, grid, 2)
    bias = run.model.get_layer("probabilities").get_weights()[1]
    assert np.allclose(probabilities_from_cam(np.asarray(out["cam"]), bias), out["probabilities"], atol=1e-5)
    assert np.allclose(run.model.predict_on_batch(x)["probabilities"], out["probabilities"], atol=1e-6)
    return np.asarray(out["probabilities"])


def _parity_passed(run_dir, backbone: str, formats: tuple[str, ...]) -> dict:
    manifest = load_manifest(run_dir / "artefacts")
    assert manifest["backbone"] == backbone
    stem = "catdog_" + backbone.replace(",", "+")
    suffix = {"tflite": ".tflite", "onnx": ".onnx", "coreml": ".mlpackage"}
    assert {a["file"] for a in manifest["artefacts"]} == {f"{stem}_fp32{suffix[f]}" for f in formats}
    parity = json.loads((run_dir / "artefacts" / "parity.json").read_text())
    assert parity["passed"]
    rows = {r["format"]: r for r in parity["artefacts"]}
    for fmt in set(formats) - {"coreml"}:
        assert rows[fmt]["prob_max_abs"] <= 1e-4 and rows[fmt]["cam_corr"] > 0.99999
    return {c["check"]: c for c in rows["coreml"]["spec_checks"]}


def test_v1_cam_identity_and_export_parity(v1_run):
    probabilities = _cam_identity(v1_run, 7)
    assert probabilities[3].argmax() == 0 and probabilities[4].argmax() == 1  # held-out cat.950, dog.950
    checks = _parity_passed(v1_run, "mobilenet", ("onnx", "coreml"))
    assert all(c["passed"] for c in checks.values()), checks
    assert "0.00784" in checks["input scale"]["detail"]  # Core ML applies x / 127.5 - 1 as image scale and bias


def test_fused_v1_v2_cam_identity_and_export_parity(run_288):
    """The shipped fusion (conftest.verified_run: V1 + V2 at 288, every format at fp32)."""
    _cam_identity(run_288, 9, 288)
    checks = _parity_passed(run_288, "mobilenet,mobilenet_v2", ("tflite", "onnx", "coreml"))
    assert all(c["passed"] for c in checks.values()), checks
    assert "0.00784" in checks["input scale"]["detail"] and "-1.0" in checks["input bias"]["detail"]


def test_fused_features_are_v1_and_v2_side_by_side_and_litert_equals_tensorflow(run_288, tmp_path):
    fused = load_features(run_288 / "features.h5")  # LiteRT, the default engine
    assert fused.backbone == "mobilenet,mobilenet_v2" and fused.features.shape == (120, 2304)
    samples = scan(run_288.parent / "data")[0][::8]  # 15 of its photos (CI time)
    for name in ("mobilenet", "mobilenet_v2"):
        extract_features(samples, tmp_path / f"{name}.h5", name, progress=False, engine="keras", image_size=288)
    alone = np.hstack([load_features(tmp_path / f"{name}.h5").features for name in ("mobilenet", "mobilenet_v2")])
    rows = [fused.names.index(s.name) for s in samples]
    # TensorFlow's V1 and V2, each alone, side by side equal the fused LiteRT features
    assert np.allclose(fused.features[rows], alone, rtol=1e-4, atol=1e-4 * np.abs(alone).max())


def _head_rows(run_dir: Path, metrics: dict):
    """(photos' head features, training rows, labels) of a RUN_DIR's features.h5: the pooled features
    with the ImageNet prior, then each training view's."""
    from catdog.training.pet import imagenet_top
    from catdog.training.stage import found_views
    from catdog.training.train import with_dog_prior

    fs = load_features(run_dir / "features.h5")
    views = found_views(run_dir / "features.h5")
    top, _ = imagenet_top(fs.backbone, fs.weights)
    photos = with_dog_prior(fs, top).features
    x = np.vstack([photos, *(with_dog_prior(views[v], top).features for v in metrics["head"]["views"])])
    return fs, photos, x, np.tile(fs.labels, 1 + len(metrics["head"]["views"]))


def test_the_fused_head_is_one_regression_and_late_fusion_the_mean_logit_of_a_head_per_backbone_and_one_on_all(
        run_288, tmp_path, capsys):
    """make run's head (README, Robustness): one logistic regression on every column at the l2 CV
    chose. `--late-fusion`: the head equals the mean logit of three regressions refitted here, on V1's
    columns and the prior, on V2's and the prior, and on all, each at the l2 metrics.json says CV
    chose for it; and it is not the single head. `train --negatives` prints the neither answer's rates
    (it printed none)."""
    from catdog.training import cv as CV

    metrics = json.loads((run_288 / "metrics.json").read_text())
    assert metrics["head"]["late_fusion"] is None
    fs, photos, x, y = _head_rows(run_288, metrics)
    shipped = keras.models.load_model(run_288 / "head.keras").predict_on_batch(fs.features)[:, 1]
    single = CV.fit_logistic(x, y, metrics["head"]["l2"]).p_dog(photos)
    assert np.allclose(shipped, single, atol=1e-5), np.abs(shipped - single).max()

    out = tmp_path / "late"
    assert main(["train", str(run_288 / "features.h5"), "--late-fusion", "--negatives", str(run_288 / "negatives.h5"),
                 "--out", str(out)]) == 0
    metrics = json.loads((out / "metrics.json").read_text())
    from catdog.training.summary import neither_rates

    assert "rejects" in neither_rates(metrics) and f"neither answer: {neither_rates(metrics)}" in capsys.readouterr().out
    fusion = metrics["head"]["late_fusion"]
    assert fusion["parts"] == [[[0, 1024], [2304, 2305]], [[1024, 2304], [2304, 2305]], [[0, 2305]]], fusion
    assert len(fusion["l2"]) == 3 and set(fusion["l2"]) <= set(metrics["head"]["l2_grid"])
    assert metrics["head"]["l2"] == fusion["l2"][-1]
    fs, photos, x, y = _head_rows(run_288, metrics)
    logits = []
    for part, l2 in zip(fusion["parts"], fusion["l2"]):
        cols = np.concatenate([np.arange(a, b) for a, b in part])
        logits.append(CV.fit_logistic(x[:, cols], y, l2).logit(photos[:, cols]))
    expected = 1 / (1 + np.exp(-np.mean(logits, 0)))
    late = keras.models.load_model(out / "head.keras").predict_on_batch(fs.features)[:, 1]
    assert np.allclose(late, expected, atol=1e-5), np.abs(late - expected).max()
    single = CV.fit_logistic(x, y, fusion["l2"][-1]).p_dog(photos)
    assert np.abs(single - late).max() > 1e-3


def test_view_features_are_the_features_of_the_changed_photo(photos, tmp_path):
    """A view's file holds the features of each photo changed by that view (here the mirror image
    and a close-up crop), and refuses to resume as another view."""
    from PIL import ImageOps

    from catdog.data import apply_view, open_rgb, resize
    from catdog.errors import CatdogError
    from catdog.features import feature_model

    samples, _ = scan(photos)
    model = feature_model("mobilenet", build_backbone("mobilenet"))
    for view, change in (("mirror", lambda im, s: ImageOps.mirror(im)), ("closeup", lambda im, s: apply_view(im, "closeup", s.name))):
        extract_features(samples[:4], tmp_path / f"{view}.h5", "mobilenet", progress=False, view=view)
        held = load_features(tmp_path / f"{view}.h5")
        assert held.attrs["view"] == view
        changed = np.stack([resize(change(open_rgb(s.path), s), 224) for s in samples[:4]]).astype(np.float32)
        direct = model.predict_on_batch(changed)
        assert np.allclose(held.features, direct, rtol=1e-4, atol=1e-4 * np.abs(direct).max())
    plain = model.predict_on_batch(np.stack([decode(s.path) for s in samples[:4]]).astype(np.float32))
    assert not np.allclose(held.features, plain, atol=1e-2 * np.abs(plain).max())  # the crop changed them
    with pytest.raises(CatdogError, match=r"at 224px \(view mirror\), not mobilenet with imagenet at 224px; choose another"):
        extract_features(samples[:4], tmp_path / "mirror.h5", "mobilenet", progress=False)


def test_mobilenet_preprocessing_equals_keras():

    images = np.stack([decode(TRAIN / f"cat.{n}.jpg") for n in range(3)]).astype(np.float32)
    ours = np.asarray(BackbonePreprocessing(get_spec("mobilenet").preprocess_mode)(images))
    assert np.allclose(ours, keras.applications.mobilenet.preprocess_input(images.copy()), atol=1e-5)
