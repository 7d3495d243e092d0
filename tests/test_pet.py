"""The third answer, "neither": the pet detector `catdog train` fits, its threshold, and the `pet`
output every artefact carries, on real photos (cats and dogs from Kaggle, photos with neither from
COCO; the held-out ones never trained anything)."""

from __future__ import annotations

import json

import numpy as np
import pytest
from conftest import HELD_OUT, NOT_PETS, copy_photos, kaggle_names, needs_shared, not_pets

from catdog.contract import NEITHER, PET, PET_THRESHOLD, PROBABILITIES, verdict


def _verdicts(out: dict, threshold: float) -> list[str]:
    return [verdict(p, q, threshold) for p, q in zip(out[PROBABILITIES], out[PET][:, 0])]


@pytest.fixture(scope="module")
def held_out_not_pets(tmp_path_factory):
    if not NOT_PETS.is_dir():
        pytest.skip(f"photos with no cat or dog not found at {NOT_PETS}")
    return copy_photos(tmp_path_factory.mktemp("held_out_not_pets"), not_pets(held_out=True), src=NOT_PETS)


@needs_shared
def test_train_fits_the_detector_and_records_the_threshold_and_rates(subset_run):
    metrics = json.loads((subset_run / "metrics.json").read_text())
    pet = metrics[PET]
    assert pet["imagenet_top"] == "mobilenet_v2" and pet["n_negatives"] == 60 and pet["n_pets"] == 240, pet
    assert 0.0 < metrics[PET_THRESHOLD] == pet["threshold"] < 0.5
    assert pet["keep"] >= 0.98 and pet["reject"] >= 0.9, pet  # nested CV on 240 + 60 photos
    rows = (subset_run / "pet_predictions.csv").read_text().splitlines()
    assert rows[0] == "file,kind,p_pet,kept,threshold" and len(rows) == 1 + 240 + 60


@needs_shared
def test_held_out_cats_and_dogs_are_kept_and_photos_with_neither_are_not(subset_run, held_out, held_out_not_pets):
    """The Keras model of the run on photos nothing trained on: 80 cats and dogs, 33 COCO photos."""
    from catdog.data import scan
    from catdog.training import load_run
    from catdog.training.inference import predict_images

    run = load_run(subset_run)
    threshold = run.pet_threshold
    pets = predict_images(run.model, scan(held_out)[0], progress=False)
    others = predict_images(run.model, scan(held_out_not_pets)[0], progress=False)
    kept = np.mean(pets.pet >= threshold)
    rejected = np.mean(others.pet < threshold)
    assert kept >= 0.97 and rejected >= 0.85, (kept, rejected, sorted(others.pet.round(3)))
    # the probabilities are those of the cat/dog head as before; pet is a probability
    assert np.allclose(pets.probabilities.sum(1), 1, atol=1e-5) and ((pets.pet >= 0) & (pets.pet <= 1)).all()


@needs_shared
def test_the_detector_learns_grayscale_cats_and_dogs_from_the_gray_view(subset_run, held_out, held_out_not_pets, tmp_path):
    """Trained on plain photos alone, the detector called 6.7 % of grayscale cats and dogs neither
    (README); it also learns from the gray view of the run's shifted photos. On held-out photos in
    grayscale it is surer of a pet than a detector fitted on the same photos without the view, and
    it still rejects held-out photos with neither, in grayscale too."""
    from catdog.contract import RunDir
    from catdog.data import scan
    from catdog.features import extract_features, load_features, view_path
    from catdog.training.pet import imagenet_top
    from catdog.training.train import train_pet

    pet = json.loads((subset_run / RunDir.METRICS).read_text())[PET]
    assert pet["views"]["gray"]["n_photos"] == 120 and pet["views"]["gray"]["keep"] >= 0.9, pet
    assert "gray view of 120" in pet["method"]
    photos, negatives = load_features(subset_run / RunDir.FEATURES), load_features(subset_run / RunDir.NEGATIVES)
    gray = load_features(view_path(subset_run / RunDir.FEATURES, "gray"))
    top, note = imagenet_top(photos.backbone, photos.weights)
    rows = np.arange(len(photos.names))
    with_view = train_pet(photos, rows, negatives, top, note, 0, {"gray": gray, "mirror": gray})  # only PET_VIEWS count
    without = train_pet(photos, rows, negatives, top, note, 0)
    assert list(with_view.estimate["views"]) == ["gray"] and without.estimate["views"] == {}
    held = {}
    for name, folder in (("pets", held_out), ("others", held_out_not_pets)):
        extract_features(scan(folder)[0], tmp_path / f"{name}.h5", photos.backbone, image_size=int(photos.attrs["image_size"]),
                         view="gray", progress=False)
        held[name] = load_features(tmp_path / f"{name}.h5").features
    def margin(fit):  # mean log-odds of a pet above the detector's own threshold
        p, t = fit.pet(held["pets"]), fit.threshold
        return float(np.mean(np.log(p / (1 - p)) - np.log(t / (1 - t))))

    assert margin(with_view) > margin(without), (margin(with_view), margin(without))
    assert np.mean(with_view.pet(held["pets"]) >= with_view.threshold) >= np.mean(without.pet(held["pets"]) >= without.threshold)
    assert np.mean(with_view.pet(held["others"]) < with_view.threshold) >= 0.85, sorted(with_view.pet(held["others"]).round(3))


