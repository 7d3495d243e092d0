"""Fine-tuning keeps a valid RUN_DIR (CAM identity, export) and test-time augmentation averages
each photo with its mirror image."""

from __future__ import annotations

import json

import keras
import numpy as np
import pytest

from catdog.cam import cam_model, probabilities_from_cam
from catdog.data import decode
from catdog.errors import CatdogError
from catdog.training import load_run, predict_images
from catdog.training.finetune import FinetuneConfig, finetune, set_trainable, top_blocks
from conftest import REFERENCE, needs_shared


@needs_shared
def test_only_top_blocks_and_head_are_trainable(subset_run):
    model = keras.models.load_model(subset_run / "model.keras")
    set_trainable(model, ["Conv_1", "block_16"])
    paths = [w.path for w in model.trainable_weights]
    assert paths and all(("Conv_1" in p or "block_16" in p or "probabilities" in p) for p in paths)
    assert any("probabilities" in p for p in paths) and any("block_16" in p for p in paths)
    assert not any("_bn" in p or "BN" in p for p in paths)  # BatchNorm stays frozen


@needs_shared
def test_finetune_writes_a_valid_run(subset_run, train_subset, tmp_path, capsys):
    run = load_run(subset_run)
    out = tmp_path / "ft"
    metrics = finetune(run, train_subset, out, FinetuneConfig(blocks=2, max_epochs=1, batch_size=32), progress=False)
    assert metrics["finetune"]["blocks_trained"] == ["Conv_1", "block_16"]
    assert metrics["n_val"] == 48 and metrics["val"]["n"] == 48 and metrics["epochs"] == 1
    # the epoch is chosen by the validation log loss, not Keras' val_loss (log loss + the head's L2 penalty)
    history = json.loads((out / "history.json").read_text())
    assert "val_log_loss" in history and metrics["best_epoch"] in (0, int(np.argmin(history["val_log_loss"])) + 1)
    # never worse than the starting model on the validation split
    assert metrics["val"]["log_loss"] <= metrics["val_before"]["log_loss"] + 1e-9
    tuned = load_run(out)
    before = {w.path: w.numpy() for w in run.model.weights}
    after = {w.path: w.numpy() for w in tuned.model.weights}
    changed = {p for p in before if not np.array_equal(before[p], after[p])}
    if metrics["improved"]:
        assert changed and all(("Conv_1" in p or "block_16" in p or "probabilities" in p) for p in changed)
    else:
        assert not changed
    photos = sorted(REFERENCE.glob("*.jpg"))[:4]
    out_ = cam_model(tuned.model).predict_on_batch(np.stack([decode(p) for p in photos]).astype(np.float32))
    bias = tuned.model.get_layer("probabilities").get_weights()[1]
    assert np.allclose(probabilities_from_cam(np.asarray(out_["cam"]), bias), np.asarray(out_["probabilities"]), atol=1e-5)
    # split.json is the split it used (the source run held none out): the report reads it
    used, source = json.loads((out / "split.json").read_text()), json.loads((subset_run / "split.json").read_text())
    assert len(used["validation"]) == 48 and not set(used["train"]) & set(used["validation"])
    assert sorted(used["train"] + used["validation"]) == sorted(source["train"] + source.get("validation", []))
    assert {k: v for k, v in used.items() if k not in ("train", "validation")} == {
        k: v for k, v in source.items() if k not in ("train", "validation")}  # export's calibration photos, parity's
    assert {"parity", "calibration"} <= set(used)
    assert metrics["image_size"] == run.metrics["image_size"]
    # the early-stopping split chose the epoch: its temperature is reported, not applied
    assert metrics["calibration"]["temperature"] == 1.0 == tuned.temperature
    assert 0.05 <= metrics["calibration"]["fitted_temperature"] <= 20
    assert 0.0 <= metrics["pet_keep_validation"] <= 1.0 and metrics["pet_threshold"] == run.metrics["pet_threshold"]
    # its report says what it is: the size, the split it held out, a temperature not applied, the source's pet head
    from catdog.report import write_report

    write_report(out)
    html = (out / "report.html").read_text()
    assert f"<title>catdog finetune {out.name}: " in html  # not "catdog run"
    assert f"at {run.metrics['image_size']} px" in html and "48 early-stopping photos (held out of fine-tuning; the starting model" in html
    # the split is not held out of the starting model: not called held out, nor an estimate for new photos
    assert "held-out validation photos" not in html and "of which early-stopping split (not held out)" in html
    assert "early-stopping split of 48 photos, which the starting model was trained on: in-sample" in html
    assert "the early-stopping validation split (it chose the epoch): the temperature fitted there is not applied" in html
    assert "Fine-tuning does not retrain the pet head" in html and f"it keeps {metrics['pet_keep_validation']:.1%}" in html
    # --out the run itself: refused before any work (it would overwrite the model it starts from)
    with pytest.raises(CatdogError, match="the run being fine-tuned; give --out a new RUN_DIR"):
        finetune(run, train_subset, subset_run / ".", FinetuneConfig(max_epochs=1), progress=False)
    # evaluate on photos the starting model trained on (the early-stopping split among them) says so
    from catdog.cli import main
    from conftest import copy_photos

    data = copy_photos(tmp_path / "seen", used["validation"][:3] + used["train"][:1], src=train_subset)
    assert main(["evaluate", str(out), str(data)]) == 0
    assert "note: 4 of these 4 photos trained this model" in capsys.readouterr().out
    # --out another run: its head.keras and cv_predictions.csv were left beside the new model
    import shutil

    other = tmp_path / "other"
    shutil.copytree(subset_run, other, ignore=shutil.ignore_patterns("features.h5", "negatives.h5", "views", "cache"))
    with pytest.raises(CatdogError, match=r"other: holds another run already \(head.keras, cv_predictions.csv\); give --out a new folder"):
        finetune(run, train_subset, other, FinetuneConfig(max_epochs=1), progress=False)


