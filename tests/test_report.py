"""Stage 7, report: `catdog run` reads like a report (a line per stage, a closing summary table)
and every RUN_DIR gets report.html, checked in headless Chromium."""

from __future__ import annotations

import csv
import json
import re
import shutil
from pathlib import Path

import pytest

from catdog.report.facts import artefact_rows, expected_log_loss, parity_verdict
from catdog.report.figures import reliability
from catdog.report.summary import summary_table
from conftest import needs_shared

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
STAGES = ("features", "training", "export", "parity", "report")
SECTIONS = ("data", "curves", "calibration", "robustness", "cam", "parity", "artefacts")


@needs_shared
def test_catdog_run_prints_a_line_per_stage_and_a_summary_table(verified_run):
    run_dir, result = verified_run
    out = result.output
    for stage in STAGES:
        assert re.search(rf"^\[\s*\d+ s\] {stage}\s+\S", out, re.M), f"no {stage} line in:\n{out}"
    summary = out[out.index("\nsummary") :]
    metrics = json.loads((run_dir / "metrics.json").read_text())
    lo, hi = metrics["estimate"]["log_loss_95"]
    assert f"expected log loss  {metrics['estimate']['log_loss']:.4f}" in summary and f"95 % interval {lo:.4f}-{hi:.4f}" in summary
    assert str(run_dir / "model.keras") in summary and str(run_dir / "report.html") in summary
    manifest = json.loads((run_dir / "artefacts" / "manifest.json").read_text())
    parity = {r["file"]: r for r in json.loads((run_dir / "artefacts" / "parity.json").read_text())["artefacts"]}
    for a in manifest["artefacts"]:
        row = next(line for line in summary.splitlines() if line.startswith(a["file"]))
        assert f"{a['bytes'] / 1e6:.2f}" in row and parity_verdict(parity[a["file"]]) in row
        assert ("macOS only" if a["format"] == "coreml" else " ms") in row
    assert f"catdog serve {run_dir / 'artefacts'}" in summary and f"catdog cam {run_dir}" in summary


def test_facts_are_read_defensively():
    """A run trained by cross-validation and a refit (no validation split), or one without any
    score, still gets its summary; cross-validation is preferred as the expected log loss."""
    assert expected_log_loss({"cross_validation": {"folds": 5, "log_loss": 0.0324, "n": 2002}, "val": {"log_loss": 0.045}}) == (
        0.0324, "5-fold cross-validation on 2002 photos"
    )
    assert expected_log_loss({"val": {"log_loss": 0.045, "n": 400}})[0] == 0.045
    assert expected_log_loss({}) is None
    rows = artefact_rows({"artefacts": [{"file": "a.onnx", "format": "onnx", "precision": "fp32", "bytes": 2_000_000}]}, None)
    assert rows[0]["verdict"] == "not checked" and rows[0]["mb"] == 2.0
    text = summary_table({"run_dir": "r", "model": "r/model.keras", "report": "r/report.html", "expected_log_loss": None,
                          "accuracy": None, "artefacts": []})
    assert "none (not exported)" in text and "catdog export r --out r/artefacts" in text


def test_a_one_epoch_fine_tune_draws_its_points():
    """A line through one point draws nothing: a 1-epoch fine-tune's curves showed the legend alone
    (118 pixels of the train colour, its legend line), and ticks 0.995, 1.005. Each epoch has a marker."""
    import io

    import numpy as np
    from PIL import Image

    from catdog.report.figures import learning_curves

    png = learning_curves({"loss": [0.5], "val_loss": [0.4], "accuracy": [0.8], "val_accuracy": [0.9]}, 1)
    pixels = np.asarray(Image.open(io.BytesIO(png)).convert("RGB")).astype(int)
    train_colour = (np.abs(pixels - [0x1F, 0x77, 0xB4]).sum(-1) < 60).sum()  # matplotlib's C0
    assert train_colour > 200, train_colour  # 252 with the markers


def test_reliability_bins():
    rows = reliability([0, 0, 1, 1, 1], [0.05, 0.08, 0.55, 0.95, 0.97])
    assert [(r["bin"], r["n"], r["observed"]) for r in rows] == [(0, 2, 0.0), (5, 1, 1.0), (9, 2, 1.0)]


