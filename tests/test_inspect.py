"""catdog inspect: planted problems among real photos are found; the report renders; --exclude works."""

from __future__ import annotations

import csv
import json
import shutil

import numpy as np
import pytest
from PIL import Image

from catdog.inspect import checks, read_exclude
from conftest import REFERENCE, SHARED, TRAIN, copy_photos, kaggle_names, needs_shared

IMAGENET_LABELS = SHARED / "weights" / "sources" / "imagenet_labels.txt"


@pytest.fixture(scope="module")
def planted(tmp_path_factory):
    if not TRAIN.is_dir():
        pytest.skip(f"real photos not found at {TRAIN}")
    data = copy_photos(tmp_path_factory.mktemp("inspect") / "data", kaggle_names("cat", range(30)) + kaggle_names("dog", range(30)))
    # a non-pet photo labelled dog: the curtain in the corner of a real photo
    Image.open(REFERENCE / "coral_cat_720p.jpg").convert("RGB").crop((0, 0, 300, 300)).save(data / "dog.9001.jpg")
    # a tiny photo
    Image.open(TRAIN / "cat.40.jpg").convert("RGB").resize((40, 30), Image.BILINEAR).save(data / "cat.9002.jpg")
    # a near-duplicate (re-encoded smaller) and an exact copy
    Image.open(TRAIN / "dog.5.jpg").convert("RGB").resize((250, 200)).save(data / "dog.9003.jpg", quality=70)
    shutil.copy(TRAIN / "cat.3.jpg", data / "cat.9004.jpg")
    (data / "cat.9005.jpg").write_bytes(b"")  # unusable: reported, the run goes on
    return data


@needs_shared
def test_inspect_finds_planted_problems(planted, subset_run, tmp_path):
    from catdog.cli import main

    out = tmp_path / "report"
    args = ["inspect", str(planted), "--out", str(out), "--run", str(subset_run), "--imagenet-labels", str(IMAGENET_LABELS), "--min-side", "45"]
    assert main(args) == 0
    with open(out / "suspects.csv") as f:
        rows = {row["file"]: row for row in csv.DictReader(f)}
    assert "ImageNet top-10 holds no dog class" in rows["dog.9001.jpg"]["reasons"]
    assert "tiny: 40x30 (shorter side < 45 px)" in rows["cat.9002.jpg"]["reasons"]
    assert "the shorter side is under 45 px" in (out / "report.html").read_text()  # the page said 50 whatever --min-side was
    assert "duplicate of dog.5.jpg" in rows["dog.9003.jpg"]["reasons"] and rows["dog.9003.jpg"]["duplicate_of"] == "dog.5.jpg"
    assert "duplicate of cat.3.jpg (dHash distance 0)" in rows["cat.9004.jpg"]["reasons"]
    assert "cat.9005.jpg" in (out / "rejected.csv").read_text()
    summary = json.loads((out / "summary.json").read_text())
    assert summary["photos"] == 64 and summary["rejected"] == 1
    page = (out / "report.html").read_text()
    assert page.count("data:image/jpeg;base64,") >= 10 and page.count("data:image/png;base64,") == 2
    assert "Photos the model gets most wrong" in page and "dog.9001.jpg" in page
    # ranked by log loss, the list goes on into right answers: each card says which it is, the title how many are wrong
    wrong = summary["model_wrong"]
    assert isinstance(wrong, int) and page.count("WRONG: log loss") == min(wrong, 24)
    assert page.count("right, unsure: log loss") == 24 - min(wrong, 24)
    assert f"; {wrong} of the labelled photos wrong" in page