def test_top_blocks_of_both_backbones():
    mnv2 = keras.applications.MobileNetV2(include_top=False, weights=None, input_shape=(224, 224, 3))
    assert top_blocks(mnv2, 3) == ["Conv_1", "block_16", "block_15"]
    r50 = keras.applications.ResNet50(include_top=False, weights=None, input_shape=(224, 224, 3))
    assert top_blocks(r50, 2) == ["conv5_block3", "conv5_block2"]


@needs_shared
def test_tta_is_the_mean_over_the_mirror_image(subset_run):
    run = load_run(subset_run)
    from catdog.data import Sample

    # reference photos fit neither naming layout, so build the samples directly
    samples = [Sample(p, p.name, p.stem, None) for p in sorted(REFERENCE.glob("*.jpg"))[:6]]
    plain = predict_images(run.model, samples, progress=False).probabilities
    tta = predict_images(run.model, samples, progress=False, tta=True).probabilities
    x = np.stack([decode(s.path) for s in samples]).astype(np.float32)
    mirrored = run.model.predict_on_batch(x[:, :, ::-1])["probabilities"]
    assert np.allclose(tta, (plain + mirrored) / 2, atol=1e-6) and not np.allclose(tta, plain, atol=1e-4)


@needs_shared
def test_temperature_folded_into_the_export(subset_run, tmp_path):
    import shutil

    from catdog.cli import main
    from catdog.training import metrics as M
    from catdog.runtime import open_model

    run_dir = tmp_path / "run"
    shutil.copytree(subset_run, run_dir, ignore=shutil.ignore_patterns("features.h5"))
    metrics = json.loads((run_dir / "metrics.json").read_text())
    metrics["calibration"]["temperature"] = 2.0  # a strong temperature makes the check sharp
    (run_dir / "metrics.json").write_text(json.dumps(metrics))
    art = tmp_path / "art"
    assert main(["export", str(run_dir), "--formats", "onnx", "--precision", "fp32", "--calibrated", "--out", str(art)]) == 0
    assert json.loads((art / "manifest.json").read_text())["temperature"] == 2.0
    photos = sorted(REFERENCE.glob("*.jpg"))[:6]
    x = np.stack([decode(p) for p in photos]).astype(np.float32)
    plain = load_run(run_dir).model.predict_on_batch(x)["probabilities"]
    exported = open_model(art / "catdog_mobilenet_v2_fp32.onnx").run(x)["probabilities"]
    assert np.allclose(exported[:, 1], M.apply_temperature(plain, 2.0), atol=1e-5)
    assert main(["parity", str(art), "--images", str(REFERENCE), "--no-edge"]) == 0  # parity compares calibrated to calibrated


@needs_shared
def test_a_photo_finetune_cannot_use_is_not_counted(subset_run, train_subset, tmp_path, capsys):
    """A training photo damaged since the run: finetune named it and trained without it, but its
    split.json still listed it and the report counted it as used, none rejected."""
    import shutil

    data = tmp_path / "data"
    shutil.copytree(train_subset, data)
    damaged = json.loads((subset_run / "split.json").read_text())["train"][0]
    (data / damaged).write_bytes((data / damaged).read_bytes()[:200])
    out = tmp_path / "ft"
    metrics = finetune(load_run(subset_run), data, out, FinetuneConfig(blocks=1, max_epochs=1, batch_size=32), progress=False)
    assert f"skipped {data / damaged}" in capsys.readouterr().out
    used = json.loads((out / "split.json").read_text())
    assert damaged not in used["train"] + used["validation"]
    assert len(used["train"]) == metrics["n_train"] and len(used["validation"]) == metrics["n_val"]
    assert damaged in (out / "rejected.csv").read_text()
    from catdog.report import write_report

    write_report(out)
    html = (out / "report.html").read_text()
    assert f'photos used</td><td class="num">{metrics["n_train"] + metrics["n_val"]}<' in html
    assert 'rejected (unreadable, wrong type, too large…)</td><td class="num">1<' in html
