"""tests/golden/apps.json, the file the Swift and Kotlin tests reproduce: its expected outputs are
catdog's own (recomputed here from its inputs with catdog.cam, catdog.data and Pillow), it comes
from the shipped model, and `tests/golden.py` makes it from a real 288 ART_DIR."""

from __future__ import annotations

import copy
import json
import shutil
import subprocess

import numpy as np
import pytest

import golden
from conftest import REPO, TRAIN, copy_photos, kaggle_names, needs_shared

SHIPPED = REPO / "runs" / "mobilenet+mobilenet_v2_288" / "artefacts"  # what `make run` writes


@pytest.fixture(scope="module")
def checked_in() -> dict:
    return json.loads(golden.GOLDEN.read_text())


def test_the_golden_file_is_small_and_complete(checked_in):
    assert golden.GOLDEN.stat().st_size <= golden.MAX_BYTES
    assert checked_in["golden_version"] == golden.GOLDEN_VERSION
    m = checked_in["manifest"]
    g = golden.cam_shape(m)
    assert g[1] == g[2] == m["input"]["shape"][1] // 32 and g[3] == len(m["labels"]) == 2
    assert len(checked_in["photos"]) == 3 and {p["label"] for p in checked_in["photos"]} == {"cat", "dog"}
    for p in checked_in["photos"]:
        assert len(p["cam"]) == g[1] * g[2] * g[3] and len(p["samples"]) == golden.SAMPLES_PER_PHOTO
    assert [c["exif"] for c in checked_in["orientation"]["cases"]] == list(range(1, 9))


def test_every_expected_output_is_catdogs(checked_in):
    assert golden.check(checked_in) == []


def test_a_wrong_expected_output_is_caught(checked_in):
    bad = copy.deepcopy(checked_in)
    bad["photos"][0]["samples"][3]["overlay"][0] ^= 2
    bad["photos"][1]["label_text"] = bad["photos"][1]["label_text"].replace(".", ",", 1)
    bad["label_text_cases"][1]["text"] = "It's a cat\ncat 6.3 %   dog 93.8 %"  # half up, where catdog rounds half to even
    bad["orientation"]["cases"][5]["exif"] = 8
    problems = golden.check(bad)
    assert len(problems) == 4, problems


def test_the_add_model_scripts_choose_the_golden_artefacts(checked_in, tmp_path):
    """The apps' artefact choice (tested in Swift and Kotlin against `choice`) is the scripts' too."""
    art = tmp_path / "art"
    art.mkdir()
    (art / "manifest.json").write_text(json.dumps(checked_in["manifest"]))
    for a in checked_in["manifest"]["artefacts"]:
        (art / a["file"]).write_bytes(b"model")
    for app, dest, fmt in (("ios_app", "Model", "coreml"), ("android_demo", "app/src/main/assets", "tflite")):
        copy = tmp_path / app
        shutil.copytree(REPO / app / "scripts", copy / "scripts")
        result = subprocess.run([str(copy / "scripts" / "add_model.sh"), str(art)], capture_output=True, text=True)
        assert result.returncode == 0, result.stderr
        assert sorted(p.name for p in (copy / dest).iterdir()) == sorted(["manifest.json", checked_in["choice"][fmt]])


@needs_shared
def test_the_golden_numbers_are_the_shipped_models(checked_in):
    """Where `make run` has built the shipped model here, its fp32 TFLite artefact gives the golden
    probabilities and CAM maps (a changed model means `make golden`: the apps' logic stays valid)."""
    tflite = SHIPPED / checked_in["source"]["tflite"]
    if not tflite.is_file() or golden.weights_sha256(tflite) != checked_in["source"]["tflite_weights_sha256"]:
        pytest.skip(f"{tflite} is absent or not the model the golden file came from (make run; make golden)")
    from catdog.data import open_rgb, resize

    side = checked_in["manifest"]["input"]["shape"][1]
    images = np.stack([resize(open_rgb(golden.REFERENCE / p["name"]), side) for p in checked_in["photos"]]).astype(np.float32)
    probabilities, cams = golden.run_tflite(tflite, images)
    for i, p in enumerate(checked_in["photos"]):
        np.testing.assert_allclose(probabilities[i], p["probabilities"], atol=1e-6)
        np.testing.assert_allclose(cams[i].ravel(), p["cam"], atol=1e-5 * np.abs(p["cam"]).max())


@needs_shared
def test_make_golden_on_a_real_288_art_dir(checked_in, tmp_path):
    """`tests/golden.py` on a real ART_DIR: a 288 model trained on a few real photos and exported to
    TFLite fp32. The file it writes passes the same check and has the checked-in file's contract."""
    from catdog.cli import main

    data = copy_photos(tmp_path / "data", kaggle_names("cat", range(12)) + kaggle_names("dog", range(12)), TRAIN)
    run_dir = tmp_path / "run"
    assert main(["run", str(data), "--image-size", "288", "--out", str(run_dir), "--no-export"]) == 0
    art_dir = tmp_path / "art"
    assert main(["export", str(run_dir), "--formats", "tflite", "--precision", "fp32", "--out", str(art_dir)]) == 0
    out = tmp_path / "apps.json"
    assert golden.main([str(art_dir), "--out", str(out)]) == 0
    made = json.loads(out.read_text())
    assert golden.check(made) == [] and out.stat().st_size <= golden.MAX_BYTES
    for key in ("input", "outputs", "labels", "manifest_version"):
        assert made["manifest"][key] == checked_in["manifest"][key], key
    # the apps pick the fp32 TFLite artefact, whichever backbone named it (this model is MobileNetV2)
    def fp32_tflite(g):
        return next(a["file"] for a in g["manifest"]["artefacts"] if (a["format"], a["precision"]) == ("tflite", "fp32"))

    assert made["choice"]["tflite"] == fp32_tflite(made) and checked_in["choice"]["tflite"] == fp32_tflite(checked_in)
    assert [p["name"] for p in made["photos"]] == [p["name"] for p in checked_in["photos"]]
    assert golden.main([str(tmp_path / "nowhere")]) == 2