@needs_shared
def test_inspect_says_what_is_wrong_before_decoding_and_runs_on_unlabelled_photos(subset_run, tmp_path, capsys):
    """A missing --imagenet-labels file was a traceback once every photo was decoded, a fused
    --backbone (make run's name) an AttributeError, and --run on photos with no label a ValueError:
    now two lines before any work, and a report without the model check."""
    from catdog.cli import main
    from conftest import TEST

    data = copy_photos(tmp_path / "test", ["1.jpg", "2.jpg", "3.jpg"], src=TEST)
    out = tmp_path / "report"
    for extra, expected in ((["--imagenet-labels", str(tmp_path / "labels.txt")], f"{tmp_path / 'labels.txt'}: cannot read it (No such file or directory)"),
                            (["--backbone", "mobilenet,mobilenet_v2"], "backbone 'mobilenet,mobilenet_v2': an ImageNet classifier is one backbone")):
        assert main(["inspect", str(data), "--out", str(out), *extra]) == 2
        err = capsys.readouterr().err.strip()
        assert err.startswith(f"catdog: error: {expected}") and "\n" not in err, err
        assert not out.exists()
    # a DATA that is not there: said first (not a weights error), and no empty report folder is left
    assert main(["inspect", str(tmp_path / "nope"), "--out", str(out)]) == 2
    assert f"{tmp_path / 'nope'}: no such folder" in capsys.readouterr().err and not out.exists()
    assert main(["inspect", str(data), "--out", str(out), "--run", str(subset_run)]) == 0
    assert f"inspect: --run {subset_run}: no labelled photo in {data}, so no log loss to rank by" in capsys.readouterr().out
    assert json.loads((out / "summary.json").read_text())["photos"] == 3 and (out / "report.html").is_file()
    assert "no labelled photo in" in (out / "report.html").read_text()  # not "no RUN_DIR given": one was
    assert "None of the labelled" not in (out / "report.html").read_text()


@needs_shared
def test_inspect_with_make_runs_model_at_288(planted, run_288, tmp_path):
    """The checks decode at 224; `make run`'s model takes 288 (it once failed with a shape error)."""
    from catdog.cli import main
    from catdog.training import load_run

    assert load_run(run_288).model.input_shape[1] == 288
    out = tmp_path / "report"
    assert main(["inspect", str(planted), "--out", str(out), "--run", str(run_288)]) == 0
    with open(out / "suspects.csv") as f:
        rows = {row["file"]: row for row in csv.DictReader(f)}
    losses = [float(r["log_loss"]) for r in rows.values() if r["log_loss"]]
    assert len(losses) >= 1 and all(v >= 0 for v in losses)
    page = (out / "report.html").read_text()
    assert "Photos the model gets most wrong" in page and page.count("data:image/png;base64,") == 2
    # the worst photo's loss is the run's own answer on it at 288 (catdog.runtime, temperature 1 as inspect uses)
    from catdog.data import LABELS, decode
    from catdog.runtime import PROBABILITIES, open_model

    worst = max((r for r in rows.values() if r["log_loss"]), key=lambda r: float(r["log_loss"]))
    probs = open_model(run_288, temperature=1.0)(decode(planted / worst["file"], 288))[PROBABILITIES]
    assert abs(-np.log(probs[LABELS.index(worst["label"])]) - float(worst["log_loss"])) < 2e-3


@needs_shared
def test_exclude_leaves_suspects_out(planted, tmp_path, capsys):
    from catdog.cli import main
    from catdog.features import load_features

    exclude = tmp_path / "exclude.txt"
    exclude.write_text("# photos to drop\ndog.9001.jpg\ncat.9002.jpg\n")
    assert read_exclude(exclude) == {"dog.9001.jpg", "cat.9002.jpg"}
    run_dir = tmp_path / "run"
    assert main(["run", "--views", "none", "--shift-photos", "0", str(planted), "--out", str(run_dir), "--exclude", str(exclude), "--no-export", "--l2", "3e-3"]) == 0
    names = load_features(run_dir / "features.h5").names
    assert "dog.9001.jpg" not in names and "cat.9002.jpg" not in names and len(names) == 62
    assert json.loads((run_dir / "metrics.json").read_text())["n_excluded"] == 2
    assert "excluded 2 photo(s)" in capsys.readouterr().out


