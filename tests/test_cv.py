"""Issue 14: settings chosen by cross-validation, the head refit on every photo, and a nested-CV
estimate that never scores a photo with a model or a setting chosen with it."""

from __future__ import annotations

import json

import keras
import numpy as np
import pytest

from catdog.features import load_features
from catdog.training import HeadConfig, cv as CV, train_head
from conftest import needs_shared

GRID = (1e-3, 1e-2, 1e-1)  # a short grid keeps these tests fast; the product's is CV.L2_GRID


@pytest.fixture(scope="module")
def real_data(subset_run) -> CV.Data:
    """MobileNetV2 features of the 240 real photos of the session's subset run."""
    fs = load_features(subset_run / "features.h5")
    return CV.Data(fs.features, fs.labels)


@needs_shared
def test_nested_cv_split_indices_never_mix_a_scored_photo_into_its_choice(real_data):
    result = CV.nested_cv(real_data, CV.Options(l2_grid=GRID), k=5, inner_k=4, seed=3)
    n = len(real_data.y)
    scored = np.concatenate([r.test for r in result.records])
    assert np.array_equal(np.sort(scored), np.arange(n))  # every photo scored exactly once
    for fold, record in enumerate(result.records):
        assert np.intersect1d(record.train, record.test).size == 0
        assert np.array_equal(np.union1d(record.train, record.test), np.arange(n))
        assert np.array_equal(np.flatnonzero(result.folds == fold), record.test)
        # the inner CV that chose this fold's setting saw only the outer training photos
        inner_scored = np.concatenate([va for _, va in record.selection.folds])
        assert np.array_equal(np.sort(inner_scored), record.train)
        for tr, va in record.selection.folds:
            assert np.intersect1d(tr, record.test).size == 0 and np.intersect1d(va, record.test).size == 0
            assert np.intersect1d(tr, va).size == 0


@needs_shared
def test_a_scored_photo_cannot_influence_its_own_score(real_data):
    """Scramble the labels and features of one outer fold: that fold's scores and chosen setting
    stay exactly the same (nothing of it reached its model), while the other folds' change."""
    options = CV.Options(l2_grid=GRID)
    before = CV.nested_cv(real_data, options, k=5, inner_k=4, seed=3)
    fold = 2
    held = before.folds == fold
    rng = np.random.default_rng(0)
    x, y = real_data.x.copy(), real_data.y.copy()
    y[held] = 1 - y[held]
    x[held] = rng.permutation(x[held].ravel()).reshape(x[held].shape)
    after = CV.nested_cv(CV.Data(x, y), options, k=5, inner_k=4, seed=3, folds=before.folds)
    record_before, record_after = before.records[fold], after.records[fold]
    assert record_after.selection.l2 == record_before.selection.l2
    assert record_after.selection.cv_log_loss == record_before.selection.cv_log_loss
    # same model on other inputs: its scores on the scrambled photos follow from the unchanged head
    head = CV.fit(real_data, record_before.train, options, record_before.selection.l2)
    assert np.allclose(after.p_dog[held], head.p_dog(x[held]), atol=1e-12)
    assert not np.allclose(after.p_dog[~held], before.p_dog[~held])


@needs_shared
def test_estimate_has_an_interval_and_fold_spread(real_data):
    result = CV.nested_cv(real_data, CV.Options(l2_grid=GRID), k=5, inner_k=4)
    e = CV.estimate(real_data.y, result.p_dog, result.folds, n_boot=500)
    lo, hi = e["log_loss_95"]
    assert lo < e["log_loss"] < hi and len(e["fold_log_loss"]) == 5
    assert min(e["fold_log_loss"]) <= e["log_loss"] <= max(e["fold_log_loss"])
    assert np.isclose(np.mean(e["fold_log_loss"]), e["log_loss"], atol=1e-9)  # equal folds (24 + 24 each)
    assert e["accuracy_95"][0] <= e["accuracy"] <= e["accuracy_95"][1]
    assert e["log_loss"] < 0.2 and e["accuracy"] >= 0.93  # 240 real photos: a useful head already


