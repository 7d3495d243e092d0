"""Stage 3: split, scores, training on real features, the full model, evaluate and predict."""

from __future__ import annotations

import csv
import json
import re

import keras
import numpy as np
import pytest

from catdog.data import decode, scan
from catdog.errors import CatdogError
from catdog.features import load_features
from catdog.training import load_run, metrics as M, stratified_folds, stratified_split, train_head
from conftest import TEST, TRAIN, copy_photos, needs_shared


def test_stratified_split_is_seeded_and_keeps_class_ratio():
    labels = np.array([0] * 70 + [1] * 30)
    tr, va = stratified_split(labels, 0.2, seed=3)
    assert len(va) == 20 and (labels[va] == 1).sum() == 6
    assert np.intersect1d(tr, va).size == 0 and len(tr) + len(va) == 100
    assert np.array_equal(va, stratified_split(labels, 0.2, seed=3)[1])
    assert not np.array_equal(va, stratified_split(labels, 0.2, seed=4)[1])
    folds = stratified_folds(labels, 5, seed=0)
    assert all((labels[folds == k] == 1).sum() == 6 for k in range(5))


def test_log_loss_and_temperature():
    y = np.array([1, 0, 1, 1])
    p = np.array([0.9, 0.2, 0.6, 0.99])
    assert M.log_loss(y, p) == pytest.approx(-np.mean(np.log([0.9, 0.8, 0.6, 0.99])))
    # labels drawn from a model whose logits are 3x overconfident: fitting finds T close to 3
    rng = np.random.default_rng(0)
    z = rng.normal(0, 4, 20000)
    y = (rng.random(z.size) < 1 / (1 + np.exp(-z / 3))).astype(int)
    probs = np.stack([1 / (1 + np.exp(z)), 1 / (1 + np.exp(-z))], 1)
    t = M.fit_temperature(probs, y)
    assert 2.7 < t < 3.3
    assert M.log_loss(y, M.apply_temperature(probs, t)) < M.log_loss(y, probs[:, 1])


@needs_shared
def test_run_dir_holds_model_metrics_and_curves(subset_run):
    names = ("model.keras", "head.keras", "metrics.json", "curves.png", "split.json", "cv_predictions.csv", "features.h5", "rejected.csv")
    for name in names:
        assert (subset_run / name).is_file(), name
    metrics = json.loads((subset_run / "metrics.json").read_text())
    assert metrics["backbone"] == "mobilenet_v2" and metrics["n_val"] == 0 and metrics["n_train"] == 240
    # 240 real photos: the head must already separate cats from dogs well on photos it never saw
    estimate = metrics["estimate"]
    assert estimate["log_loss"] < 0.15 and estimate["accuracy"] >= 0.93 and estimate["n"] == 240
    assert estimate["log_loss_95"][0] < estimate["log_loss"] < estimate["log_loss_95"][1]
    assert len(metrics["data_fingerprint"]) == 64 and len(estimate["fold_log_loss"]) == 5
    assert sum(map(sum, estimate["confusion_matrix"])) == 240
    assert metrics["train"]["log_loss"] < estimate["log_loss"]  # in-sample is optimistic, as it should be
    rows = list(csv.DictReader(open(subset_run / "cv_predictions.csv")))
    assert len(rows) == 240 and {r["fold"] for r in rows} == set("01234")
    p_dog = np.array([float(r["p_dog"]) for r in rows])
    assert M.log_loss([int(r["label"]) for r in rows], p_dog) == pytest.approx(estimate["log_loss"], abs=1e-5)
    assert (subset_run / "curves.png").stat().st_size > 10_000


@needs_shared
def test_full_model_equals_head_on_features(subset_run):
    run = load_run(subset_run)
    fs = load_features(subset_run / "features.h5")
    head = keras.models.load_model(subset_run / "head.keras")
    images = np.stack([decode(TRAIN / n) for n in fs.names[:6]])
    full = run.model.predict_on_batch(images.astype(np.float32))
    assert full["probabilities"].shape == (6, 2) and full["pet"].shape == (6, 1)
    assert np.allclose(full["probabilities"], head.predict_on_batch(fs.features[:6]), atol=1e-5)
    names = [layer.name for layer in run.model.layers]
    assert names == ["image", "preprocess", "backbone", "gap", "pet_head", "head_features", "dropout", "probabilities"], names


@needs_shared
def test_evaluate_on_held_out_photos(subset_run, held_out, tmp_path, capsys):
    from catdog.cli import main

    out = tmp_path / "eval.json"
    assert main(["evaluate", str(subset_run), str(held_out), "--json", str(out)]) == 0
    result = json.loads(out.read_text())
    assert result["n"] == 80 and result["log_loss"] < 0.2 and result["accuracy"] >= 0.9
    assert "log loss" in capsys.readouterr().out
    # Kaggle's unlabelled test folder: one line naming it, before any of its 500 photos is predicted
    # (predicting writes rejected.csv beside --json; it once ran them all, then said so)
    unlabelled = tmp_path / "unlabelled"
    unlabelled.mkdir()
    assert main(["evaluate", str(subset_run), str(TEST), "--json", str(unlabelled / "eval.json")]) == 2
    err = capsys.readouterr().err
    assert err == f"catdog: error: {TEST}: no labelled photos to evaluate; use cat.N.jpg/dog.N.jpg names or cat/ and dog/ folders\n"
    assert list(unlabelled.iterdir()) == []