@needs_shared
def test_every_artefact_gives_the_keras_verdict_on_photos_with_and_without_pets(subset_artefacts, subset_run, held_out_not_pets):
    """Every format x precision carries `pet`; on photos with neither and with pets, its verdicts
    are Keras' (parity's rule: 99.5 %), and manifest.json describes the output and the threshold."""
    from catdog.data import scan
    from catdog.export import load_calibration
    from catdog.runtime import open_model

    manifest = json.loads((subset_artefacts / "manifest.json").read_text())
    threshold = manifest[PET_THRESHOLD]
    assert threshold == json.loads((subset_run / "metrics.json").read_text())[PET_THRESHOLD]
    assert [o["name"] for o in manifest["outputs"]] == ["probabilities", "cam", "pet"]
    photos = scan(held_out_not_pets)[0] + scan(copy_photos(held_out_not_pets.parent / "pets", kaggle_names("dog", HELD_OUT)[:10]))[0]
    images = load_calibration(photos, 224, n=len(photos))
    keras_out = open_model(subset_run).run(images)
    expected = _verdicts(keras_out, threshold)
    assert expected.count(NEITHER) >= 25, expected
    for art in manifest["artefacts"]:
        out = open_model(subset_artefacts / art["file"]).run(images)
        assert out[PET].shape == (len(images), 1), art["file"]
        said = _verdicts(out, threshold)
        agree = np.mean([a == b for a, b in zip(said, expected)])
        assert agree >= 0.97, (art["file"], agree)  # 43 photos: at most one flip
        if art["precision"] != "int8":
            tol = 1e-4 if art["precision"] == "fp32" else 5e-3
            assert np.abs(out[PET] - keras_out[PET]).max() <= tol, art["file"]
    # parity itself measures pet and counts verdict flips on the same photos with neither
    from catdog.parity import run_parity

    report = run_parity(subset_artefacts, held_out_not_pets, edge=False)
    assert report["passed"], [r["failed"] for r in report["artefacts"] if not r["passed"]]
    for row in report["artefacts"]:
        assert row["verdict_agreement"] >= 0.995, (row["file"], row["verdict_flipped_images"])
        assert "pet_max_abs" in row


@needs_shared
def test_mobilenet_v1_without_an_imagenet_top_still_answers_neither(tmp_path, negatives, held_out, held_out_not_pets):
    """MobileNet V1 has no ImageNet top offline: the detector alone, fitted on the negatives,
    decides; without negatives there is nothing to decide by, and the run says so (threshold 0:
    never "neither") instead of inventing one."""
    from catdog.cli import main
    from catdog.data import scan
    from catdog.features import load_features
    from catdog.training import load_run
    from catdog.training.inference import predict_images
    from catdog.training.pet import fit_pet

    photos = copy_photos(tmp_path / "photos", kaggle_names("cat", range(30)) + kaggle_names("dog", range(30)))
    run_dir = tmp_path / "v1"
    args = ["run", "--views", "none", "--shift-photos", "0", str(photos), "--backbone", "mobilenet", "--negatives", str(negatives), "--out", str(run_dir), "--no-export", "--cv", "2"]
    assert main(args) == 0
    metrics = json.loads((run_dir / "metrics.json").read_text())
    assert metrics[PET]["imagenet_top"] is None and 0 < metrics[PET_THRESHOLD] < 1, metrics[PET]
    run = load_run(run_dir)
    others = predict_images(run.model, scan(held_out_not_pets)[0], progress=False)
    pets = predict_images(run.model, scan(held_out)[0], progress=False)
    assert np.mean(others.pet < run.pet_threshold) >= 0.8 and np.mean(pets.pet >= run.pet_threshold) >= 0.9
    alone = fit_pet(load_features(run_dir / "features.h5").features, None, None)
    assert alone.threshold == 0.0 and "none" in alone.estimate["method"] and (alone.pet(np.zeros((1, 1024))) > 0.99).all()


