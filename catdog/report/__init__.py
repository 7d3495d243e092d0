"""Stage 7, report: what a run made, for a person.

* `write_report(run_dir, art_dir)` writes RUN_DIR/report.html, one self-contained page (data,
  learning curves, calibration and CAMs of a dozen photos by their out-of-fold P(dog) from the
  nested CV (cv_predictions.csv; a run without it: the validation or training photos), log loss
  on shifted photos (metrics.json's robustness block), the neither answer's rates and the photos
  behind them, parity, the mixed-precision sensitivity chart where ART_DIR/sensitivity.png
  exists, artefact sizes and latencies), and returns the facts it shows.
* `summary_table(facts)` is the same facts as the closing table of `catdog run`;
  `stage_line` and the `*_figure` helpers are its one line per stage.

Reads RUN_DIR and ART_DIR defensively (see `facts`): a section whose inputs are missing says so.
"""

from __future__ import annotations

import os
from pathlib import Path

from catdog.contract import ArtDir, RunDir, exported_from, load_manifest, read_json
from catdog.errors import CatdogError
from catdog.atomic import write_text
from catdog.report.facts import (
    ESTIMATE_SCOPE,
    artefact_rows,
    current_parity,
    exported_from_another_model,
    data_summary,
    expected_accuracy,
    expected_log_loss,
    robustness_rows,
)
from catdog.training.summary import neither_rates
from catdog.report.summary import Stage, export_figure, parity_figure, stage_line, summary_table, training_figure

REPORT_FILE = "report.html"


def write_report(run_dir: str | os.PathLike, art_dir: str | os.PathLike | None = None, model=None) -> dict:
    """Write RUN_DIR/report.html (atomically) and return its facts (for `summary_table`).

    art_dir: the run's artefacts (default RUN_DIR/artefacts where it has a manifest.json).
    model: the run's full Keras model if the caller has it loaded (else it is loaded here).
    """
    from catdog.report import figures, measure, page

    run_dir = Path(run_dir)
    if not run_dir.exists():
        raise CatdogError(f"{run_dir}: no such folder; give the RUN_DIR `catdog run`, `train` or `finetune` wrote")
    if not ((run_dir / RunDir.METRICS).is_file() or (run_dir / RunDir.MODEL).is_file()):
        if (run_dir / ArtDir.MANIFEST).is_file():
            source = exported_from(run_dir)[0] or "RUN_DIR"
            raise CatdogError(f"{run_dir}: an ART_DIR (it holds manifest.json), not a RUN_DIR; give the RUN_DIR it was exported from: "
                              f"catdog report {source} --art {run_dir}")
        raise CatdogError(f"{run_dir}: not a catdog RUN_DIR (no metrics.json, no model.keras); give the folder `catdog run` or `catdog train` wrote")
    metrics = read_json(run_dir / RunDir.METRICS) or {}
    named = art_dir is not None  # an ART_DIR asked for by name: one line where it is not one
    if not named and (run_dir / "artefacts" / ArtDir.MANIFEST).is_file():
        art_dir = run_dir / "artefacts"
    art_dir = Path(art_dir) if art_dir is not None else None
    manifest = (load_manifest(art_dir) if named else read_json(art_dir / ArtDir.MANIFEST)) if art_dir else None
    parity = current_parity(read_json(art_dir / ArtDir.PARITY_JSON), manifest, art_dir, metrics.get("model_sha256")) if art_dir else None
    if model is None and (run_dir / RunDir.MODEL).is_file():
        from catdog.training import load_run

        model = load_run(run_dir).model

    held = measure.held_out_predictions(run_dir, metrics, model)
    tiles = []
    if held is not None and model is not None:
        tiles = measure.cam_tiles(model, held, metrics.get("data_dir", ""), measure.pick_cam_photos(held))
    latency, keras_latency = {}, None
    if manifest and model is not None:
        photo = _first_photo(tiles, held, metrics, model)
        keras_latency = measure.keras_latency(model, photo)
        latency = measure.latencies(art_dir, manifest, photo)
    rows = artefact_rows(manifest, parity, latency)

    history = read_json(run_dir / "history.json") or {}
    curves = figures.learning_curves(history, metrics.get("best_epoch"))
    if curves is None and (run_dir / "curves.png").is_file():  # a head fitted by CV: its L2 selection curves
        curves = (run_dir / "curves.png").read_bytes()
    calibration = None
    if held is not None and len(held.labels):
        title = "photos, out-of-fold P" if held.out_of_fold else "validation photos" if held.held_out else "training photos"
        calibration = figures.calibration(held.labels, held.p_dog, f"reliability on {len(held.labels)} {title}")
    shifts = robustness_rows(metrics)
    sensitivity_png = art_dir / ArtDir.SENSITIVITY_PNG if art_dir else None
    sensitivity = sensitivity_png.read_bytes() if sensitivity_png and sensitivity_png.is_file() else None

    data = data_summary(run_dir, metrics)
    expected = expected_log_loss(metrics)
    facts = {
        "run_dir": str(run_dir),
        "report": str(run_dir / REPORT_FILE),
        "model": str(run_dir / RunDir.MODEL),
        "art_dir": str(art_dir) if manifest else None,
        "backbone": metrics.get("backbone", "?"),
        "image_size": metrics.get("image_size"),
        "expected_log_loss": expected,
        "estimate_nested": isinstance((metrics.get("estimate") or {}).get("log_loss"), (int, float)),
        "accuracy": expected_accuracy(metrics),
        "neither": neither_rates(metrics),
        "data": data,
        "artefacts": rows,
        "keras_latency": keras_latency,
        "parity_passed": None if parity is None else bool(parity.get("passed")),
        "cam_photos": [{k: t[k] for k in ("name", "label", "predicted", "right", "p_dog")} for t in tiles],
        "cam_out_of_fold": held is not None and held.out_of_fold,
        "data_dir": metrics.get("data_dir", ""),
        "sensitivity": sensitivity is not None,
    }
    key_lines = [_key_line(facts)]
    sections = [
        page.data_section(data),
        page.curves_section(curves, metrics),
        page.calibration_section(calibration, held, metrics),
        page.robustness_section(figures.robustness(shifts), shifts, metrics),
        page.cam_section(tiles, held),
        page.neither_section(metrics, page.neither_photos(run_dir / RunDir.PET_PREDICTIONS, metrics)),
        page.parity_section(parity, manifest is not None),
        page.sensitivity_section(sensitivity, exported_from_another_model(manifest, metrics.get("model_sha256"))),
        page.artefacts_section(rows, keras_latency, facts["art_dir"]),
    ]
    title = f"catdog {_made_by(run_dir, metrics)} {run_dir.resolve().name}: {facts['backbone']} at {facts['image_size'] or '?'} px"
    write_text(run_dir / REPORT_FILE, page.page(title, key_lines, sections))
    return facts