def test_bootstrap_interval_covers_the_mean_of_a_known_distribution():
    values = np.random.default_rng(1).exponential(0.04, 2000)  # heavy right tail, like per-photo log loss
    lo, hi = CV.bootstrap_interval(values, 1000, seed=0)
    assert lo < values.mean() < hi and 0.002 < hi - lo < 0.01


@needs_shared
def test_the_shipped_head_is_fitted_on_every_photo_with_the_cv_choice(subset_run):
    fs = load_features(subset_run / "features.h5")
    split = json.loads((subset_run / "split.json").read_text())
    metrics = json.loads((subset_run / "metrics.json").read_text())
    assert split["train"] == fs.names and len(fs.names) == 240 and split["validation"] == []
    assert metrics["n_train"] == 240 and metrics["n_val"] == 0
    assert metrics["head"]["l2"] == metrics["selection"]["l2"] == min(
        metrics["head"]["l2_grid"], key=lambda l2: (metrics["selection"]["cv_log_loss"][f"{l2:g}"], -l2))
    # the saved head is the logistic regression fitted on all 240 photos and their views at the chosen l2
    from catdog.training.stage import found_views

    views = found_views(subset_run / "features.h5")
    assert metrics["head"]["views"]
    # ... on the pooled features and the ImageNet top's dog-vs-cat log-odds (MobileNetV2 has a top)
    from catdog.training.pet import imagenet_top
    from catdog.training.train import with_dog_prior

    top, _ = imagenet_top("mobilenet_v2", "imagenet")
    head_features = with_dog_prior(fs, top).features
    x = np.vstack([head_features, *(with_dog_prior(views[v], top).features for v in metrics["head"]["views"])])
    assert all(views[v].names == fs.names for v in metrics["head"]["views"])
    expected = CV.fit_logistic(x, np.tile(fs.labels, 1 + len(metrics["head"]["views"])), metrics["head"]["l2"])
    head = keras.models.load_model(subset_run / "head.keras")  # takes the pooled features: the prior inside
    assert np.allclose(head.predict_on_batch(fs.features)[:, 1], expected.p_dog(head_features), atol=1e-5)
    # parity and calibration photos: training photos, disjoint, 20 % for parity
    assert len(split["parity"]) == 48 and not set(split["parity"]) & set(split["calibration"])
    assert set(split["parity"]) | set(split["calibration"]) == set(fs.names)


@needs_shared
def test_excluded_photos_do_not_train(subset_run, tmp_path, capsys):
    """--exclude takes a suspects.csv as a spreadsheet saves it (a UTF-8 byte-order mark before the
    header excluded nothing, silently), names an entry that matches no photo, and says in one line
    that a list which is not UTF-8 cannot be read (it was a traceback)."""
    from catdog.cli import main

    fs = load_features(subset_run / "features.h5")
    excluded = fs.names[:3] + fs.names[-2:]
    rows = "".join(f"{n},tiny\r\n" for n in excluded) + "cat.99999.jpg,typo\r\n"
    (tmp_path / "suspects.csv").write_bytes(b"\xef\xbb\xbf" + ("file,reason\r\n" + rows).encode())
    out = tmp_path / "run"
    assert main(["train", str(subset_run / "features.h5"), "--out", str(out), "--exclude", str(tmp_path / "suspects.csv"),
                 "--l2", "3e-3", "--cv", "3"]) == 0
    said = capsys.readouterr().out
    assert f"excluded 5 photo(s) listed in {tmp_path / 'suspects.csv'}" in said
    assert "note: 1 of the 6 names in" in said and "match no photo (e.g. cat.99999.jpg)" in said
    (tmp_path / "latin.txt").write_bytes(b"caf\xe9.jpg\n")
    assert main(["train", str(subset_run / "features.h5"), "--out", str(tmp_path / "r2"), "--exclude", str(tmp_path / "latin.txt")]) == 2
    assert "latin.txt: exclude list is not UTF-8 text; save it as UTF-8" in capsys.readouterr().err
    split = json.loads((out / "split.json").read_text())
    metrics = json.loads((out / "metrics.json").read_text())
    assert split["train"] == [n for n in fs.names if n not in excluded]
    assert metrics["n_train"] == 235 and metrics["n_excluded"] == 5 and metrics["head"]["l2_grid"] == [3e-3]
    assert len(metrics["estimate"]["fold_log_loss"]) == 3


