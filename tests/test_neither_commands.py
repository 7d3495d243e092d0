"""The neither answer in `catdog predict` (pet and verdict columns) and `catdog evaluate --negatives`
(keep and reject rates), on real photos nothing trained on: Kaggle test and held-out photos, and
the held-out COCO photos with no cat or dog. Each figure is checked against the run's model run
through `catdog.runtime` and `catdog.contract.verdict`, not against the code under test."""

from __future__ import annotations

import csv
import json
import re

import numpy as np
import pytest

from catdog.contract import LABELS, NEITHER, PET, PROBABILITIES, verdict
from conftest import NOT_PETS, REFERENCE, TEST, copy_photos, needs_shared, not_pets

pytestmark = needs_shared


@pytest.fixture(scope="module")
def held_out_not_pets(tmp_path_factory):
    if not NOT_PETS.is_dir():
        pytest.skip(f"photos with no cat or dog not found at {NOT_PETS}")
    return copy_photos(tmp_path_factory.mktemp("held_out_not_pets"), not_pets(held_out=True), src=NOT_PETS)


def _answers(run_dir, paths) -> tuple[np.ndarray, np.ndarray, list[str]]:
    """(probabilities, P(pet), verdicts) of the photos by the RUN_DIR's model through catdog.runtime."""
    from catdog.data import decode
    from catdog.runtime import open_model
    from catdog.training import load_run

    threshold = load_run(run_dir).pet_threshold
    out = open_model(run_dir, temperature=1.0).run(np.stack([decode(p) for p in paths]).astype(np.float32))
    pets = out[PET][:, 0]
    return out[PROBABILITIES], pets, [verdict(p, q, threshold, LABELS) for p, q in zip(out[PROBABILITIES], pets)]


def test_predict_adds_pet_and_verdict_after_kaggles_columns(subset_run, tmp_path):
    from catdog.cli import main

    not_pet = "000000003255.jpg"  # held out (skiers on a snowfield); the lowest P(pet) of them under a small run
    assert not_pet in not_pets(held_out=True)
    test_dir = copy_photos(tmp_path / "test", [f"{n}.jpg" for n in (1, 2, 3, 10)], src=TEST)
    copy_photos(test_dir, [not_pet], src=NOT_PETS)
    out = tmp_path / "submission.csv"
    assert main(["predict", str(subset_run), str(test_dir), "--out", str(out)]) == 0
    with open(out, newline="") as f:
        header = next(csv.reader(f))
        f.seek(0)
        rows = list(csv.DictReader(f))
    assert header == ["id", "label", "pet", "verdict"]
    ids = ["1", "2", "3", "10", not_pet.removesuffix(".jpg")]
    assert [r["id"] for r in rows] == ids  # numeric order as before
    probabilities, pets, verdicts = _answers(subset_run, [test_dir / f"{i}.jpg" for i in ids])
    label = np.array([float(r["label"]) for r in rows])
    assert np.allclose(label, np.clip(probabilities[:, 1], 0.005, 0.995), atol=2e-6)  # P(dog), clipped as before
    assert np.allclose([float(r["pet"]) for r in rows], pets, atol=2e-6)  # P(pet), not clipped
    assert [r["verdict"] for r in rows] == verdicts
    assert NEITHER not in verdicts[:4], verdicts  # Kaggle's test photos are cats and dogs
    assert verdicts[4] == NEITHER, (not_pet, pets[4])