def _made_by(run_dir: Path, metrics: dict) -> str:
    """The command that wrote RUN_DIR, for the page's title: `finetune` names its source run,
    `catdog run` writes its feature file into the folder, `catdog train` reads one from elsewhere."""
    if metrics.get("finetuned_from"):
        return "finetune"
    if metrics.get("features_file") and not (run_dir / RunDir.FEATURES).is_file():
        return "train"
    return "run"


def _key_line(facts: dict) -> str:
    from html import escape

    expected = facts["expected_log_loss"]
    if expected is None:
        return "No log loss measured in this run."
    acc = f", accuracy {facts['accuracy']:.2%}" if facts["accuracy"] is not None else ""
    neither = f" The neither answer {escape(facts['neither'])}." if facts.get("neither") else ""
    scope = f" {escape(ESTIMATE_SCOPE)}" if facts.get("estimate_nested") else ""
    return f"Expected log loss <b>{expected[0]:.4f}</b>{acc} ({escape(expected[1])}).{scope}{neither}"


def _first_photo(tiles: list[dict], held, metrics: dict, model):
    """A real photo at the model's input size for latency timing (zeros if none is at hand)."""
    import numpy as np

    from catdog.data import ImageError, open_rgb, resize
    from catdog.features import input_size

    size = input_size(model)
    if held is not None and held.names and metrics.get("data_dir"):
        try:
            return resize(open_rgb(Path(metrics["data_dir"]) / held.names[0]), size).astype(np.float32)
        except (ImageError, OSError):
            pass
    return np.zeros((size, size, 3), np.float32)


__all__ = [
    "REPORT_FILE",
    "Stage",
    "artefact_rows",
    "data_summary",
    "expected_log_loss",
    "export_figure",
    "parity_figure",
    "stage_line",
    "summary_table",
    "training_figure",
    "write_report",
]
