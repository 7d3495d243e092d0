"""tests/golden/apps.json, the file the Swift and Kotlin tests reproduce: its expected outputs are
catdog's own (recomputed here from its inputs with catdog.cam, catdog.contract.verdict, catdog.data
and Pillow), it comes from the shipped model, and `tools/golden.py` makes it from a real 288 ART_DIR.

The shipped model is matched by its outputs: the golden numbers regenerated from `make run`'s
ART_DIR agree with the file's within parity's fp32 tolerances (`golden.compare`). CI has no `make
run` output, so it runs the same path on the session's small model (MobileNetV2 at 224)."""

from __future__ import annotations

import copy
import hashlib
import json
import shutil
import subprocess

import numpy as np
import pytest

from catdog.contract import NEITHER
from tools import golden
from conftest import REPO, make_default, needs_shared

SHIPPED = REPO / make_default("OUT") / "artefacts"  # what `make run` writes


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
    assert isinstance(m["pet_threshold"], (int, float)) and 0 <= m["pet_threshold"] <= 1
    assert {"name": "pet", "shape": [1, 1]} in m["outputs"]
    for p in checked_in["photos"]:
        assert len(p["cam"]) == g[1] * g[2] * g[3] and len(p["samples"]) == golden.SAMPLES_PER_PHOTO
        assert 0 <= p["pet"] <= 1 and p["verdict"] in (*m["labels"], NEITHER)
    assert [c["exif"] for c in checked_in["orientation"]["cases"]] == list(range(1, 9))
    # every verdict case of tools/golden.py, so the edge cases the apps must agree on are all there
    cases = checked_in["verdict_cases"]
    inputs = ("probabilities", "pet", "threshold")
    assert [[c[k] for k in inputs] for c in cases] == [[c[k] for k in inputs] for c in golden.verdict_cases(m["labels"])]
    kept = [c for c in cases if c["verdict"] != NEITHER]
    neither = [c for c in cases if c["verdict"] == NEITHER]
    assert any(c["pet"] == c["threshold"] for c in kept)  # pet at the threshold: kept
    assert any(c["pet"] == float(np.nextafter(np.float32(c["threshold"]), np.float32(0))) for c in neither)  # a float32 below
    assert any(c["threshold"] == 0 for c in kept) and any(c["pet"] == 0 for c in neither) and any(c["pet"] == 1 for c in kept)
    assert any(c["probabilities"][0] == c["probabilities"][1] for c in kept)  # a tie: the first label


def test_every_expected_output_is_catdogs(checked_in):
    assert golden.check(checked_in) == []


def test_a_wrong_expected_output_is_caught(checked_in):
    bad = copy.deepcopy(checked_in)
    bad["photos"][0]["samples"][3]["overlay"][0] ^= 2
    bad["photos"][1]["label_text"] = bad["photos"][1]["label_text"].replace(".", ",", 1)
    bad["label_text_cases"][1]["text"] = "It's a cat\ncat 6.3 %   dog 93.8 %"  # half up, where catdog rounds half to even
    bad["orientation"]["cases"][5]["exif"] = 8
    at = next(c for c in bad["verdict_cases"] if c["pet"] == c["threshold"] and c["verdict"] != NEITHER)
    at["verdict"] = NEITHER  # pet at the threshold is kept: only pet < threshold is neither
    bad["photos"][2]["shown"] = "overlay" if checked_in["photos"][2]["shown"] == "photo" else "photo"
    problems = golden.check(bad)
    assert len(problems) == 6, problems


def test_the_add_model_scripts_choose_the_golden_artefacts(checked_in, tmp_path):
    """The apps' artefact choice (tested in Swift and Kotlin against `choice`) is the scripts' too."""
    art = tmp_path / "art"
    art.mkdir()
    manifest = copy.deepcopy(checked_in["manifest"])
    for a in manifest["artefacts"]:  # stand-ins, listed under their own sha256 as an export lists its files
        (art / a["file"]).write_bytes(b"model " + a["file"].encode())
        a["sha256"] = hashlib.sha256(b"model " + a["file"].encode()).hexdigest()
    (art / "manifest.json").write_text(json.dumps(manifest))
    (tmp_path / "catdog").symlink_to(REPO / "catdog")  # the scripts run catdog.contract from the checkout they sit in
    for app, dest, fmt in (("ios_app", "Model", "coreml"), ("android_demo", "app/src/main/assets", "tflite")):
        app_copy = tmp_path / app
        shutil.copytree(REPO / app / "scripts", app_copy / "scripts")
        result = subprocess.run([str(app_copy / "scripts" / "add_model.sh"), str(art)], capture_output=True, text=True)
        assert result.returncode == 0, result.stderr
        assert sorted(p.name for p in (app_copy / dest).iterdir()) == sorted(["manifest.json", checked_in["choice"][fmt]])


def golden_problems(expected: dict, art_dir) -> list[str]:
    """The golden check of a model: its golden document, regenerated from ART_DIR with tools/golden.py
    (`generate`, as `make golden` does), passes the check the apps' tests rely on, and its numbers are
    `expected`'s within parity's fp32 tolerances."""
    made = golden.generate(art_dir)
    return [f"regenerated: {p}" for p in golden.check(made)] + golden.compare(expected, made)