@needs_shared
def test_run_says_unusable_negatives_before_any_extraction(tmp_path, capsys):
    """`catdog run --negatives` with too few photos, or with DATA itself, said so after the features
    and every view were extracted (about 2 minutes on make run's photos): now before any."""
    from catdog.cli import main

    data = copy_photos(tmp_path / "data", kaggle_names("cat", range(8)) + kaggle_names("dog", range(8)))
    three = copy_photos(tmp_path / "three", not_pets()[:3], src=NOT_PETS)
    for negatives, words in ((three, "--negatives: 3 usable photos with neither cat nor dog in"),
                             (data, "--negatives: 16 of its 16 photos are training photos themselves")):
        assert main(["run", str(data), "--negatives", str(negatives), "--out", str(tmp_path / "run"), "--cv", "2"]) == 2
        err = capsys.readouterr().err
        assert err.startswith(f"catdog: error: {words}") and err.count("\n") == 1, err
        assert not (tmp_path / "run" / "features.h5").exists()


@needs_shared
def test_too_few_negatives_is_one_line_naming_the_flag(subset_run, tmp_path, capsys):
    """Six photos with neither cannot feed the detector's nested CV: the error names --negatives, the
    folder, the count and the least that works (7: the inner folds of 5 need 5 negatives each), not
    the head's --cv; with 7 the detector fits."""
    from catdog.cli import main
    from catdog.features import load_features
    from catdog.training.pet import MIN_NEGATIVES, fit_pet

    six = copy_photos(tmp_path / "six", not_pets()[:6], src=NOT_PETS)
    assert main(["features", str(six), "--out", str(tmp_path / "six.h5")]) == 0
    capsys.readouterr()
    args = ["train", str(subset_run / "features.h5"), "--negatives", str(tmp_path / "six.h5"), "--out", str(tmp_path / "run"), "--l2", "1e-2"]
    assert main(args) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith("catdog: error: --negatives: 6 usable photos with neither cat nor dog in "), err
    assert str(six) in err and f"needs at least {MIN_NEGATIVES}" in err and "--cv" not in err
    assert not (tmp_path / "run" / "model.keras").exists()
    pets = load_features(subset_run / "features.h5").features
    negatives = load_features(subset_run / "negatives.h5").features
    fit = fit_pet(pets, negatives[:MIN_NEGATIVES], None)
    assert fit.estimate["n_negatives"] == MIN_NEGATIVES == 7


@needs_shared
def test_the_head_takes_the_imagenet_dog_vs_cat_log_odds(subset_run):
    """MobileNetV2 has an ImageNet top: the head's last feature is the top's dog-vs-cat log-odds,
    which the pet head computes inside the model from its pet-class logits (the same value
    `ImagenetTop.dog_log_odds` gives on the cached features), and the fit leans on it."""
    from catdog.contract import HEAD_FEATURES
    from catdog.features import load_features
    from catdog.training import load_run
    from catdog.training.pet import DOG_LOG_ODDS, imagenet_top

    model = load_run(subset_run).model
    assert HEAD_FEATURES in {layer.name for layer in model.layers}
    metrics = json.loads((subset_run / "metrics.json").read_text())
    assert metrics["head"]["dog_prior"].startswith("ImageNet top of mobilenet_v2"), metrics["head"]
    fs = load_features(subset_run / "features.h5")
    features = fs.features[:: max(1, len(fs.names) // 40)]
    top, _ = imagenet_top("mobilenet_v2", "imagenet")
    expected = top.dog_log_odds(features)
    inside = np.asarray(model.get_layer("pet_head")(features)[DOG_LOG_ODDS])[:, 0]
    assert np.abs(inside - expected).max() <= 1e-3 * max(1.0, np.abs(expected).max())
    assert np.mean((expected > 0) == fs.labels[:: max(1, len(fs.names) // 40)]) > 0.6  # it says something about dogs
    kernel, _ = model.get_layer("probabilities").get_weights()
    assert kernel.shape == (features.shape[1] + 1, 2)
    assert kernel[-1, 1] - kernel[-1, 0] > 0.05  # the fitted weight on the prior: dog evidence raises P(dog)