@pytest.fixture(scope="module")
def report_with_sensitivity(verified_run, tmp_path_factory) -> Path:
    """A copy of the verified run whose ART_DIR also holds sensitivity.png (as issue 17's export
    writes it), reported again: the page then has every section."""
    from catdog.report import write_report

    run_dir, _ = verified_run
    copy = tmp_path_factory.mktemp("reported") / "run"
    shutil.copytree(run_dir, copy)
    shutil.copy(run_dir / "curves.png", copy / "artefacts" / "sensitivity.png")  # a real PNG chart
    write_report(copy)
    return copy / "report.html"


@needs_shared
def test_catdog_run_writes_report_html(verified_run):
    run_dir, _ = verified_run
    html = (run_dir / "report.html").read_text()
    for sid in SECTIONS:
        assert f'<section id="{sid}">' in html
    assert 'id="sensitivity"' not in html  # no sensitivity.png in this ART_DIR
    assert not re.search(r"""(src|href)=["'](?!data:|#)""", html)  # self-contained: data URIs and anchors only


@needs_shared
@pytest.mark.skipif(CHROMIUM is None, reason="Debian's chromium is not installed (apt-get install chromium)")
def test_report_renders_in_headless_chromium(report_with_sensitivity, verified_run):
    from playwright.sync_api import sync_playwright

    run_dir, _ = verified_run
    manifest = json.loads((run_dir / "artefacts" / "manifest.json").read_text())
    shot = Path(__file__).resolve().parent / "output" / "report.png"
    shot.parent.mkdir(exist_ok=True)
    requests = []
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox", "--disable-gpu", "--no-first-run"])
        page = browser.new_page(viewport={"width": 1200, "height": 900})
        page.on("request", lambda r: requests.append(r.url))
        page.goto(report_with_sensitivity.as_uri())
        page.wait_for_load_state("load")
        for sid in (*SECTIONS, "sensitivity"):
            assert page.locator(f"section#{sid} h2").is_visible(), sid
        images = page.eval_on_selector_all("img", "els => els.map(e => [e.alt, e.complete && e.naturalWidth > 0])")
        assert images and all(ok for _, ok in images), images
        tiles = page.locator("section#cam figure")
        assert tiles.count() == 12  # a dozen validation photos
        captions = tiles.all_inner_texts()
        assert all(re.search(r"(cat|dog) \d+\.\d%, (right|wrong)", c) for c in captions), captions
        assert page.locator("section#curves img, section#calibration img, section#sensitivity img").count() == 3
        parity_rows = page.locator("section#parity tbody tr")
        assert parity_rows.count() == len(manifest["artefacts"])
        artefacts = page.inner_text("section#artefacts")
        for a in manifest["artefacts"]:
            assert a["file"] in artefacts
        assert len(re.findall(r"\d+\.\d ms", artefacts)) >= 3  # Keras, TFLite and ONNX timed; Core ML is macOS only
        used = page.inner_text("section#data")
        assert re.search(r"photos used\s+120", used) and "rejected" in used and "excluded" in used
        page.screenshot(path=str(shot), full_page=True)
        browser.close()
    assert all(u.startswith(("file:", "data:")) for u in requests), requests  # nothing fetched from a server
    assert shot.stat().st_size > 50_000