def test_evaluate_prints_and_writes_keep_and_reject_rates(subset_run, held_out, held_out_not_pets, tmp_path, capsys):
    from catdog.cli import main

    negatives = copy_photos(tmp_path / "negatives", sorted(p.name for p in held_out_not_pets.glob("*.jpg")), src=held_out_not_pets)
    (negatives / "999.jpg").write_bytes(b"")  # an unusable file: listed, not counted
    out = tmp_path / "eval.json"
    args = ["evaluate", str(subset_run), str(held_out), "--negatives", str(negatives), "--json", str(out)]
    assert main(args) == 0
    printed = capsys.readouterr().out
    result = json.loads(out.read_text())
    assert result["n"] == 80 and result["accuracy"] >= 0.9  # today's scores, unchanged

    pet = result["pet"]
    _, _, pet_verdicts = _answers(subset_run, sorted(held_out.glob("*.jpg")))
    _, _, other_verdicts = _answers(subset_run, sorted(negatives.glob("0*.jpg")))
    kept = sum(v != NEITHER for v in pet_verdicts)
    rejected = sum(v == NEITHER for v in other_verdicts)
    assert (pet["n_pets"], pet["n_kept"]) == (80, kept) and pet["keep"] == pytest.approx(kept / 80)
    assert (pet["n_negatives"], pet["n_rejected"]) == (33, rejected) and pet["reject"] == pytest.approx(rejected / 33)
    assert pet["keep"] >= 0.95 and pet["reject"] >= 0.85, pet
    assert f"keeps {pet['keep']:.2%} of the 80 cats and dogs" in printed
    assert f"rejects {pet['reject']:.2%} of the 33 photos with neither in {negatives}" in printed
    assert "999.jpg" in (tmp_path / "eval.rejected_negatives.csv").read_text()
    assert "n_trained_on" not in pet and "trained the neither answer" not in printed  # held out of the detector

    # without --negatives: the keep rate alone
    assert main(["evaluate", str(subset_run), str(held_out), "--json", str(out)]) == 0
    assert "rejects" not in capsys.readouterr().out and "reject" not in json.loads(out.read_text())["pet"]
    assert "n_trained_on" not in json.loads(out.read_text())  # held out: no note


def test_evaluate_says_when_it_scores_the_training_photos(subset_run, train_subset, negatives, tmp_path, capsys):
    """Scored on the photos the run trained on (copies: other mtimes), evaluate printed 100 % with no
    word that the score is in-sample; the same for --negatives that trained the neither answer; with
    every labelled photo unusable it said to name them cat.N.jpg; without --json it listed its
    rejections nowhere and did not count them."""
    from catdog.cli import main

    trained = json.loads((subset_run / "split.json").read_text())["train"][:6]
    data = copy_photos(tmp_path / "data", trained, src=train_subset)
    (data / "cat.99999.jpg").write_bytes(b"not a photo")
    seen = copy_photos(tmp_path / "seen", not_pets()[:5], src=negatives)  # copies: other mtimes
    other = NOT_PETS / not_pets(held_out=True)[0]
    (seen / not_pets()[5]).write_bytes(other.read_bytes())  # a trained name, another photo: not counted
    out = tmp_path / "e.json"
    assert main(["evaluate", str(subset_run), str(data), "--json", str(out), "--negatives", str(seen)]) == 0
    printed = capsys.readouterr().out
    assert "note: 6 of these 6 photos trained this model (split.json): these scores are optimistic" in printed
    assert json.loads(out.read_text())["n_trained_on"] == 6
    assert "note: 5 of these 6 photos with neither trained the neither answer (pet_predictions.csv)" in printed
    assert json.loads(out.read_text())["pet"]["n_trained_on"] == 5
    # a run `catdog train` made from a feature file elsewhere (metrics.json names it): said too (it was not)
    assert main(["train", str(subset_run / "features.h5"), "--out", str(tmp_path / "trained")]) == 0
    capsys.readouterr()
    assert main(["evaluate", str(tmp_path / "trained"), str(data)]) == 0
    assert "note: 6 of these 6 photos trained this model (split.json)" in capsys.readouterr().out
    assert main(["evaluate", str(subset_run), str(data)]) == 0
    assert "1 file(s) rejected (named above; --rejected FILE lists them)" in capsys.readouterr().out
    broken = tmp_path / "broken"
    broken.mkdir()
    (broken / "cat.1.jpg").write_bytes(b"not a photo")
    (broken / "1.jpg").write_bytes((TEST / "1.jpg").read_bytes())
    assert main(["evaluate", str(subset_run), str(broken)]) == 2
    assert f"{broken}: none of its labelled photos could be used" in capsys.readouterr().err
    # --negatives: a missing folder is said before DATA is scored, in its own words; a folder of
    # named cats and dogs is not taken silently as photos with neither
    assert main(["evaluate", str(subset_run), str(data), "--negatives", str(tmp_path / "nope")]) == 2
    captured = capsys.readouterr()
    assert captured.err.startswith(f"catdog: error: --negatives: {tmp_path / 'nope'}: no such folder; give a folder of photos with no cat or dog")
    assert "photos" not in captured.out  # nothing scored first
    assert main(["evaluate", str(subset_run), str(data), "--negatives", str(data)]) == 0
    assert f"note: 7 file(s) in --negatives {data} are named as cats or dogs" in capsys.readouterr().out