@needs_shared
def test_training_is_reproducible(subset_run):
    fs = load_features(subset_run / "features.h5")
    config = HeadConfig(l2_grid=GRID, folds=3)
    a = train_head(fs, config, progress=False)
    b = train_head(fs, config, progress=False)
    assert all(np.array_equal(x, y) for x, y in zip(a.head.get_weights(), b.head.get_weights()))
    assert np.array_equal(a.train_idx, np.arange(240))


def test_fits_on_the_pool_keep_one_blas_thread():
    """Each fit limits BLAS to one thread, but the limit is process-wide: on the outer folds'
    threads, one fit's exit used to restore the default under another's running fit, whose sums
    then came out different in the last bits (nested CV not reproducible). The pool holds the
    limit for all of them."""
    import time

    from threadpoolctl import threadpool_info, threadpool_limits

    def blas_threads() -> int:
        return max(p["num_threads"] for p in threadpool_info() if p["user_api"] == "blas")

    def fit_like(i: int) -> int:  # what fit_path does around each fit
        with threadpool_limits(1):
            time.sleep(0.3 * i)  # item 0 leaves its limit while item 1 still fits
            return blas_threads()

    with threadpool_limits(2):  # the default on CI's two cores, here on any machine
        assert CV._map(fit_like, [0, 1], workers=2) == [1, 1]
        assert blas_threads() == 2  # and the pool gives the caller's setting back


def test_too_few_photos_for_nested_cv_is_one_line_before_training():
    """3 cats and 3 dogs with --cv 3 once passed the first check and failed inside a nested fold
    with "a class has fewer than 3 photos" (it had 3); the fewest that work, found by running them."""
    from catdog.errors import CatdogError

    for k in (2, 3, 5):
        need = CV.nested_minimum(k, k)
        y = np.repeat([0, 1], [need, need + 4])
        CV.check_nested(y, k, k)
        folds = CV.stratified_folds(y, k, seed=0)
        for f in range(k):  # each outer fold's training part can hold the inner folds
            CV.stratified_folds(y[folds != f], k, seed=1)
        short = np.repeat([0, 1], [need - 1, need + 4])
        with pytest.raises(CatdogError, match=rf"--cv {k}: nested cross-validation needs at least {need} photos of each class, and there are {need - 1} cats"):
            CV.check_nested(short, k, k)
        folds = CV.stratified_folds(short, k, seed=0)
        with pytest.raises(CatdogError):  # what the check saves the user from meeting mid-run
            for f in range(k):
                CV.stratified_folds(short[folds != f], k, seed=1)
    assert [CV.nested_minimum(k, k) for k in (2, 3, 5)] == [4, 5, 7]
    with pytest.raises(CatdogError, match="there are 4 cats; use --cv 2 or add photos"):
        CV.check_nested(np.repeat([0, 1], [4, 9]), 5, 5)
    with pytest.raises(CatdogError, match=r"there are 3 dogs; add photos \(--cv 2 needs 4 of each\)"):
        CV.check_nested(np.repeat([0, 1], [9, 3]), 5, 5)
    with pytest.raises(CatdogError, match=r"and there is 1 dog; add photos"):  # "there are 1 dogs"
        CV.check_nested(np.repeat([0, 1], [9, 1]), 5, 5)