@needs_shared
def test_report_shows_the_neither_rates_and_the_photos_behind_them(subset_run):
    """subset_run (trained with --negatives) gets a Neither section: the nested-CV keep and reject
    rates of metrics.json, and up to 8 thumbnails of each kind of mistake from pet_predictions.csv,
    in order of P(pet), or "none"."""
    from html import escape

    from catdog.training.summary import neither_rates

    html = (subset_run / "report.html").read_text()
    metrics = json.loads((subset_run / "metrics.json").read_text())
    section = re.search(r'<section id="neither">.*?</section>', html, re.S).group(0)
    assert escape(neither_rates(metrics)) in section
    assert f"keeps {metrics['pet']['keep']:.1%}" in section and f"rejects {metrics['pet']['reject']:.1%}" in section
    with open(subset_run / "pet_predictions.csv", newline="") as f:
        rows = list(csv.DictReader(f))
    # each photo's fold threshold decided it (a photo over the shipped threshold could be called
    # neither without a word on why): kept exactly where P(pet) reaches its fold's threshold
    assert all((r["kept"] == "1") == (float(r["p_pet"]) >= float(r["threshold"]) - 1e-6) for r in rows)
    assert len({r["threshold"] for r in rows}) > 1  # one per outer fold, not the shipped one
    lists = {
        "rejected-pets": sorted((r for r in rows if r["kind"] == "pet" and r["kept"] == "0"), key=lambda r: float(r["p_pet"])),
        "accepted-negatives": sorted((r for r in rows if r["kind"] == "neither" and r["kept"] == "1"), key=lambda r: -float(r["p_pet"])),
    }
    for kind, wrong in lists.items():
        grid = re.search(rf'<div class="thumbs" data-kind="{kind}">(.*?)</div>', section, re.S)
        if not wrong:
            assert grid is None
            continue
        shown = wrong[:8]
        names = re.findall(r"<figcaption><b>([^<]+)</b>", grid.group(1))
        assert names == [r["file"] for r in shown], kind
        assert re.findall(r"P\(pet\) (\d\.\d{3}), its fold's threshold (\d\.\d{3})", grid.group(1)) == [
            (f"{float(r['p_pet']):.3f}", f"{float(r['threshold']):.3f}") for r in shown]
        assert grid.group(1).count('src="data:image/jpeg;base64,') == len(shown)  # every photo at hand, embedded
    assert section.count("<p>none</p>") == sum(not wrong for wrong in lists.values())


def test_neither_section_says_none_and_copes_with_missing_photos(tmp_path):
    """Straight from a pet_predictions.csv: no mistakes of a kind is "none"; a photo no longer at
    hand keeps its caption without an image; only the first 8 of a kind are shown."""
    from catdog.report.page import neither_photos, neither_section

    metrics = {"data_dir": str(tmp_path / "moved"), "pet": {"keep": 1.0, "reject": 0.5, "threshold": 0.2, "n_pets": 2,
                                                           "n_negatives": 10, "negatives_dir": str(tmp_path / "gone")}}
    lines = ["file,kind,p_pet,kept", "cat.1.jpg,pet,0.900000,1", "dog.2.jpg,pet,0.800000,1"]
    lines += [f"{n}.jpg,neither,{n / 100:.6f},{int(n >= 5)}" for n in range(10)]  # 5 of 10 accepted
    (tmp_path / "pet_predictions.csv").write_text("\n".join(lines) + "\n")
    photos = neither_photos(tmp_path / "pet_predictions.csv", metrics)
    assert photos["n_rejected_pets"] == 0 and [t["name"] for t in photos["accepted_negatives"]] == [f"{n}.jpg" for n in (9, 8, 7, 6, 5)]
    html = neither_section(metrics, photos)
    assert html.count("<p>none</p>") == 1 and "0 of 2" in html and "5 of 10" in html
    assert "<img" not in html and html.count("(photo not at hand)") == 5 and "P(pet) 0.090" in html
    lines += [f"1{n}.jpg,neither,0.5,1" for n in range(10)]
    (tmp_path / "pet_predictions.csv").write_text("\n".join(lines) + "\n")
    html = neither_section(metrics, neither_photos(tmp_path / "pet_predictions.csv", metrics))
    assert "15 of 20, the first 8 shown" in html and html.count("<figure") == 8
    assert "no photos to show" in neither_section(metrics, neither_photos(tmp_path / "nothing.csv", metrics))


# ---------- calibration and CAMs from the out-of-fold predictions; robustness ----------


def _section(html: str, sid: str) -> str:
    return re.search(rf'<section id="{sid}">.*?</section>', html, re.S).group(0)


def _cv_rows(run_dir: Path) -> list[dict]:
    with open(run_dir / "cv_predictions.csv", newline="") as f:
        return list(csv.DictReader(f))