def test_cam_says_neither_where_the_run_does(subset_run, subset_artefacts, tmp_path, capsys):
    """`catdog cam` once printed "dog 92.5%" for a vase of flowers: each line now gives the run's
    verdict, from a RUN_DIR (metrics.json's threshold) and from an artefact (its manifest's)."""
    from catdog.cli import main
    from catdog.contract import pet_threshold

    not_pet = "000000003255.jpg"  # held out, as in the predict test above
    photos = [TEST / "1.jpg", TEST / "2.jpg", NOT_PETS / not_pet]
    _, pets, verdicts = _answers(subset_run, photos)
    assert verdicts[2] == NEITHER and NEITHER not in verdicts[:2], (verdicts, pets)
    tflite = next(subset_artefacts.glob("*_fp32.tflite"))
    assert pet_threshold(tflite) == pet_threshold(subset_artefacts) == pet_threshold(subset_run)
    for model in (subset_run, tflite):
        assert main(["cam", str(model), *map(str, photos), "--out", str(tmp_path / model.name)]) == 0
        lines = {line.split(": ", 1)[0]: line for line in capsys.readouterr().out.splitlines() if " -> " in line}
        for path, answer, pet in zip(photos, verdicts, pets):
            said = lines[str(path)].split(": ", 1)[1]
            assert said.startswith(f"{answer} "), (model, said)
            if answer == NEITHER:
                assert f"P(cat or dog) {pet:.1%}" in said or model == tflite, said
    alone = tmp_path / "alone.tflite"  # an artefact away from its manifest: no threshold, no answer
    alone.write_bytes(tflite.read_bytes())
    assert main(["cam", str(alone), str(photos[0]), "--out", str(tmp_path / "alone")]) == 2
    assert "manifest.json: missing, so the threshold of the neither answer is unknown" in capsys.readouterr().err


def test_pet_threshold_is_found_where_each_model_keeps_it(tmp_path):
    from catdog.contract import pet_threshold
    from catdog.errors import CatdogError

    run = tmp_path / "run"
    run.mkdir()
    (run / "model.keras").write_bytes(b"")
    (run / "metrics.json").write_text(json.dumps({"pet_threshold": 0.8}))
    art = tmp_path / "art"
    (art / "m.mlpackage").mkdir(parents=True)  # a package is a folder: its manifest is its parent's
    (art / "m.onnx").write_bytes(b"")
    (art / "manifest.json").write_text(json.dumps({"pet_threshold": 0.7, "artefacts": []}))
    assert pet_threshold(run) == 0.8
    (art / "uniform").mkdir()
    (art / "uniform" / "m.onnx").write_bytes(b"")  # a uniform/ twin: its ART_DIR's manifest (it looked in uniform/)
    assert pet_threshold(art) == pet_threshold(art / "m.onnx") == pet_threshold(art / "m.mlpackage") == pet_threshold(art / "uniform" / "m.onnx") == 0.7
    bad = [(json.dumps({"pet_threshold": True}), "pet_threshold True is not a number"), ("{", "unreadable"), ("[]", "no pet_threshold"),
           (json.dumps({"pet_threshold": "abc"}), "pet_threshold 'abc' is not a number")]  # it said "no pet_threshold"
    # out of 0..1 (NaN: nothing would ever be neither; 5: everything would), as the apps' cores refuse it
    bad += [(f'{{"pet_threshold": {v}}}', rf"pet_threshold {e} is not a probability within 0\.\.1") for v, e in
            (("NaN", "nan"), ("Infinity", "inf"), ("5", "5"), ("-0.1", "-0.1"))]
    for doc, expected in bad:
        (run / "metrics.json").write_text(doc)
        with pytest.raises(CatdogError, match=f"metrics.json: {expected}.*train the run again"):
            pet_threshold(run)
    (art / "manifest.json").unlink()
    with pytest.raises(CatdogError, match="manifest.json: missing.*run `catdog export` again"):
        pet_threshold(art / "m.onnx")