@needs_shared
@pytest.mark.slow
def test_the_golden_numbers_are_the_shipped_models(checked_in):
    """Wherever `make run` has built the shipped model, its fp32 TFLite artefact gives the golden
    probabilities and CAM maps within parity's fp32 tolerances (another run or machine trains other
    weights, not other numbers; a changed model means `make golden`: the apps' logic stays valid)."""
    if not (SHIPPED / "manifest.json").is_file():
        pytest.skip(f"{SHIPPED} not found: `make run` builds the shipped model (CI runs the check on a small one below)")
    problems = golden_problems(checked_in, SHIPPED)
    assert problems == [], f"{SHIPPED} does not give tests/golden/apps.json's numbers (a changed model: make golden): {problems}"


@needs_shared
def test_the_golden_check_on_a_small_model(checked_in, subset_artefacts, tmp_path):
    """CI's golden check (no `make run` there): a golden file made by tools/golden.py from the session's
    MobileNetV2 224 ART_DIR passes the same check against that ART_DIR; numbers moved beyond parity's
    fp32 tolerances, another answer, and another model are each caught, moves within them are not."""
    out = tmp_path / "apps.json"
    assert golden.main([str(subset_artefacts), "--out", str(out)]) == 0
    made = json.loads(out.read_text())
    assert golden_problems(made, subset_artefacts) == []
    tol = golden.fp32_tolerances()
    scale = max(abs(v) for p in made["photos"] for v in p["cam"])

    def moved(prob: float = 0.0, cam: float = 0.0, photo: int = 1) -> dict:
        doc = copy.deepcopy(made)
        p = doc["photos"][photo]
        p["probabilities"] = [p["probabilities"][0] - prob, p["probabilities"][1] + prob]
        p["cam"][5] += cam * scale
        return doc

    assert golden.compare(moved(prob=0.5 * tol["prob_max_abs"], cam=0.5 * tol["cam_max_rel"]), made) == []
    assert [p.split(":")[0] for p in golden.compare(moved(prob=2 * tol["prob_max_abs"]), made)] == ["probabilities"]
    assert [p.split(":")[0] for p in golden.compare(moved(cam=2 * tol["cam_max_rel"]), made)] == ["CAM"]
    flipped = copy.deepcopy(made)
    flipped["photos"][0]["index"] = 1 - made["photos"][0]["index"]
    flipped["photos"][0]["label"] = made["manifest"]["labels"][flipped["photos"][0]["index"]]
    assert [p for p in golden.compare(flipped, made) if "answer" in p] != []
    # the pet output and the threshold are held to the probabilities' tolerance; another verdict is caught
    pet = copy.deepcopy(made)
    pet["photos"][1]["pet"] += 2 * tol["prob_max_abs"]
    assert [p.split(":")[0] for p in golden.compare(pet, made)] == ["pet"]
    raised = copy.deepcopy(made)
    raised["manifest"]["pet_threshold"] += 2 * tol["prob_max_abs"]
    assert [p.split(":")[0] for p in golden.compare(raised, made)] == ["manifest pet_threshold"]
    other_verdict = copy.deepcopy(made)
    said = other_verdict["photos"][0]
    said["verdict"] = said["label"] if said["verdict"] == NEITHER else NEITHER
    assert [p for p in golden.compare(other_verdict, made) if "verdict" in p] != []
    # the checked-in file (the shipped 288 MobileNet V1+V2 model) is not this model: named, not compared
    other = golden.compare(checked_in, made)
    assert other and all(p.startswith(("manifest", "artefact choice")) for p in other), other


@needs_shared
@pytest.mark.slow
def test_make_golden_on_a_real_288_art_dir(checked_in, run_288, tmp_path):
    """`tools/golden.py` on a real ART_DIR: `make run`'s model (V1 + V2 at 288) trained on 120 real photos
    and exported at fp32 (conftest.run_288). The file it writes passes the same check and has the checked-in file's contract."""
    out = tmp_path / "apps.json"
    assert golden.main([str(run_288 / "artefacts"), "--out", str(out)]) == 0
    made = json.loads(out.read_text())
    assert golden.check(made) == [] and out.stat().st_size <= golden.MAX_BYTES
    for key in ("input", "outputs", "labels", "manifest_version"):
        assert made["manifest"][key] == checked_in["manifest"][key], key
    # the apps pick the fp32 TFLite artefact, named after the backbone
    def fp32_tflite(g):
        return next(a["file"] for a in g["manifest"]["artefacts"] if (a["format"], a["precision"]) == ("tflite", "fp32"))

    assert made["choice"]["tflite"] == fp32_tflite(made) and checked_in["choice"]["tflite"] == fp32_tflite(checked_in)
    assert [p["name"] for p in made["photos"]] == [p["name"] for p in checked_in["photos"]]
    assert golden.main([str(tmp_path / "nowhere")]) == 2