def test_out_of_fold_predictions_are_read_defensively(tmp_path):
    """A cv_predictions.csv is read as it is, in file order; any malformed file is None (the
    report falls back), and a fine-tuned run does not take its parent head's predictions."""
    import numpy as np

    from catdog.report.measure import OUT_OF_FOLD_SOURCE, held_out_predictions, out_of_fold_predictions

    good = "file,label,fold,p_dog\ncat.1.jpg,0,0,0.000366\ndog.7.jpg,1,1,0.25\ncat.3.jpg,0,2,0.9\n"
    (tmp_path / "cv_predictions.csv").write_text(good)
    held = held_out_predictions(tmp_path, {})
    assert held.names == ["cat.1.jpg", "dog.7.jpg", "cat.3.jpg"] and held.labels.tolist() == [0, 1, 0]
    assert np.allclose(held.p_dog, [0.000366, 0.25, 0.9]) and held.held_out and held.out_of_fold
    assert held.source == OUT_OF_FOLD_SOURCE == "nested cross-validation: each photo scored by a head fitted without it"
    assert held_out_predictions(tmp_path, {"finetuned_from": "elsewhere"}) is None  # nothing else at hand here
    broken = {
        "missing": None,
        "header only": "file,label,fold,p_dog\n",
        "no p_dog column": "file,label,fold\ncat.1.jpg,0,0\n",
        "short row": good + "dog.9.jpg,1\n",
        "label 2": good + "dog.9.jpg,2,0,0.5\n",
        "P not a number": good + "dog.9.jpg,1,0,high\n",
        "P NaN": good + "dog.9.jpg,1,0,nan\n",
        "P above 1": good + "dog.9.jpg,1,0,1.5\n",
        "no name": good + ",1,0,0.5\n",
    }
    for why, text in broken.items():
        path = tmp_path / f"{why}.csv"
        if text is not None:
            path.write_text(text)
        assert out_of_fold_predictions(path) is None, why
    (tmp_path / "binary.csv").write_bytes(b"\xff\xfe\x00garbage\x89PNG")
    assert out_of_fold_predictions(tmp_path / "binary.csv") is None


@needs_shared
def test_report_shows_the_out_of_fold_predictions(subset_run, tmp_path, monkeypatch):
    """subset_run's page (written by `catdog run`): calibration and CAMs use cv_predictions.csv,
    the CAM grid holds its out-of-fold mistakes (the worst first, up to 6) with their out-of-fold
    P, and a run whose file is broken falls back to the head on its training photos."""
    import numpy as np

    from catdog.report import write_report
    from catdog.report.measure import held_out_predictions, pick_cam_photos

    metrics = json.loads((subset_run / "metrics.json").read_text())
    rows = _cv_rows(subset_run)
    held = held_out_predictions(subset_run, metrics)
    assert held.out_of_fold and held.names == [r["file"] for r in rows] and len(rows) == 240
    assert held.labels.tolist() == [int(r["label"]) for r in rows]
    assert held.p_dog.tolist() == [float(r["p_dog"]) for r in rows]
    wrong = [n for n, y, p in zip(held.names, held.labels, held.p_dog) if (p >= 0.5) != (y == 1)]

    html = (subset_run / "report.html").read_text()
    calibration = _section(html, "calibration")
    assert "each P(dog) out-of-fold" in calibration and f"{len(wrong)} wrong." in calibration
    assert "Kaggle photos" in calibration and "twice as high" in calibration
    table = re.findall(r"<tr><td>(\d\.\d)–\d\.\d</td><td class=\"num\">(\d+)</td>", calibration)
    assert [(float(lo), int(n)) for lo, n in table] == [(r["bin"] / 10, r["n"]) for r in reliability(held.labels, held.p_dog)]

    cam = _section(html, "cam")
    shown = re.findall(r'<figure class="(right|wrong)"><img alt="([^"]+)"', cam)
    assert [name for _, name in shown] == [held.names[i] for i in pick_cam_photos(held)]
    assert [name for verdict, name in shown if verdict == "wrong"] == sorted(
        wrong, key=lambda n: -abs(held.p_dog[held.names.index(n)] - held.labels[held.names.index(n)])
    )[:6]
    for verdict, name in shown:
        p = held.p_dog[held.names.index(name)]
        said = re.search(rf"<b>{re.escape(name)}</b>: out-of-fold (cat|dog) (\d+\.\d)%", cam)
        assert said.group(1) == ("dog" if p >= 0.5 else "cat") and said.group(2) == f"{max(p, 1 - p) * 100:.1f}", name
    assert "shipped model" in cam

    copy = tmp_path / "run"
    shutil.copytree(subset_run, copy)
    (copy / "cv_predictions.csv").write_text("file,label,fold,p_dog\ncat.0.jpg,0,0,oops\n")
    fallback = held_out_predictions(copy, metrics)
    assert not fallback.out_of_fold and not fallback.held_out and fallback.source.startswith("head.keras")
    assert sorted(fallback.names) == sorted(held.names) and not np.allclose(
        fallback.p_dog, held.p_dog[[held.names.index(n) for n in fallback.names]]
    )  # in-sample P(dog) are not the out-of-fold ones
    monkeypatch.chdir(copy)
    write_report(Path("."))  # `catdog report .` from inside the run
    page = (copy / "report.html").read_text()
    assert "training photos (this run holds none out)" in _section(page, "calibration")
    assert "<title>catdog run run: " in page  # the folder's own name (it was "catdog run : ")