def test_evaluate_and_predict_run_an_artefact_as_the_phone_does(subset_run, subset_artefacts, held_out, held_out_not_pets, tmp_path, capsys):
    """`catdog evaluate` and `predict` take an exported artefact in place of a RUN_DIR: its scores,
    neither answers and submission are the artefact's own numbers (catdog.runtime on each photo)
    with the threshold of its manifest, so an int8 model is measured as a phone runs it."""
    from catdog.cli import main
    from catdog.contract import pet_threshold
    from catdog.data import decode
    from catdog.runtime import open_model
    from catdog.training.metrics import log_loss

    int8 = next(subset_artefacts.glob("*_int8.tflite"))
    threshold = pet_threshold(int8)

    def answers(model_path, paths):
        out = open_model(model_path).run(np.stack([decode(p) for p in paths]).astype(np.float32))
        return out[PROBABILITIES], [verdict(p, q, threshold, LABELS) for p, q in zip(out[PROBABILITIES], out[PET][:, 0])]

    pets = sorted(held_out.glob("*.jpg"))
    negatives = sorted(held_out_not_pets.glob("*.jpg"))
    out = tmp_path / "eval.json"
    assert main(["evaluate", str(int8), str(held_out), "--negatives", str(held_out_not_pets), "--json", str(out)]) == 0
    printed = capsys.readouterr().out
    result = json.loads(out.read_text())
    probabilities, pet_verdicts = answers(int8, pets)
    labels = np.array([p.name.startswith("dog.") for p in pets], float)
    assert result["n"] == len(pets) == 80 and result["engine"] == "LiteRT"
    assert result["log_loss"] == pytest.approx(log_loss(labels, probabilities[:, 1]), abs=1e-6)
    assert result["accuracy"] == pytest.approx(np.mean((probabilities[:, 1] >= 0.5) == (labels == 1)))
    _, other_verdicts = answers(int8, negatives)
    assert result["pet"]["threshold"] == threshold
    assert result["pet"]["n_kept"] == sum(v != NEITHER for v in pet_verdicts)
    assert result["pet"]["n_rejected"] == sum(v == NEITHER for v in other_verdicts)
    assert printed.startswith(f"{int8}, run by LiteRT\n")

    # predict with the Core ML package (catdog's ML Program interpreter where Core ML does not run)
    coreml = next(subset_artefacts.glob("*_fp16.mlpackage"))
    test_dir = copy_photos(tmp_path / "test", [f"{n}.jpg" for n in (1, 2, 3)], src=TEST)
    copy_photos(test_dir, ["000000003255.jpg"], src=NOT_PETS)
    submission = tmp_path / "submission.csv"
    assert main(["predict", str(coreml), str(test_dir), "--out", str(submission), "--no-clip"]) == 0
    assert f"{coreml}, run by " in capsys.readouterr().out  # said by evaluate only, though the README promised it for both
    with open(submission, newline="") as f:
        rows = list(csv.DictReader(f))
    ids = ["1", "2", "3", "000000003255"]
    probabilities, verdicts = answers(coreml, [test_dir / f"{i}.jpg" for i in ids])
    assert [r["id"] for r in rows] == ids
    assert np.allclose([float(r["label"]) for r in rows], probabilities[:, 1], atol=2e-6)
    assert [r["verdict"] for r in rows] == verdicts and verdicts[3] == NEITHER

    # what an artefact cannot do is one line, before any photo is run
    capsys.readouterr()
    assert main(["predict", str(int8), str(test_dir), "--out", str(tmp_path / "t.csv"), "--calibrated"]) == 2
    assert capsys.readouterr().err.strip() == (
        f"catdog: error: {int8}: an artefact gives the probabilities its export made (`catdog export --calibrated` "
        "folds the temperature in); drop --calibrated, or pass the RUN_DIR"
    )
    assert not (tmp_path / "t.csv").exists()
    # a wrong --clip was said only after every photo was predicted: now before the model is loaded
    assert main(["predict", str(tmp_path / "no_such_run"), str(test_dir), "--out", str(tmp_path / "t.csv"), "--clip", "0.9", "0.1"]) == 2
    assert capsys.readouterr().err.strip() == "catdog: error: --clip 0.9 0.1: need 0 <= LOW < HIGH <= 1 (e.g. 0.005 0.995)"
    assert not (tmp_path / "t.csv").exists()

    # an ART_DIR where a RUN_DIR belongs ("model.keras: missing ... run `catdog train` again" before):
    # the RUN_DIR its manifest names, and an artefact where the command takes one
    art_dir, fp32 = subset_artefacts, next(subset_artefacts.glob("*_fp32.onnx"))  # the one `catdog serve ART_DIR` serves
    cases = {
        ("evaluate", str(art_dir), str(held_out)): f"give the RUN_DIR it was exported from ({subset_run}), or, to evaluate, "
                                                    f"predict or cam, one of its artefacts ({fp32})",
        ("export", str(art_dir), "--out", str(tmp_path / "x")): f"give the RUN_DIR it was exported from ({subset_run}),",
        ("report", str(art_dir)): f"give the RUN_DIR it was exported from: catdog report {subset_run} --art {art_dir}",
    }
    for args, expected in cases.items():
        assert main(list(args)) == 2, args
        err = capsys.readouterr().err.strip()
        assert err.startswith(f"catdog: error: {art_dir}: an ART_DIR (it holds manifest.json), not a RUN_DIR; {expected}"), err
    assert not (tmp_path / "x").exists() and not (art_dir / "report.html").exists()
    # inspect --run (the runtime's own check: a RUN_DIR or an artefact) says it the same way
    assert main(["inspect", str(held_out), "--out", str(tmp_path / "i"), "--run", str(art_dir)]) == 2
    assert capsys.readouterr().err.strip() == (f"catdog: error: {art_dir}: an ART_DIR (it holds manifest.json), not a RUN_DIR or an "
                                               f"artefact; give the RUN_DIR it was exported from ({subset_run}) or one of its artefacts ({fp32})")


