"""Stage 4: the CAM model's identity on real photos, and the overlays."""

from __future__ import annotations

import shutil

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
    # --out inside an IMAGES folder: the next run scored its overlays as photos (refused before any
    # work); a missing IMAGES path is named as missing (it was "cannot read the file")
    assert main(["cam", str(subset_run), str(tmp_path / "again"), "--out", str(tmp_path / "again" / "cams")]) == 2
    assert "inside the IMAGES folder" in capsys.readouterr().err and not (tmp_path / "again" / "cams").exists()
    assert main(["cam", str(subset_run), str(tmp_path / "nowhere"), str(TRAIN / "dog.951.jpg"), "--out", str(tmp_path / "c2")]) == 0
    assert f"skipped {tmp_path / 'nowhere'}: no such file or folder" in capsys.readouterr().out
    # cam's output folder inside a DATA another command reads is one line, not a photo per overlay
    from catdog.data import scan

    shutil.copytree(tmp_path / "cams", tmp_path / "again" / "cams")
    samples, rejections = scan(tmp_path / "again")
    assert [s.name for s in samples] == ["dog.951.jpg"] and [r.path.name for r in rejections] == ["cams"]
    # no label is needed here: a phone photo's name beside dog.951.jpg is drawn too (it was turned
    # away, "name matches neither cat.N.jpg / dog.N.jpg nor N.jpg")
    (tmp_path / "again" / "IMG_0042.jpg").write_bytes((REFERENCE / "coral_cat_720p.jpg").read_bytes())
    assert main(["cam", str(subset_run), str(tmp_path / "again"), "--out", str(tmp_path / "c3")]) == 0
    out = capsys.readouterr().out
    assert "IMG_0042.jpg: cat" in out and "name matches neither" not in out and (tmp_path / "c3" / "IMG_0042_cam.png").is_file()


@needs_shared
def test_cam_keeps_the_users_files_and_long_names(subset_run, tmp_path, capsys):
    """From a probe: a photo with a legal 255-byte name ended `catdog cam` at that photo (its
    overlay's name was too long; the error named a hidden temporary file), the rest left without
    overlays; an overlay was written over one of the IMAGES photos (cat.jpg's overlay onto a photo
    named cat_cam.png); a rerun with one photo left the earlier run's grid sheet of other photos
    (one photo has its sheet now, which marks the folder as cam's output too);
    a cam output folder given as IMAGES had its overlays and grid scored as photos."""
    import os

    from catdog.cli import main

    src = tmp_path / "src"
    src.mkdir()
    long_ascii, long_cjk = "a" * 251 + ".jpg", "猫" * 80 + ".jpg"  # 255 bytes; 244 bytes
    for name in (long_ascii, long_cjk, "dog.951.jpg"):
        (src / name).write_bytes((TRAIN / "dog.951.jpg").read_bytes())
    out = tmp_path / "cams"
    assert main(["cam", str(subset_run), str(src), "--out", str(out)]) == 0
    assert "Glyph" not in capsys.readouterr().err  # a note per CJK character the title font lacks
    overlays = sorted(p.name for p in out.glob("*_cam.png"))
    assert len(overlays) == 3 and all(len(os.fsencode(n)) <= 255 for n in overlays), overlays
    assert (out / "cam_grid.png").is_file() and not [p for p in out.iterdir() if p.name.startswith(".")]
    capsys.readouterr()
    # one photo: its own sheet replaces the earlier sheet of three (which was left beside it)
    three = Image.open(out / "cam_grid.png").size
    assert main(["cam", str(subset_run), str(src / "dog.951.jpg"), "--out", str(out)]) == 0
    assert Image.open(out / "cam_grid.png").size[0] < three[0]
    # an overlay named as one of the photos given: refused before any work, the photo untouched
    (out / "dog.951.jpg").write_bytes((TRAIN / "dog.951.jpg").read_bytes())
    victim = out / "dog.951_cam.png"
    victim.write_bytes((TRAIN / "cat.1.jpg").read_bytes())
    assert main(["cam", str(subset_run), str(out / "dog.951.jpg"), str(victim), "--out", str(out)]) == 2
    assert "would replace the photo" in capsys.readouterr().err and victim.read_bytes() == (TRAIN / "cat.1.jpg").read_bytes()
    # cam's own output folder as IMAGES: one line, none of its PNGs scored
    assert main(["cam", str(subset_run), str(tmp_path / "cams"), str(src / "dog.951.jpg"), "--out", str(tmp_path / "c2")]) == 0
    said = capsys.readouterr().out
    assert f"skipped {tmp_path / 'cams'}: an output of `catdog cam`" in said and "_cam.png: " not in said, said


@needs_shared
def test_max_pixels_reaches_every_command_that_decodes_photos(subset_run, train_subset, tmp_path, capsys):
    """A photo over the pixel limit is refused with "downscale it or raise --max-pixels": cam,
    export (its calibration photos), parity (its reference photos) and finetune take that option
    too, and apply it (before, only the feature, evaluate, predict, run and inspect commands had it)."""
    import json

    from catdog.cli import build_parser, main
    from catdog.data import scan
    from catdog.export import load_calibration
    from catdog.parity import load_images
    from catdog.training.finetune import _load_split

    limit = 300_000  # the 1280 x 720 photo is over it, the Kaggle ones under
    photos = [REFERENCE / "coral_cat_720p.jpg", REFERENCE / "test_502.jpg", REFERENCE / "test_504.jpg"]
    for command in (["cam", "RUN", "x.jpg", "--out", "o"], ["export", "RUN", "--out", "o"], ["parity", "ART", "--images", "d"],
                    ["finetune", "RUN", "DATA", "--out", "o"]):
        assert build_parser().parse_args([*command, "--max-pixels", str(limit)]).max_pixels == limit
    capsys.readouterr()
    assert main(["cam", str(subset_run), *map(str, photos), "--out", str(tmp_path / "cams"), "--max-pixels", str(limit)]) == 0
    out = capsys.readouterr().out
    assert "coral_cat_720p.jpg: 1280x720 = 921,600 pixels is over the 300,000-pixel limit" in out and "raise --max-pixels" in out
    assert sorted(p.name for p in (tmp_path / "cams").glob("*_cam.png")) == ["test_502_cam.png", "test_504_cam.png"]

    images, skipped = load_images(photos, 224, edge=False, max_pixels=limit)
    assert images.names == ["test_502.jpg", "test_504.jpg"] and len(skipped) == 1 and "coral_cat_720p.jpg" in skipped[0]

    folder = tmp_path / "calibration"
    folder.mkdir()
    for photo in photos:
        (folder / photo.name).write_bytes(photo.read_bytes())
    assert len(load_calibration(scan(folder)[0], 224, max_pixels=limit)) == 2
    assert "coral_cat_720p.jpg" in capsys.readouterr().out

    split = json.loads((subset_run / "split.json").read_text())
    names = split["train"] + split.get("validation", [])
    over = {n for n in names if np.prod(Image.open(train_subset / n).size) > 150_000}
    assert 0 < len(over) < len(names)
    (x_train, _), (x_val, _), _, _ = _load_split(load_run(subset_run), train_subset, max_pixels=150_000)
    assert len(x_train) + len(x_val) == len(names) - len(over)
    said = capsys.readouterr().out
    assert all(f"{n}:" in said for n in over) and said.count("150,000-pixel limit") == len(over)


def test_non_catdog_model_is_refused():
    import keras

    x = keras.Input((4,))
    model = keras.Model(x, keras.layers.Dense(2)(x))
    with pytest.raises(CatdogError, match="not a catdog model"):
        cam_model(model)
