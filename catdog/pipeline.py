"""`catdog run`: every stage in turn (features, training, export, parity, report), one line each
with its time and key figure, then the summary table.

Light at import (the CLI imports it lazily, inside its handler).
"""

from __future__ import annotations

import time
from pathlib import Path

from catdog.contract import ArtDir, RunDir
from catdog.errors import CatdogError


def run_pipeline(
    data: str,
    run_dir: Path,
    *,
    extraction,
    head_config,
    exclude: str | None = None,
    export: bool = True,
    formats: str = "coreml,tflite,onnx",
    precision: str = "fp32,fp16,int8",
    calibration_dir: str | None = None,
    mixed: bool = True,
    keep_float: str | None = None,
    reference: str | None = None,
    negatives: str | None = None,
    shift_photos: int = 0,
) -> int:
    """The whole chain from DATA into RUN_DIR; the exit code (1 where parity failed).

    exclude: photos left out before extraction (so training takes every cached photo);
    export=False stops after training; reference: parity reference photos (default: 24 of the
    run's parity photos, split.json); negatives: a folder of photos with no cat or dog, for the
    "neither" answer; shift_photos: photos per shifted view the training measures (0: none; the
    views `head_config.views` trains on are extracted for every photo and measured on all of them).
    The other parameters are `catdog features`', `train`'s and `export`'s (`extraction`: a
    `catdog.features.Extraction`, the same for the photos, their views and the negatives;
    `head_config`: a `catdog.training.HeadConfig`).
    """
    from catdog.data import SHIFTS
    from catdog.features import view_path
    from catdog.features.stage import features_stage
    from catdog.report import Stage, export_figure, parity_figure, summary_table, training_figure, write_report
    from catdog.contract import read_json
    from catdog.training.stage import check_folds, check_negatives_folder, train_stage
    from catdog.training.summary import robustness_lines

    start = time.perf_counter()
    run_dir = Path(run_dir)
    features = run_dir / RunDir.FEATURES
    for option, folder in (("--reference", reference), ("--calibration", calibration_dir), ("--negatives", negatives)):
        if folder and not Path(folder).is_dir():  # said now, not after minutes of extraction and training
            raise CatdogError(f"{option} {folder}: no such folder; give a folder of photos")
    check_folds(data, head_config.folds)  # --cv K against the photos' names, before any extraction
    if negatives:
        check_negatives_folder(negatives, data)

    with Stage("features") as stage:
        report, stage.figure = features_stage(data, features, run_dir / RunDir.REJECTED, extraction, exclude=exclude, labelled=True)
        seconds = report.seconds
        views = [*head_config.views, *(v for v in SHIFTS if shift_photos and v not in head_config.views)]
        for view in views:  # augmented views of every photo, shifted views of a subset; same rejections
            photos = None if view in head_config.views else shift_photos
            seconds += features_stage(data, view_path(features, view), None, extraction, exclude=exclude, view=view, shift_photos=photos, echo=False)[0].seconds
        if views:
            stage.figure += f"; views {', '.join(views)}; {seconds:.0f} s of extraction in all"
        if negatives:  # photos with neither cat nor dog, for the pet detector: same backbone and size
            features_stage(negatives, run_dir / RunDir.NEGATIVES, run_dir / RunDir.REJECTED_NEGATIVES, extraction)
    with Stage("training") as stage:
        metrics = train_stage(
            features, run_dir, head_config, exclude=None, negatives=str(run_dir / RunDir.NEGATIVES) if negatives else None, views=views
        )
        stage.figure = training_figure(metrics)
    for line in robustness_lines(metrics):
        print(line)
    code, model, art_dir = 0, None, None
    if export:
        from catdog.export.stage import export_stage
        from catdog.parity.stage import parity_stage
        from catdog.training import load_run, run_photos

        run = load_run(run_dir)
        model, art_dir = run.model, run_dir / "artefacts"
        with Stage("export") as stage:
            manifest = export_stage(run, formats, precision, art_dir, calibration_dir, mixed=mixed, keep_float=keep_float,
                                    max_pixels=extraction.max_pixels)
            stage.figure = export_figure(manifest, art_dir)
        with Stage("parity") as stage:
            labelled = run_photos(run, "parity")
            photos = reference or [s.path for s in labelled[:: max(1, len(labelled) // 24)][:24]]
            if negatives and not reference:  # photos with neither: where the pet output decides the verdict
                from catdog.data import scan

                others = scan(negatives)[0]
                photos = [*photos, *(s.path for s in others[:: max(1, len(others) // 24)][:24])]
            code = parity_stage(art_dir, photos, labelled, run_dir, edge=True, max_pixels=extraction.max_pixels)[0]
            stage.figure = parity_figure(read_json(art_dir / ArtDir.PARITY_JSON) or {}, art_dir)
    with Stage("report") as stage:
        facts = write_report(run_dir, art_dir, model)
        stage.figure = facts["report"]
    print(summary_table(facts, time.perf_counter() - start))
    return code