def test_any_folder_of_photos_is_predicted_scored_and_mapped(subset_run, subset_artefacts, held_out, held_out_not_pets, tmp_path, capsys):
    """Photos named as a phone or a camera names them, in subfolders and linked folders: `predict`
    (one row per id: a second 1.* is rejected, named), `evaluate --negatives` (photos with neither
    need no Kaggle name: every one was "name matches neither" before) and `cam` on class folders
    (it listed only the files directly in a folder: "no usable image"). Output into a RUN_DIR
    leaves the run's own rejected.csv as it was."""
    import os
    import shutil

    from catdog.cli import main

    fp32 = next(subset_artefacts.glob("*_fp32.tflite"))
    mine = tmp_path / "mine"
    (mine / "trip").mkdir(parents=True)
    shutil.copy(TEST / "1.jpg", mine / "IMG_0001.JPG")
    shutil.copy(TEST / "2.jpg", mine / "trip" / "beach.jpeg")
    shutil.copy(TEST / "3.jpg", mine / "1.jpeg")
    shutil.copy(TEST / "4.jpg", mine / "1.jpg")  # the same id as 1.jpeg
    (tmp_path / "library").mkdir()
    shutil.copy(NOT_PETS / "000000003255.jpg", tmp_path / "library" / "vase.jpg")
    os.symlink(tmp_path / "library", mine / "linked")
    run_like = tmp_path / "run_like"  # a RUN_DIR's files as predict finds them beside --out
    run_like.mkdir()
    (run_like / "model.keras").write_bytes(b"")
    (run_like / "rejected.csv").write_text("file,reason\ncat.99.jpg,kept by the run\n")
    assert main(["predict", str(fp32), str(mine), "--out", str(run_like / "sub.csv"), "--no-clip"]) == 0
    printed = capsys.readouterr().out
    with open(run_like / "sub.csv", newline="") as f:
        rows = {r["id"]: r["verdict"] for r in csv.DictReader(f)}
    assert list(rows) == ["1", "IMG_0001", "linked/vase", "trip/beach"], rows
    assert rows["linked/vase"] == NEITHER and NEITHER not in (rows["1"], rows["IMG_0001"], rows["trip/beach"])
    assert f"skipped {mine / '1.jpg'}: same id 1 as 1.jpeg; rename or move one of them" in printed  # natural order
    assert (run_like / "rejected.csv").read_text() == "file,reason\ncat.99.jpg,kept by the run\n"
    assert "1.jpg" in (run_like / "sub.rejected.csv").read_text()
    # one Kaggle name among them (the Kaggle layout): the others are still photos to predict (they
    # were turned away, "name matches neither" and "in a subfolder of a Kaggle-layout folder")
    shutil.copy(TEST / "5.jpg", mine / "cat.5.jpg")
    assert main(["predict", str(fp32), str(mine), "--out", str(tmp_path / "sub2.csv"), "--no-clip"]) == 0
    assert "name matches neither" not in capsys.readouterr().out
    with open(tmp_path / "sub2.csv", newline="") as f:
        assert {r["id"] for r in csv.DictReader(f)} >= {"IMG_0001", "cat.5", "linked/vase", "trip/beach"}

    negatives = tmp_path / "everyday"
    negatives.mkdir()
    for i, path in enumerate(sorted(held_out_not_pets.glob("*.jpg"))):
        shutil.copy(path, negatives / f"photo {i}.jpg")
    out = tmp_path / "eval.json"
    assert main(["evaluate", str(fp32), str(held_out), "--negatives", str(negatives), "--json", str(out)]) == 0
    named = json.loads(out.read_text())["pet"]
    assert main(["evaluate", str(fp32), str(held_out), "--negatives", str(held_out_not_pets), "--json", str(out)]) == 0
    assert named["n_negatives"] == 33 and named["n_rejected"] == json.loads(out.read_text())["pet"]["n_rejected"]
    capsys.readouterr()

    classes = tmp_path / "classes"
    for label, n in (("cat", 0), ("cat", 1), ("dog", 2)):
        (classes / label).mkdir(parents=True, exist_ok=True)
        shutil.copy(next(held_out.glob(f"{label}.*.jpg")) if n != 1 else sorted(held_out.glob("cat.*.jpg"))[1], classes / label / f"{n}.jpg")
    assert main(["cam", str(fp32), str(classes), "--out", str(tmp_path / "cams")]) == 0
    assert sorted(p.name for p in (tmp_path / "cams").glob("*_cam.png")) == ["0_cam.png", "1_cam.png", "2_cam.png"]
    assert (tmp_path / "cams" / "cam_grid.png").is_file()