def test_checks_on_arrays():
    assert checks.tiny(np.array([[49, 300], [50, 50]])).tolist() == [True, False]
    flat = np.zeros((224, 224, 3), np.uint8)
    assert checks.colour_ratio(flat) == 1 / (224 * 224)
    mask, (low, high) = checks.iqr_outliers(np.array([1.0, 2, 3, 4, 5, 100]))
    assert mask.tolist() == [False] * 5 + [True] and low < 1 < 5 < high < 100
    probs = np.zeros((2, 1000))
    probs[0, 281] = 0.9  # a tabby, labelled cat: fine
    probs[1, 281] = 0.9  # a tabby, labelled dog: suspect
    miss, score = checks.top_k_misses(probs, np.array([0, 1]), k=10)
    assert miss.tolist() == [False, True] and score[0] == pytest.approx(0.9)


@needs_shared
def test_inspect_refuses_a_run_dir_or_data_as_its_out(subset_run, tmp_path, capsys):
    """`--out RUN_DIR` replaced the run's own report.html and rejected.csv without a word, and
    `--out DATA` put the report and its lists among the photos (each later scan called them
    rejected files). Both are one line now, before any photo is decoded, and nothing is written."""
    from catdog.cli import main
    from conftest import TEST

    data = copy_photos(tmp_path / "test", ["1.jpg", "2.jpg"], src=TEST)
    report = subset_run / "report.html"
    before = report.read_bytes() if report.exists() else None
    assert main(["inspect", str(data), "--out", str(subset_run)]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith(f"catdog: error: --out {subset_run}: its report.html is the report.html of RUN_DIR {subset_run}") and "\n" not in err, err
    assert (report.read_bytes() if report.exists() else None) == before
    assert main(["inspect", str(data), "--out", str(data)]) == 2
    err = capsys.readouterr().err.strip()
    assert err == f"catdog: error: --out {data} is DATA itself; give a folder outside it, or a subfolder such as {data / 'inspect'}", err
    assert sorted(p.name for p in data.iterdir()) == ["1.jpg", "2.jpg"]


@needs_shared
def test_inspect_thumbnails_are_upright(tmp_path):
    """A card's thumbnail was the photo as stored, sideways for a phone's EXIF-rotated photo, under
    the upright size the model saw."""
    import base64
    import io

    from catdog.data import open_rgb
    from catdog.inspect.report import _thumb

    stored = Image.open(TRAIN / "cat.1.jpg").convert("RGB")
    assert stored.width > stored.height
    exif = Image.Exif()
    exif[0x0112] = 6  # rotate 90° clockwise to view
    stored.save(tmp_path / "phone.jpg", exif=exif)
    upright = open_rgb(tmp_path / "phone.jpg")
    thumb = Image.open(io.BytesIO(base64.b64decode(_thumb(tmp_path / "phone.jpg").split(",", 1)[1])))
    assert (thumb.width < thumb.height) == (upright.width < upright.height) and upright.width < upright.height, (thumb.size, upright.size)


@needs_shared
def test_weights_that_cannot_be_had_are_one_line_for_inspect_and_features(tmp_path):
    """Without the weights in $KERAS_HOME and no network (a proxy that refuses, so a machine with
    one fails the same way): one line each, the file to put where. inspect's line quoted Keras'
    URL and the resolver's words, cut mid-word at 160 characters. Real `catdog` processes."""
    import os
    import subprocess
    import sys

    from conftest import REPO

    data = copy_photos(tmp_path / "data", ["cat.1.jpg", "dog.1.jpg"])
    env = {**os.environ, "KERAS_HOME": str(tmp_path / "keras"), "https_proxy": "http://127.0.0.1:9", "HTTPS_PROXY": "http://127.0.0.1:9"}
    for args, file in ((["inspect", str(data), "--out", str(tmp_path / "report")], "mobilenet_v2_weights_tf_dim_ordering_tf_kernels_1.0_224.h5"),
                       (["features", str(data), "--out", str(tmp_path / "f.h5")], "mobilenet_v2_weights_tf_dim_ordering_tf_kernels_1.0_224_no_top.h5")):
        done = subprocess.run([sys.executable, "-m", "catdog.cli", *args], cwd=REPO, env=env, capture_output=True, text=True, timeout=300)
        last = done.stderr.strip().splitlines()[-1]
        assert done.returncode == 2 and "(no network?)" in last and f"put {file} in {tmp_path / 'keras' / 'models'}" in last, done.stderr[-2000:]