def test_the_title_names_the_command_that_wrote_the_run(tmp_path):
    """report.html was titled "catdog run" for the folders `train` and `finetune` write too."""
    from catdog.report import _made_by

    run = tmp_path / "run"
    run.mkdir()
    (run / "features.h5").write_bytes(b"")
    assert _made_by(run, {"features_file": str(run / "features.h5")}) == "run"
    assert _made_by(tmp_path, {"features_file": str(run / "features.h5")}) == "train"  # a feature file read from elsewhere
    assert _made_by(tmp_path, {"features_file": "x.h5", "finetuned_from": str(run)}) == "finetune"
    assert _made_by(tmp_path, {}) == "run"  # an older run's metrics.json: the word it always had


@needs_shared
def test_a_photo_the_held_out_head_gets_wrong_is_a_wrong_cam_tile(subset_run, tmp_path):
    """A guaranteed out-of-fold mistake, made honestly: the subset's most confidently right cat is
    relabelled dog in a copy of its features and the real training function fits a run on them.
    The heads that never saw that photo call it a cat: the report's calibration counts it wrong
    and the CAM grid shows it as a wrong tile with its out-of-fold P, whatever the shipped model
    (fitted on the flipped label too) says."""
    import dataclasses

    from catdog.features import load_features
    from catdog.report import write_report
    from catdog.report.measure import cam_tiles, held_out_predictions, pick_cam_photos
    from catdog.training import load_run
    from catdog.training.train import train_run

    rows = _cv_rows(subset_run)
    flipped = min((r for r in rows if r["label"] == "0"), key=lambda r: float(r["p_dog"]))["file"]
    features = load_features(subset_run / "features.h5")
    labels = features.labels.copy()
    labels[features.names.index(flipped)] = 1
    run_dir = tmp_path / "flipped"
    metrics = train_run(dataclasses.replace(features, labels=labels), run_dir, progress=False)

    held = held_out_predictions(run_dir, metrics)
    k = held.names.index(flipped)
    assert held.out_of_fold and held.labels[k] == 1 and held.p_dog[k] < 0.5  # out-of-fold: a cat, so wrong
    picked = pick_cam_photos(held)
    assert k in picked[:6]
    tile = next(t for t in cam_tiles(load_run(run_dir).model, held, metrics["data_dir"], picked) if t["name"] == flipped)
    assert not tile["right"] and tile["label"] == "dog" and tile["predicted"] == "cat"
    assert tile["confidence"] == pytest.approx(1 - held.p_dog[k]) and 0 <= tile["model_p_dog"] <= 1

    write_report(run_dir)
    html = (run_dir / "report.html").read_text()
    n_wrong = int(((held.p_dog >= 0.5) != (held.labels == 1)).sum())
    assert n_wrong >= 1 and f"{n_wrong} wrong." in _section(html, "calibration")
    cam = _section(html, "cam")
    assert f'<figure class="wrong"><img alt="{flipped}"' in cam
    assert f"<b>{flipped}</b>: out-of-fold cat {1 - held.p_dog[k]:.1%}, wrong (it is a dog)" in cam
    assert html.index('id="calibration"') < html.index('id="robustness"') < html.index('id="cam"')


