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
SECTIONS = ("data", "curves", "calibration", "cam", "parity", "artefacts")


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

    from catdog.report.facts import neither_rates

    html = (subset_run / "report.html").read_text()
    metrics = json.loads((subset_run / "metrics.json").read_text())
    section = re.search(r'<section id="neither">.*?</section>', html, re.S).group(0)
    assert escape(neither_rates(metrics)) in section
    assert f"keeps {metrics['pet']['keep']:.1%}" in section and f"rejects {metrics['pet']['reject']:.1%}" in section
    with open(subset_run / "pet_predictions.csv", newline="") as f:
        rows = list(csv.DictReader(f))
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
        assert re.findall(r"P\(pet\) (\d\.\d{3})", grid.group(1)) == [f"{float(r['p_pet']):.3f}" for r in shown]
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
