"""Issue 8: a larger input size (`--image-size`) and backbone fusion (`--backbone a,b`),
end to end on real photos: features, head, CAM identity, export and parity."""

from __future__ import annotations

import json

import keras
import numpy as np
import pytest

from catdog.cam import cam_model, probabilities_from_cam
from catdog.cli import main
from catdog.data import decode, scan
from catdog.errors import CatdogError
from catdog.contract import load_manifest
from catdog.features import backbone_names, build_backbone, check_image_size, extract_features, load_features
from catdog.training import load_run
from conftest import REFERENCE, TRAIN, copy_photos, kaggle_names, needs_shared

pytestmark = needs_shared


def test_image_size_is_checked():
    assert check_image_size(288) == 288
    for bad in (200, 64, 2048):
        with pytest.raises(CatdogError, match="multiple of 32"):
            check_image_size(bad)


def test_288_run_keeps_the_contract_at_its_size(run_288):
    run = load_run(run_288)
    assert run.model.input.shape[1:] == (288, 288, 3) and run.metrics["image_size"] == 288
    assert load_features(run_288 / "features.h5").attrs["image_size"] == 288
    manifest = load_manifest(run_288 / "artefacts")
    assert manifest["input"]["shape"] == [1, 288, 288, 3]
    assert manifest["outputs"][1]["shape"] == [1, 9, 9, 2]
    parity = json.loads((run_288 / "artefacts" / "parity.json").read_text())
    assert parity["passed"] and {a["format"] for a in parity["artefacts"]} == {"tflite", "onnx", "coreml"}
    coreml = [c for a in parity["artefacts"] if a["format"] == "coreml" for c in a["spec_checks"]]
    assert any(c["check"] == "input size 288x288" and c["passed"] for c in coreml)
    assert any(c["check"] == "cam shape [1, 9, 9, 2]" and c["passed"] for c in coreml)


def test_288_cam_identity_on_real_photos(run_288):
    run = load_run(run_288)
    photos = sorted(REFERENCE.glob("*.jpg"))[:4] + [TRAIN / "cat.950.jpg", TRAIN / "dog.950.jpg"]
    x = np.stack([decode(p, 288) for p in photos]).astype(np.float32)
    out = cam_model(run.model).predict_on_batch(x)
    assert out["cam"].shape == (6, 9, 9, 2)
    bias = run.model.get_layer("probabilities").get_weights()[1]
    assert np.allclose(probabilities_from_cam(np.asarray(out["cam"]), bias), out["probabilities"], atol=1e-5)


def test_288_predict_and_serve_feed_the_model_its_size(run_288, held_out, tmp_path):
    out = tmp_path / "sub.csv"
    assert main(["evaluate", str(run_288), str(held_out)]) == 0
    assert main(["predict", str(run_288), str(held_out), "--out", str(out)]) == 0
    assert len(out.read_text().splitlines()) == 81
    from catdog.serve import load_predictor

    predictor = load_predictor(run_288 / "artefacts")
    assert predictor.image_size == 288
    probabilities, cam = predictor(decode(TRAIN / "dog.950.jpg", 288))
    assert cam.shape == (9, 9, 2) and abs(probabilities.sum() - 1) < 1e-5


def test_a_feature_file_of_another_size_is_refused(run_288):
    samples, _ = scan(run_288.parent / "data")
    with pytest.raises(CatdogError, match="at 288px, not mobilenet_v2 with imagenet at 224px"):
        extract_features(samples, run_288 / "features.h5", "mobilenet_v2", progress=False)


# ------------------------------------------------------------------ fusion
@pytest.fixture(scope="module")
def resnet50_weights(tmp_path_factory):
    path = tmp_path_factory.mktemp("r50w") / "resnet50_random_notop.weights.h5"
    keras.utils.set_random_seed(11)
    keras.applications.ResNet50(include_top=False, weights=None, input_shape=(224, 224, 3)).save_weights(path)
    return path