ROBUSTNESS = {
    "method": "Held-out photos, each changed one way, scored by a head that never saw them.",
    "rows": [
        {"name": "clean", "kind": "clean", "what": "the photos as they are", "n": 2002, "log_loss": 0.024, "accuracy": 0.989},
        {"name": "closeup", "kind": "shift", "what": "close-up crop, 40-70 % of the area", "n": 200, "log_loss": 0.05, "accuracy": 0.98},
        {"name": "broken", "kind": "shift", "what": "no log loss: left out"},
        "not a row",
        {"name": "gray", "kind": "shift", "what": "grayscale", "n": 200, "log_loss": 0.07, "accuracy": 0.975},
        {"name": "groups", "kind": "group", "what": "group-held-out folds (feature clusters)", "n": 2002, "log_loss": 0.08, "accuracy": 0.975},
    ],
    "mean_shifted": 0.06,
}


def _colour_pixels(png: bytes, colour: str) -> int:
    import io

    import numpy as np
    from matplotlib.colors import to_rgb
    from PIL import Image

    rgb = np.asarray(Image.open(io.BytesIO(png)).convert("RGB")).astype(int)
    return int((np.abs(rgb - np.round(np.array(to_rgb(colour)) * 255)).sum(-1) <= 3).sum())


def test_robustness_section_plots_the_rows_and_says_when_there_are_none():
    """metrics.json's robustness block becomes a bar chart (a colour per kind) and a table of its
    usable rows in order; a run without the block, or with a malformed one, gets a one-line note."""
    from catdog.report.facts import robustness_rows
    from catdog.report.figures import ROBUSTNESS_COLOURS, robustness
    from catdog.report.page import SECTIONS, robustness_section

    rows = robustness_rows({"robustness": ROBUSTNESS})
    assert [r["name"] for r in rows] == ["clean", "closeup", "gray", "groups"]
    png = robustness(rows)
    assert png.startswith(b"\x89PNG")
    for kind, colour in ROBUSTNESS_COLOURS.items():
        assert _colour_pixels(png, colour) > 500, kind  # each kind's bars in its own colour
    no_group = robustness(rows[:3])
    assert _colour_pixels(no_group, ROBUSTNESS_COLOURS["group"]) == 0 and _colour_pixels(no_group, ROBUSTNESS_COLOURS["shift"]) > 500

    html = robustness_section(png, rows, {"robustness": ROBUSTNESS})
    assert ROBUSTNESS["method"] in html and "2.5 × the clean 0.0240" in html and 'alt="robustness"' in html
    for method in (ROBUSTNESS["method"], "head at the chosen l2"):  # metrics.json's method, with or without its full stop
        lead = robustness_section(png, rows, {"robustness": {**ROBUSTNESS, "method": method}})
        assert f'{method.rstrip(".")}. Mean of the shifts' in lead
    cells = re.findall(r"<tr><td>([^<]+)</td><td>([^<]+)</td><td class=\"num\">(\d+)</td><td class=\"num\">([\d.]+)</td><td class=\"num\">([\d.]+%)</td></tr>", html)
    assert cells == [
        ("clean", "the photos as they are", "2002", "0.0240", "98.90%"),
        ("closeup", "close-up crop, 40-70 % of the area", "200", "0.0500", "98.00%"),
        ("gray", "grayscale", "200", "0.0700", "97.50%"),
        ("groups", "group-held-out folds (feature clusters)", "2002", "0.0800", "97.50%"),
    ]
    assert list(SECTIONS).index("robustness") == list(SECTIONS).index("calibration") + 1

    for metrics in ({}, {"robustness": None}, {"robustness": {"rows": "not a list"}}, {"robustness": {"rows": [{"name": "x"}]}}):
        rows = robustness_rows(metrics)
        assert rows == [] and robustness(rows) is None, metrics
        html = robustness_section(None, rows, metrics)
        assert "This run has no shift measurements" in html and "<img" not in html and "<table" not in html


