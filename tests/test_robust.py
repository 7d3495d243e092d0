"""Issue 26: views of a photo (augmented and shifted), their cached features, training on several
views, the shift table inside cross-validation and group-held-out folds, `evaluate --shifts`."""

from __future__ import annotations

import json

import numpy as np
import pytest
from PIL import Image

from catdog.data import SHIFTS, VIEWS, apply_view, open_rgb, scan, shift_photos
from catdog.features import load_features, view_path
from catdog.training import cv as CV
from conftest import TRAIN, catdog_cli, kaggle_names, needs_shared


@pytest.fixture(scope="module")
def photo() -> Image.Image:
    path = TRAIN / "cat.1.jpg"
    if not path.is_file():
        pytest.skip(f"real photos not found at {TRAIN}")
    return open_rgb(path)


@needs_shared
def test_each_view_changes_the_photo_as_it_says_and_the_same_way_every_time(photo):
    w, h = photo.size
    plain = np.asarray(photo, np.float64)
    for view in VIEWS:
        once, again = apply_view(photo, view, "cat.1.jpg"), apply_view(photo, view, "cat.1.jpg")
        assert np.array_equal(np.asarray(once), np.asarray(again)), view  # seeded by (view, name): reproducible
        assert once.mode == "RGB"
        if once.size == photo.size:
            assert np.abs(np.asarray(once, np.float64) - plain).mean() > 1.0, f"{view} left the photo as it was"
    other = [np.asarray(apply_view(photo, "closeup", f"cat.{i}.jpg")).shape for i in range(2, 12)]
    assert len(set(other)) > 1  # another photo name, another crop
    for i in range(20):
        crop = apply_view(photo, "closeup", f"cat.{i}.jpg")
        assert 0.38 <= crop.size[0] * crop.size[1] / (w * h) <= 0.72
    assert max(apply_view(photo, "lowres", "x").size) == 96
    gray = np.asarray(apply_view(photo, "gray", "x"))
    assert np.array_equal(gray[..., 0], gray[..., 1]) and np.array_equal(gray[..., 1], gray[..., 2])
    assert np.array_equal(np.asarray(apply_view(photo, "mirror", "x")), plain[:, ::-1].astype(np.uint8))
    rotated = np.asarray(apply_view(photo, "rotate", "cat.1.jpg"), np.float64)
    corners = rotated[[0, 0, -1, -1], [0, -1, 0, -1]]
    assert corners.max(axis=1).min() > 0  # cropped inside the rotated photo: no black wedge in a corner


@needs_shared
def test_shift_photos_are_a_seeded_balanced_subset():
    samples = [s for s in scan(TRAIN)[0] if s.label is not None]
    chosen = shift_photos(samples, 200)
    assert len(chosen) == 200 and sum(s.label for s in chosen) == 100
    assert [s.name for s in chosen] == [s.name for s in shift_photos(samples, 200)]
    assert [s.name for s in chosen] != [s.name for s in shift_photos(samples, 200, seed=1)]


@needs_shared
def test_group_folds_hold_out_a_kind_of_photo(subset_run):
    """Each group fold is a k-means cluster of each class: its photos sit nearer their own fold's
    centre than the others' do, and both classes are in every fold."""
    fs = load_features(subset_run / "features.h5")
    folds = CV.group_folds(fs.features, fs.labels, 4, seed=0)
    assert np.array_equal(folds, CV.group_folds(fs.features, fs.labels, 4, seed=0))
    unit = fs.features / np.linalg.norm(fs.features, axis=1, keepdims=True)
    for f in range(4):
        for cls in (0, 1):
            inside = unit[(folds == f) & (fs.labels == cls)]
            outside = unit[(folds != f) & (fs.labels == cls)]
            assert len(inside) > 0
            centre = inside.mean(0)
            assert np.linalg.norm(inside - centre, axis=1).mean() < np.linalg.norm(outside - centre, axis=1).mean()
    stratified = CV.stratified_folds(fs.labels, 4, seed=0)
    data = CV.Data(fs.features, fs.labels)
    options = CV.Options(l2_grid=(3e-3,))
    p_group = CV.fold_predictions(data, options, folds, 3e-3)
    p_random = CV.fold_predictions(data, options, stratified, 3e-3)
    from catdog.training.metrics import log_loss

    # a whole kind of photo unseen in training is harder than photos drawn at random
    assert log_loss(fs.labels, p_group) > log_loss(fs.labels, p_random)