def test_a_manifest_without_its_artefacts_list_is_one_line(tmp_path):
    """A hand-edited manifest without "artefacts" (or an entry without its file) was a KeyError in
    `catdog serve`: every reader of the manifest now gets one line."""
    from catdog.contract import load_manifest
    from catdog.errors import CatdogError
    from catdog.serve import load_predictor

    for manifest in ({"pet_threshold": 0.7}, {"pet_threshold": 0.7, "artefacts": [{"format": "onnx", "precision": "fp32"}]},
                     {"pet_threshold": 0.7, "artefacts": ["x.onnx"]}):
        (tmp_path / "manifest.json").write_text(json.dumps(manifest))
        expected = f"{tmp_path / 'manifest.json'}: not a catdog manifest (it needs a list of artefacts, each with its file, format, precision, sha256)"
        for read in (load_manifest, load_predictor):
            with pytest.raises(CatdogError, match=expected.replace("(", r"\(").replace(")", r"\)")):
                read(tmp_path)


@needs_shared
def test_parity_refuses_a_manifest_it_cannot_trust(subset_artefacts, tmp_path):
    """Parity PASSED an ART_DIR whose manifest listed no artefact (a Ctrl-C'd export writes its
    manifest first): "all" of none. A hand-edited precision ("FP32") or a missing keras_model were
    KeyErrors; an entry without its sha256 turned the tamper check off (a flipped byte
    passed parity and reached the apps). Each is one line now, before any work."""
    import shutil

    from catdog.contract import check_artefact
    from catdog.errors import CatdogError
    from catdog.parity import run_parity

    art = tmp_path / "art"
    shutil.copytree(subset_artefacts, art)
    good = json.loads((art / "manifest.json").read_text())
    fp32 = next(a for a in good["artefacts"] if a["file"].endswith("_fp32.tflite"))

    def edited(change) -> None:
        manifest = json.loads(json.dumps(good))
        change(manifest)
        (art / "manifest.json").write_text(json.dumps(manifest))

    cases = [
        (lambda m: m.update(artefacts=[]), "lists no artefact (an export interrupted before its first?); run `catdog export` again"),
        (lambda m: m["artefacts"][0].update(precision="FP32"), "precision 'FP32' is not one catdog writes"),
        (lambda m: m.pop("keras_model"), "no keras_model sha256 (the model the artefacts came from)"),
        (lambda m: m["artefacts"][0].pop("sha256"), "not a catdog manifest (it needs a list of artefacts, each with its file, format, precision, sha256)"),
    ]
    for change, said in cases:
        edited(change)
        with pytest.raises(CatdogError, match=re.escape(said)):
            run_parity(art, REFERENCE, edge=False)
    # the runtime's own check (predict, serve, the apps' add_model.sh): an entry without its sha256
    edited(lambda m: next(a for a in m["artefacts"] if a["file"] == fp32["file"]).pop("sha256"))
    with pytest.raises(CatdogError, match=re.escape("lists it without its sha256, so it cannot be checked")):
        check_artefact(art / fp32["file"])