@needs_shared
def test_parity_that_no_longer_describes_an_artefact_is_not_shown_as_a_pass(verified_run, tmp_path):
    """parity.json records the sha256 of each file it measured; report.html and the summary table
    show a row whose artefact was exported again since (another sha256 in manifest.json), or is
    gone, as not current rather than the old pass, and the page's verdict follows."""
    from catdog.report import write_report

    run_dir, _ = verified_run
    copy = tmp_path / "run"
    shutil.copytree(run_dir, copy)
    art = copy / "artefacts"
    manifest = json.loads((art / "manifest.json").read_text())
    parity = json.loads((art / "parity.json").read_text())
    assert all(r["sha256"] == a["sha256"] for r, a in zip(parity["artefacts"], manifest["artefacts"]))
    facts = write_report(copy)
    assert facts["parity_passed"] and all(r["verdict"].startswith("pass") for r in facts["artefacts"])

    tflite, onnx_file = (next(a for a in manifest["artefacts"] if a["format"] == f) for f in ("tflite", "onnx"))
    tflite["sha256"] = "0" * 64  # as an export of another model into the same folder records it
    (art / "manifest.json").write_text(json.dumps(manifest))
    (art / onnx_file["file"]).unlink()
    facts = write_report(copy)
    rows = {r["file"]: r for r in facts["artefacts"]}
    assert not facts["parity_passed"]
    assert rows[tflite["file"]]["verdict"] == (
        f"not current: parity.json measured another {tflite['file']} than the one there now (exported again since); "
        f"run `catdog parity {art} --images DIR` again"
    )
    assert rows[onnx_file["file"]]["verdict"] == (
        f"not current: {onnx_file['file']} is no longer in the artefacts folder; run `catdog export` again, then `catdog parity`"
    )
    assert rows[onnx_file["file"]]["latency"] == {"note": "not run (missing)"}
    others = [r for f, r in rows.items() if f not in (tflite["file"], onnx_file["file"])]
    assert others and all(r["verdict"].startswith("pass") for r in others)
    html = (copy / "report.html").read_text()
    assert f"2 of {len(rows)} artefacts not current" in html and "all artefacts pass" not in html
    assert f"not current: {onnx_file['file']}" in summary_table(facts)
    # a re-export of other formats: the manifest no longer lists a file parity.json measured. Its
    # row is left out, with a line (the page said "all artefacts pass" above rows of such files)
    dropped = others[0]["file"]
    manifest["artefacts"] = [a for a in manifest["artefacts"] if a["file"] != dropped]
    (art / "manifest.json").write_text(json.dumps(manifest))
    facts = write_report(copy)
    assert dropped not in {r["file"] for r in facts["artefacts"]}
    html = (copy / "report.html").read_text()
    assert "parity.json also holds 1 row(s) of files manifest.json no longer lists (an earlier export's): left out here." in html
    assert f">{dropped}<" not in html.split('id="parity"')[1].split("</section>")[0]


def test_what_is_not_a_run_or_its_features_is_one_line(tmp_path, capsys):
    """`catdog report` on a folder that is not a RUN_DIR, or with --art naming one that is not an
    ART_DIR, and `catdog train` on another program's h5 file: one line each, exit 2, nothing
    written (report.html used to appear in any folder given)."""
    import h5py
    import numpy as np

    from catdog.cli import main

    other = tmp_path / "other"
    assert main(["report", str(other)]) == 2  # a folder that is not there: said so (it was "not a catdog RUN_DIR")
    assert capsys.readouterr().err.strip() == f"catdog: error: {other}: no such folder; give the RUN_DIR `catdog run`, `train` or `finetune` wrote"
    other.mkdir()
    assert main(["report", str(other)]) == 2
    assert capsys.readouterr().err.strip() == (
        f"catdog: error: {other}: not a catdog RUN_DIR (no metrics.json, no model.keras); give the folder `catdog run` or `catdog train` wrote"
    )
    run = tmp_path / "run"
    run.mkdir()
    (run / "metrics.json").write_text("{}")
    assert main(["report", str(run), "--art", str(other)]) == 2
    assert capsys.readouterr().err.strip().endswith(f"{other} is not a catdog ART_DIR (run `catdog export` again)")
    with h5py.File(tmp_path / "other.h5", "w") as f:
        f["x"] = np.zeros(3)
    assert main(["train", str(tmp_path / "other.h5"), "--out", str(tmp_path / "trained")]) == 2
    assert capsys.readouterr().err.strip() == (
        f"catdog: error: {tmp_path / 'other.h5'}: not a catdog feature file (no backbone attribute, no features); make one with `catdog features`"
    )
    assert sorted(p.name for p in tmp_path.rglob("*")) == ["metrics.json", "other", "other.h5", "run"]