@needs_shared
def test_run_trains_on_views_and_measures_every_shift_on_held_out_photos(subset_run):
    """`catdog run` (the session's subset run, CLI defaults) extracts the default views of every
    photo and the shifts of a subset, trains on the views, and writes the shift table."""
    from catdog.training.settings import SHIFT_PHOTOS, TRAIN_VIEWS
    from catdog.training.stage import found_views
    from catdog.training.train import HeadConfig, nested_estimate

    fs = load_features(subset_run / "features.h5")
    metrics = json.loads((subset_run / "metrics.json").read_text())
    assert metrics["head"]["views"] == list(TRAIN_VIEWS) and metrics["head"]["robust"]
    views = found_views(subset_run / "features.h5")
    assert set(views) == set(SHIFTS)
    for view, held in views.items():
        assert held.attrs["view"] == view and view_path(subset_run / "features.h5", view).is_file()
        assert set(held.names) <= set(fs.names)
        assert len(held.names) == (len(fs.names) if view in TRAIN_VIEWS else min(SHIFT_PHOTOS, len(fs.names)))
        assert not np.allclose(held.features[:5], fs.features[[fs.names.index(n) for n in held.names[:5]]], atol=1e-3)
    rows = {r["name"]: r for r in metrics["robustness"]["rows"]}
    assert list(rows) == ["clean", *SHIFTS, "groups"]
    assert rows["clean"]["n"] == rows["groups"]["n"] == len(fs.names)
    assert all(0 < r["log_loss"] < 5 and 0.5 < r["accuracy"] <= 1 for r in rows.values())
    assert rows["groups"]["log_loss"] > rows["clean"]["log_loss"]
    shifts = np.mean([r["log_loss"] for r in rows.values() if r["kind"] == "shift"])
    assert metrics["robustness"]["mean_shifted"] == pytest.approx((shifts + rows["groups"]["log_loss"]) / 2)

    # the same procedure by hand: each shifted photo is scored only by a head that never saw the photo in any view
    config = HeadConfig(l2_grid=(1e-3, 1e-2), folds=3, views=tuple(TRAIN_VIEWS))
    _, nested, _, data = nested_estimate(fs, config, views, progress=False)
    assert data.rows(np.arange(10), config.views)[0].shape[0] == 10 * (1 + len(TRAIN_VIEWS))
    for record in nested.records:
        for shift, (photos, p) in record.shifted.items():
            assert set(photos) <= set(record.test) and not set(photos) & set(record.train)
            assert len(p) == len(photos)
    total = {s: sum(len(r.shifted[s][0]) for r in nested.records) for s in SHIFTS}
    assert total == {s: len(views[s].names) for s in SHIFTS}


@needs_shared
def test_robust_selection_weighs_the_shifted_folds(subset_run):
    """With shifted views, l2 is chosen by the mean of the clean and the shifted CV log loss."""
    from catdog.training.stage import found_views
    from catdog.training.train import HeadConfig, _data

    fs = load_features(subset_run / "features.h5")
    rows = np.arange(len(fs.names))
    config = HeadConfig(l2_grid=(1e-4, 1e-3, 1e-2, 1e-1), folds=3)
    data = _data(fs, rows, found_views(subset_run / "features.h5"), config)
    robust = CV.select(data, rows, config.options, 3, seed=0)
    clean = CV.select(data, rows, CV.Options(l2_grid=config.l2_grid, robust=False), 3, seed=0)
    assert clean.cv_log_loss == clean.clean_log_loss
    for l2 in config.l2_grid:
        assert robust.cv_log_loss[l2] == pytest.approx((robust.clean_log_loss[l2] + robust.shifted_log_loss[l2]) / 2)
        assert robust.shifted_log_loss[l2] > robust.clean_log_loss[l2] * 0.5
    assert robust.l2 == min(config.l2_grid, key=lambda l2: (robust.cv_log_loss[l2], -l2))