def test_an_artefact_its_manifest_does_not_list_is_refused(subset_artefacts, tmp_path):
    """An earlier export's file left in the ART_DIR (another --formats, another model) was run with
    this manifest's threshold, as if current; now refused in one line, as a changed file is."""
    import shutil

    from catdog.errors import CatdogError
    from catdog.runtime import open_model

    fp32 = next(subset_artefacts.glob("*_fp32.tflite"))
    art = tmp_path / "art"
    art.mkdir()
    shutil.copy(subset_artefacts / "manifest.json", art)
    shutil.copy(fp32, art / fp32.name)
    shutil.copy(fp32, art / "catdog_earlier_fp32.tflite")
    assert open_model(art / fp32.name).image_size == 224
    with pytest.raises(CatdogError, match="catdog_earlier_fp32.tflite: the manifest.json beside it does not list it"):
        open_model(art / "catdog_earlier_fp32.tflite")
    alone = tmp_path / "alone.tflite"  # no manifest beside it: the callers that need a threshold say so
    shutil.copy(fp32, alone)
    assert open_model(alone).image_size == 224


@needs_shared
def test_a_temperature_at_the_search_bound_is_not_applied_without_a_word(subset_run, tmp_path, capsys):
    """A run whose CV temperature sat at the search's bound (0.05: no held-out mistake; `catdog train`
    on 40 photos less inspect's suspects fitted one) said "leave --calibrated off" once, in train's
    output; `predict --calibrated` then wrote every label as 0 or 1 and `export --calibrated` folded
    it in. Both now refuse, before any photo."""
    import shutil

    from catdog.cli import main
    from conftest import TEST

    run = tmp_path / "run"
    shutil.copytree(subset_run, run, ignore=shutil.ignore_patterns("features.h5", "negatives.h5", "views", "cache"))
    metrics = json.loads((run / "metrics.json").read_text())
    metrics["calibration"]["temperature"] = 0.05  # what fit_temperature returns at its lower bound
    (run / "metrics.json").write_text(json.dumps(metrics))
    test_dir = copy_photos(tmp_path / "test", ["1.jpg", "2.jpg"], src=TEST)
    expected = "--calibrated: the run's temperature 0.050 is at the search's bound (no held-out mistake to fit it on)"
    assert main(["predict", str(run), str(test_dir), "--out", str(tmp_path / "s.csv"), "--calibrated"]) == 2
    assert expected in capsys.readouterr().err and not (tmp_path / "s.csv").exists()
    assert main(["export", str(run), "--out", str(tmp_path / "art"), "--calibrated", "--formats", "tflite", "--precision", "fp32"]) == 2
    assert expected in capsys.readouterr().err and not (tmp_path / "art").exists()
    assert main(["predict", str(run), str(test_dir), "--out", str(tmp_path / "s.csv")]) == 0  # without it: as before