@needs_shared
def test_predict_writes_sorted_clipped_submission(subset_run, tmp_path):
    from catdog.cli import main

    test_dir = copy_photos(tmp_path / "test", [f"{n}.jpg" for n in (1, 2, 3, 10, 11, 100, 101)], src=TEST)
    (test_dir / "12.jpg").write_bytes(b"")  # a bad file: reported, the rest predicted
    out = tmp_path / "submission.csv"
    assert main(["predict", str(subset_run), str(test_dir), "--out", str(out)]) == 0
    rows = list(csv.DictReader(open(out)))
    assert [r["id"] for r in rows] == ["1", "2", "3", "10", "11", "100", "101"]
    p = np.array([float(r["label"]) for r in rows])
    assert p.min() >= 0.005 and p.max() <= 0.995
    assert "12.jpg" in (tmp_path / "submission.rejected.csv").read_text()
    assert main(["predict", str(subset_run), str(test_dir), "--out", str(out), "--no-clip", "--calibrated"]) == 0
    unclipped = np.array([float(r["label"]) for r in csv.DictReader(open(out))])
    assert np.array_equal(unclipped >= 0.5, p >= 0.5)
    assert main(["predict", str(subset_run), str(test_dir), "--out", str(out), "--clip", "0.9", "0.1"]) == 2


@needs_shared
def test_train_needs_labelled_photos(tmp_path):
    from catdog.features import extract_features

    samples, _ = scan(copy_photos(tmp_path / "t", ["1.jpg", "2.jpg", "3.jpg"], src=TEST))
    extract_features(samples, tmp_path / "f.h5", progress=False)
    with pytest.raises(CatdogError, match="no labelled photos"):
        train_head(load_features(tmp_path / "f.h5"))


def test_missing_run_dir_is_a_clear_error(tmp_path):
    with pytest.raises(CatdogError, match="no such RUN_DIR"):
        load_run(tmp_path / "nope")
    (tmp_path / "empty").mkdir()
    with pytest.raises(CatdogError, match="not a finished catdog RUN_DIR"):
        load_run(tmp_path / "empty")
    (tmp_path / "model.bin").write_bytes(b"an artefact renamed")  # it said "no such RUN_DIR" of a file that is there
    with pytest.raises(CatdogError, match=r"model.bin: a file, neither a RUN_DIR nor a catdog artefact \(.tflite, .onnx, .mlpackage\)"):
        load_run(tmp_path / "model.bin")
    # a RUN_DIR's own model file: named as what it is, with the folder to give (it said "neither a RUN_DIR nor …")
    (tmp_path / "run").mkdir()
    (tmp_path / "run" / "model.keras").write_bytes(b"")
    with pytest.raises(CatdogError, match=f"^{re.escape(str(tmp_path / 'run' / 'model.keras'))} is the model.keras of RUN_DIR .*; give the folder, "):
        load_run(tmp_path / "run" / "model.keras")
    # an ART_DIR's manifest.json: the ART_DIR's own line (the folder it named was then refused as an ART_DIR)
    (tmp_path / "art").mkdir()
    (tmp_path / "art" / "manifest.json").write_text("{}")
    with pytest.raises(CatdogError, match=r"art: an ART_DIR \(it holds manifest\.json\), not a RUN_DIR"):
        load_run(tmp_path / "art" / "manifest.json")


def test_a_temperature_at_the_search_bound_is_said():
    """Held-out predictions with no mistake drive the fitted temperature to 0.05 (a late-fusion run
    of 60 photos printed "CV temperature 0.050 (`--calibrated` applies it)", which makes every P 0
    or 1): the line now says what the bound means."""
    from catdog.training.summary import bound_note

    separable = M.fit_temperature(np.array([[0.9, 0.1], [0.2, 0.8], [0.7, 0.3]]), np.array([0, 1, 0]))
    assert separable == pytest.approx(M.TEMPERATURE_BOUNDS[0], rel=1e-6)
    assert "no held-out mistake to fit it on" in bound_note(separable)
    chance = M.fit_temperature(np.array([[0.9, 0.1], [0.1, 0.9]] * 5), np.array([1, 0] * 5))
    assert chance == pytest.approx(M.TEMPERATURE_BOUNDS[1], rel=1e-6) and "no better than chance" in bound_note(chance)
    honest = M.fit_temperature(np.array([[0.9, 0.1], [0.2, 0.8], [0.7, 0.3], [0.4, 0.6]]), np.array([0, 1, 0, 0]))
    assert M.TEMPERATURE_BOUNDS[0] < honest < M.TEMPERATURE_BOUNDS[1] and bound_note(honest) == ""


def test_a_model_keras_that_metrics_json_does_not_describe_is_refused(subset_run, tmp_path):
    """A train stopped between its model.keras and its metrics.json left the new model beside the
    old run's threshold and rates, and evaluate said it keeps 30 % of the cats and dogs (100 %
    with its own): a model.keras whose sha256 is not metrics.json's `model_sha256` is one line."""
    import shutil

    from catdog.contract import RunDir

    run = tmp_path / "run"
    shutil.copytree(subset_run, run, ignore=shutil.ignore_patterns("features.h5", "negatives.h5", "views", "cache", "artefacts"))
    assert load_run(run).model is not None
    metrics = json.loads((run / RunDir.METRICS).read_text())
    (run / RunDir.METRICS).write_text(json.dumps({**metrics, "model_sha256": "0" * 64}))  # another model's record
    with pytest.raises(CatdogError, match=r"model\.keras: not the model metrics\.json describes \(sha256 differs: a train stopped part-way"):
        load_run(run)