@needs_shared
def test_train_without_a_views_file_says_how_to_make_it(subset_run, tmp_path, capsys):
    import shutil

    from catdog.cli import main
    from catdog.training.settings import SHIFT_PHOTOS

    alone = tmp_path / "features.h5"  # the features without their views folder
    shutil.copy(subset_run / "features.h5", alone)
    assert main(["train", str(alone), "--out", str(tmp_path / "run"), "--views", "mirror", "--l2", "1e-2"]) == 2
    err = capsys.readouterr().err
    assert err == "catdog: error: training on view 'mirror' needs its features; extract them with `catdog features DATA --out FEATURES.h5 --view mirror` (FEATURES.h5: the photos' file; the view goes to views/mirror.h5 beside it)\n"
    assert not (tmp_path / "run").exists()
    # a view of only some photos (the shifts' subset) cannot train
    assert main(["train", str(subset_run / "features.h5"), "--out", str(tmp_path / "run2"), "--views", "rotate", "--l2", "1e-2"]) == 2
    missing = len(load_features(subset_run / "features.h5").names) - SHIFT_PHOTOS
    assert f"the rotate view's features lack {missing} of the photos" in capsys.readouterr().err


@needs_shared
def test_an_interrupted_view_is_left_out_with_a_line(subset_run, tmp_path, capsys):
    """A Ctrl-C'd `catdog features --view closeup` stopped every later `catdog train` ("feature
    extraction did not finish"), --views none included: it is left out with a line saying how to
    resume it; asked for by name (--views mirror), it is an error with that command."""
    import shutil

    import h5py

    from catdog.cli import main

    shutil.copy(subset_run / "features.h5", tmp_path / "features.h5")
    shutil.copytree(subset_run / "views", tmp_path / "views")
    for view in ("closeup", "mirror"):
        with h5py.File(tmp_path / "views" / f"{view}.h5", "a") as f:
            f.attrs["complete"] = False  # what an interrupted extraction leaves
    resume = f"`catdog features DATA --out {tmp_path / 'features.h5'} --view closeup`"
    assert main(["train", str(tmp_path / "features.h5"), "--out", str(tmp_path / "run"), "--l2", "1e-2", "--cv", "3"]) == 0
    out = capsys.readouterr().out
    assert f"note: {tmp_path / 'views' / 'closeup.h5'} is unfinished (extraction interrupted): the closeup view is left out; {resume} resumes it" in out
    metrics = json.loads((tmp_path / "run" / "metrics.json").read_text())
    assert "closeup" not in {r["name"] for r in metrics["robustness"]["rows"]} and not metrics["head"].get("views")
    assert main(["train", str(tmp_path / "features.h5"), "--out", str(tmp_path / "run2"), "--views", "mirror", "--l2", "1e-2"]) == 2
    assert "the mirror view's extraction did not finish; resume it with `catdog features DATA --out" in capsys.readouterr().err


@needs_shared
def test_evaluate_shifts_prints_and_writes_a_row_per_shift(subset_run, held_out, tmp_path):
    out = tmp_path / "eval.json"
    result = catdog_cli("evaluate", str(subset_run), str(held_out), "--shifts", "--json", str(out))
    assert result.returncode == 0, result.output[-2000:]
    scores = json.loads(out.read_text())
    assert [r["name"] for r in scores["shifts"]] == list(SHIFTS)
    n = len(kaggle_names("cat", range(900, 940))) * 2
    assert all(r["n"] == n and 0 < r["log_loss"] < 5 for r in scores["shifts"])
    assert len({round(r["log_loss"], 6) for r in scores["shifts"]}) == len(SHIFTS)  # each shift changes the photos differently
    for r in scores["shifts"]:
        assert f"{r['name']:>10} {r['log_loss']:>10.4f}" in result.output
    assert "mean" in result.output and f"{scores['log_loss']:>10.4f}" in result.output
    mean = scores["shifts_mean"]  # the printed mean, in the JSON too (it was left out)
    assert mean["n_shifts"] == len(SHIFTS) and mean["log_loss"] == pytest.approx(np.mean([r["log_loss"] for r in scores["shifts"]]))
    assert f"{'mean':>10} {mean['log_loss']:>10.4f} {mean['accuracy']:>10.2%}  of the {len(SHIFTS)} shifts" in result.output
