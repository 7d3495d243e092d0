"""Stage 7, report: `catdog run` reads like a report (a line per stage, a closing summary table)
and every RUN_DIR gets report.html, checked in headless Chromium."""

from __future__ import annotations

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
    assert f"expected log loss  {metrics['val']['log_loss']:.4f}" in summary
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
