"""Stage 4: the CAM model's identity on real photos, and the overlays."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from catdog.cam import cam_model, normalise, overlay, probabilities_from_cam
from catdog.data import decode
from catdog.errors import CatdogError
from catdog.training import load_run
from conftest import R50_SIZE, REFERENCE, TRAIN, needs_shared


def _identity(run_dir, photos):
    run = load_run(run_dir)
    model = cam_model(run.model)
    size = run.model.input.shape[1]
    out = model.predict_on_batch(np.stack([decode(p, size) for p in photos]).astype(np.float32))
    probs, cam = np.asarray(out["probabilities"]), np.asarray(out["cam"])
    bias = run.model.get_layer("probabilities").get_weights()[1]
    return run, probs, cam, bias


@needs_shared
def test_cam_identity_mobilenet_v2(subset_run):
    photos = sorted(REFERENCE.glob("*.jpg"))[:8] + [TRAIN / "cat.950.jpg", TRAIN / "dog.950.jpg"]
    run, probs, cam, bias = _identity(subset_run, photos)
    assert cam.shape == (10, 7, 7, 2)
    assert np.allclose(probabilities_from_cam(cam, bias), probs, atol=1e-5)
    # and both equal the classifier alone
    full = run.model.predict_on_batch(np.stack([decode(p, run.model.input.shape[1]) for p in photos]).astype(np.float32))
    assert np.allclose(full["probabilities"], probs, atol=1e-6)
    # the CAM kernel is the Dense kernel's rows of the pooled features; its last row, the ImageNet
    # dog-vs-cat prior's (MobileNetV2 has a top), is added to every cell instead
    kernel = run.model.get_layer("probabilities").get_weights()[0]
    assert kernel.shape == (1281, 2)
    assert np.array_equal(cam_model(run.model).get_layer("cam_maps").get_weights()[0], kernel[:1280].reshape(1, 1, 1280, 2))


@needs_shared
def test_cam_identity_resnet50(resnet50_run):
    photos = sorted(REFERENCE.glob("*.jpg"))[:3]
    _, probs, cam, bias = _identity(resnet50_run, photos)
    assert cam.shape == (3, R50_SIZE // 32, R50_SIZE // 32, 2)
    assert np.allclose(probabilities_from_cam(cam, bias), probs, atol=1e-5)


def test_overlay_contract():
    image = np.full((60, 90, 3), 128, np.uint8)
    cam_map = np.zeros((7, 7), np.float32)
    cam_map[0, 0] = 5.0  # hot top-left corner
    out = overlay(image, cam_map)
    assert out.shape == image.shape and out.dtype == np.uint8
    assert out[0, 0, 0] > out[0, 0, 2]  # jet: hot = red
    assert out[-1, -1, 2] > out[-1, -1, 0]  # cold = blue
    assert normalise(np.ones((7, 7))).max() == 0.0


@needs_shared
def test_cli_cam_writes_overlays_and_grid(subset_run, tmp_path, capsys):
    from catdog.cli import main

    photos = [REFERENCE / "coral_cat_720p.jpg", TRAIN / "dog.951.jpg"]
    (tmp_path / "broken.jpg").write_bytes(b"\xff\xd8\xff")
    (tmp_path / "again").mkdir()  # the same name in another folder: both overlays are kept
    (tmp_path / "again" / "dog.951.jpg").write_bytes((TRAIN / "dog.951.jpg").read_bytes())
    photos.append(tmp_path / "again" / "dog.951.jpg")
    assert main(["cam", str(subset_run), *map(str, photos), str(tmp_path / "broken.jpg"), "--out", str(tmp_path / "cams")]) == 0
    out = capsys.readouterr().out
    assert "broken.jpg" in out and "coral_cat_720p.jpg: cat" in out
    overlay_png = Image.open(tmp_path / "cams" / "coral_cat_720p_cam.png")
    assert max(overlay_png.size) == 512 and overlay_png.size[0] > overlay_png.size[1]  # aspect kept for display
    assert (tmp_path / "cams" / "dog.951_cam.png").is_file() and (tmp_path / "cams" / "dog.951_2_cam.png").is_file()
    assert "again/dog.951.jpg: dog" in out and "-> " + str(tmp_path / "cams" / "dog.951_2_cam.png") in out
    assert Image.open(tmp_path / "cams" / "cam_grid.png").size[0] > 300


def test_non_catdog_model_is_refused():
    import keras

    x = keras.Input((4,))
    model = keras.Model(x, keras.layers.Dense(2)(x))
    with pytest.raises(CatdogError, match="not a catdog model"):
        cam_model(model)