@pytest.fixture(scope="module")
def fused_run(tmp_path_factory, resnet50_weights):
    """MobileNetV2 (real weights) fused with ResNet50 (weights the test makes) on 16 + 16 real photos."""
    root = tmp_path_factory.mktemp("fused")
    data = copy_photos(root / "data", kaggle_names("cat", range(16)) + kaggle_names("dog", range(16)))
    run_dir = root / "run"
    args = ["run", "--views", "none", "--shift-photos", "0", str(data), "--backbone", "mobilenet_v2,resnet50", "--weights", f"imagenet,{resnet50_weights}",
            "--out", str(run_dir), "--formats", "coreml", "--precision", "fp32",
            "--engine", "keras"]  # 32 photos: TensorFlow at once beats LiteRT's conversion of the fusion first (CI time)
    assert main(args) == 0
    return run_dir


def test_fused_features_are_the_backbones_features_side_by_side(fused_run, resnet50_weights, tmp_path):
    fused = load_features(fused_run / "features.h5")
    assert fused.backbone == "mobilenet_v2,resnet50" and fused.features.shape == (32, 1280 + 2048)
    samples, _ = scan(fused_run.parent / "data")
    extract_features(samples, tmp_path / "m.h5", "mobilenet_v2", progress=False)
    extract_features(samples, tmp_path / "r.h5", "resnet50", weights=resnet50_weights, progress=False)
    alone = np.hstack([load_features(tmp_path / "m.h5").features, load_features(tmp_path / "r.h5").features])
    assert np.allclose(fused.features, alone, rtol=1e-4, atol=1e-3 * np.abs(alone).max())


def test_fused_cam_identity_and_export(fused_run):
    run = load_run(fused_run)
    photos = sorted(REFERENCE.glob("*.jpg"))[:3] + [TRAIN / "cat.950.jpg", TRAIN / "dog.950.jpg"]
    out = cam_model(run.model).predict_on_batch(np.stack([decode(p) for p in photos]).astype(np.float32))
    assert out["cam"].shape == (5, 7, 7, 2)
    bias = run.model.get_layer("probabilities").get_weights()[1]
    assert np.allclose(probabilities_from_cam(np.asarray(out["cam"]), bias), out["probabilities"], atol=1e-5)
    manifest = load_manifest(fused_run / "artefacts")
    assert manifest["backbone"] == "mobilenet_v2,resnet50"
    # Core ML only: its image input takes raw pixels and each branch preprocesses (the ONNX and TFLite
    # export of a fusion is tested on MobileNet V1 + V2, test_mobilenet_v1; this one's ONNX takes 40 s)
    assert {a["file"] for a in manifest["artefacts"]} == {"catdog_mobilenet_v2+resnet50_fp32.mlpackage"}
    parity = json.loads((fused_run / "artefacts" / "parity.json").read_text())
    assert parity["passed"]
    checks = {c["check"]: c for a in parity["artefacts"] if a["format"] == "coreml" for c in a["spec_checks"]}
    assert checks["input bias"]["passed"] and checks["input scale"]["passed"]  # raw 0..255 in, each branch preprocesses


def test_fusion_errors_are_one_line(fused_run, tmp_path, capsys):
    with pytest.raises(CatdogError, match="names one backbone twice"):
        backbone_names("resnet50,resnet50")
    with pytest.raises(CatdogError, match="unknown backbone 'vgg16'"):
        build_backbone("mobilenet_v2,vgg16")
    with pytest.raises(CatdogError, match="one entry per backbone"):
        build_backbone("mobilenet_v2,resnet50", tmp_path / "one.h5")
    assert main(["finetune", str(fused_run), str(fused_run.parent / "data"), "--out", str(tmp_path / "ft")]) == 2
    assert "fine-tuning takes a run with one backbone" in capsys.readouterr().err
