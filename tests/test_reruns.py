"""Running a command again, into what an earlier run left: the earlier run's files must neither break
the new one nor pass for its results. Real photos and weights (MobileNetV2 and V1 at 224 on a few
photos), real feature files and a real head."""

from __future__ import annotations

import json

import pytest

from catdog.errors import CatdogError
from conftest import TRAIN, WEIGHTS, copy_photos, kaggle_names, needs_shared

pytestmark = needs_shared


@pytest.fixture(scope="module")
def photos(tmp_path_factory):
    data = copy_photos(tmp_path_factory.mktemp("reruns") / "data", kaggle_names("cat", range(10)) + kaggle_names("dog", range(10)))
    (data / "cat.99.jpg").write_bytes(b"not a photo")
    return data


def test_a_view_left_by_another_backbone_is_one_line_and_run_trains_on_its_own_views(photos, tmp_path, capsys):
    """`catdog features --view mirror` with MobileNet V1, then the photos again with MobileNetV2 (as
    the error of the first try said: delete the file): `catdog train` was a numpy traceback; now
    one line before any training. `catdog run` trains on the views it extracted (train_stage's
    `views`), not on every file an earlier run left in views/; a pet_predictions.csv an earlier
    run left is removed where this run writes none; a view's rejected photos are not printed again."""
    from catdog.features import view_path
    from catdog.features.stage import Extraction, features_stage
    from catdog.training import HeadConfig
    from catdog.training.stage import train_stage

    features = tmp_path / "run" / "features.h5"
    v1 = Extraction("mobilenet", None, 224, "litert", 32, 50_000_000)
    v2 = Extraction("mobilenet_v2", None, 224, "litert", 32, 50_000_000)
    features_stage(str(photos), view_path(features, "mirror"), None, v1, view="mirror", echo=False)
    assert "cat.99.jpg" not in capsys.readouterr().out  # echo=False: the plain pass names it, once
    features_stage(str(photos), features, tmp_path / "rejected.csv", v2)
    assert capsys.readouterr().out.count("cat.99.jpg") == 1
    config = HeadConfig(folds=3, l2_grid=(1e-2,))
    with pytest.raises(CatdogError, match=r"the mirror view's features are mobilenet at 224px \(imagenet weights\), not the photos' "
                                          r"mobilenet_v2 at 224px \(imagenet\); delete (\S+), then extract it") as caught:
        train_stage(features, tmp_path / "run", config)
    # the view's own file (it named views/FEATURES.mirror.h5), and the command that refills it
    assert caught.value.args[0].split("delete ")[1].split(",")[0] == str(view_path(features, "mirror"))
    assert f"`catdog features DATA --out {features} --view mirror`" in str(caught.value)
    (tmp_path / "run" / "pet_predictions.csv").write_text("file,kind,p_pet,kept\nold.jpg,pet,0.5,1\n")
    with pytest.raises(CatdogError, match=r"--negatives: 20 of its 20 photos are training photos themselves"):
        train_stage(features, tmp_path / "run", config, negatives=str(features), views=[])  # a detector that rejects nothing, before
    with pytest.raises(CatdogError, match=r"--shift-photos 4: takes labelled photos .* has none"):
        unlabelled = copy_photos(tmp_path / "unlabelled", ["cat.1.jpg"])
        (unlabelled / "cat.1.jpg").rename(unlabelled / "IMG_1.jpg")
        features_stage(str(unlabelled), tmp_path / "u.h5", None, v2, shift_photos=4)  # said "no usable photo"
    metrics = train_stage(features, tmp_path / "run", config, views=[])  # as `catdog run --views none --shift-photos 0`
    assert metrics["head"]["views"] == [] and [r["name"] for r in metrics["robustness"]["rows"]] == ["clean", "groups"]
    assert not (tmp_path / "run" / "pet_predictions.csv").exists()  # no negatives: no nested P(pet) to list


def test_negatives_and_views_must_be_of_other_photos_and_the_same_files(photos, tmp_path, capsys):
    """Negatives extracted from another folder holding the training photos (links, or class
    folders of the same files) made a detector that rejects nothing, unsaid; negatives named as
    cats and dogs likewise. A view file made before a photo was replaced under the same name gave
    the old photo's view to the new one (matched by name): matched by cache key, the view now lacks
    that photo and training says to extract it again."""
    import shutil

    from catdog.features import view_path
    from catdog.features.stage import Extraction, features_stage
    from catdog.training import HeadConfig
    from catdog.training.stage import train_stage

    v2 = Extraction("mobilenet_v2", None, 224, "litert", 32, 50_000_000)
    data = tmp_path / "data"
    shutil.copytree(photos, data)
    features = tmp_path / "run" / "features.h5"
    features_stage(str(data), features, None, v2, echo=False)
    config = HeadConfig(folds=3, l2_grid=(1e-2,))
    same = tmp_path / "same"  # renamed copies of 8 training photos
    same.mkdir()
    for i, name in enumerate(kaggle_names("cat", range(4)) + kaggle_names("dog", range(4))):
        shutil.copy(data / name, same / f"IMG_{i}.jpg")
    features_stage(str(same), tmp_path / "same.h5", None, v2, echo=False)
    with pytest.raises(CatdogError, match=r"--negatives: 8 of its 8 photos are training photos themselves .*same\)"):
        train_stage(features, tmp_path / "run", config, negatives=str(tmp_path / "same.h5"), views=[])
    named = copy_photos(tmp_path / "named", kaggle_names("cat", range(12, 20)))
    features_stage(str(named), tmp_path / "named.h5", None, v2, echo=False)
    with pytest.raises(CatdogError, match=r"--negatives: 8 of its photos are named as cats or dogs"):
        train_stage(features, tmp_path / "run", config, negatives=str(tmp_path / "named.h5"), views=[])

    with pytest.raises(CatdogError, match=r"--late-fusion: fuses the heads of several backbones, and the features are mobilenet_v2 alone"):
        train_stage(features, tmp_path / "run", HeadConfig(folds=3, l2_grid=(1e-2,), late_fusion=True), views=[])  # was ignored
    with pytest.raises(CatdogError, match=r"same: a folder, not a feature file; extract its features first"):
        train_stage(features, tmp_path / "run", config, negatives=str(same), views=[])  # said "feature file not found"

    features_stage(str(data), view_path(features, "mirror"), None, v2, view="mirror", echo=False)
    shutil.copy(TRAIN / "cat.50.jpg", data / "cat.0.jpg")  # another photo under the same name
    features_stage(str(data), features, None, v2, echo=False)
    with pytest.raises(CatdogError, match=r"the mirror view's features lack 1 of the photos"):
        train_stage(features, tmp_path / "run", HeadConfig(folds=3, l2_grid=(1e-2,), views=("mirror",)), views=["mirror"])
    features_stage(str(data), view_path(features, "mirror"), None, v2, view="mirror", echo=False)  # as the error says
    assert train_stage(features, tmp_path / "run", HeadConfig(folds=3, l2_grid=(1e-2,), views=("mirror",)), views=["mirror"])["n_train"]


def test_a_first_extraction_that_failed_does_not_block_the_retry(photos, tmp_path, capsys):
    """Offline, MobileNetV2 at 96 px has no ImageNet file of its own: the error says to pass --weights,
    but it left an empty feature file behind, and the retry it asked for was refused ("holds ...
    delete the file"). Nothing was committed: the retry starts afresh."""
    from catdog.cli import main

    out = tmp_path / "f.h5"
    assert main(["features", str(photos), "--out", str(out), "--image-size", "96"]) == 2
    assert "--weights" in capsys.readouterr().err
    weights = WEIGHTS / "mobilenet_v2_weights_tf_dim_ordering_tf_kernels_1.0_224_no_top.h5"
    assert main(["features", str(photos), "--out", str(out), "--image-size", "96", "--weights", str(weights)]) == 0
    assert "20 photos in" in capsys.readouterr().out


def test_run_says_a_missing_folder_before_any_work(photos, tmp_path, capsys):
    from catdog.cli import main

    for option in ("--reference", "--calibration", "--negatives"):
        assert main(["run", str(photos), "--out", str(tmp_path / "run"), option, str(tmp_path / "nowhere")]) == 2
        assert capsys.readouterr().err.strip() == f"catdog: error: {option} {tmp_path / 'nowhere'}: no such folder; give a folder of photos"
        assert not (tmp_path / "run" / "features.h5").exists()
    # --cv more than the photos allow: said before the features are extracted (10 cats, 10 dogs)
    assert main(["run", str(photos), "--out", str(tmp_path / "run"), "--cv", "100"]) == 2
    assert capsys.readouterr().err.strip().startswith("catdog: error: --cv 100: nested cross-validation needs at least")
    assert not (tmp_path / "run" / "features.h5").exists()


def test_parity_names_the_labelled_photos_it_cannot_use(photos, tmp_path, capsys):
    """`catdog parity --labelled` dropped unusable and misnamed files without a word, and a folder
    with no label left the int8 accuracy check out silently."""
    from catdog.parity.stage import labelled_photos

    samples = labelled_photos(str(photos))
    assert len(samples) == 21 and f"skipped {photos / 'cat.99.jpg'}" not in capsys.readouterr().out  # decoded later
    unlabelled = copy_photos(tmp_path / "unlabelled", ["cat.1.jpg"])
    (unlabelled / "cat.1.jpg").rename(unlabelled / "IMG_1.jpg")
    with pytest.raises(CatdogError, match=f"--labelled {unlabelled}: no photo is labelled cat or dog"):
        labelled_photos(str(unlabelled))
    mixed = copy_photos(tmp_path / "mixed", ["cat.1.jpg", "dog.1.jpg"])
    (mixed / "kitty.jpg").write_bytes((TRAIN / "cat.2.jpg").read_bytes())
    assert [s.name for s in labelled_photos(str(mixed))] == ["cat.1.jpg", "dog.1.jpg"]
    assert f"skipped {mixed / 'kitty.jpg'}: name matches neither" in capsys.readouterr().out


def test_what_the_report_and_parity_say_matches_what_ran():
    """Stale artefacts (exported from the model before a re-run, or another run's ART_DIR) were shown
    as passing parity; parity.md said "edge cases included" after --no-edge; the neither line said
    "nested CV" for an in-sample keep rate; a re-export with other calibration photos kept the old
    int8 files (only their count was compared)."""
    from catdog.parity import markdown
    from catdog.report.facts import current_parity
    from catdog.training.summary import neither_rates

    manifest = {"keras_model": {"sha256": "aaa"}, "artefacts": [{"file": "m.onnx", "sha256": "x"}]}
    parity = {"passed": True, "artefacts": [{"file": "m.onnx", "sha256": "x", "passed": True}]}
    assert current_parity(parity, manifest, ".", "aaa")["passed"] is False  # m.onnx is not in "." here
    mine = current_parity(parity, manifest, "tests", "bbb")
    assert mine["passed"] is False and "exported from another model than this run's model.keras" in mine["artefacts"][0]["stale"]
    # a row of a file the manifest no longer lists (a re-export of other formats): left out, counted
    from catdog.report.page import parity_section

    earlier = {**parity, "artefacts": parity["artefacts"] + [{"file": "old.tflite", "sha256": "y", "passed": True}]}
    now = current_parity(earlier, manifest, ".", "aaa")
    assert [r["file"] for r in now["artefacts"]] == ["m.onnx"] and now["unlisted"] == 1
    section = parity_section(now, True)
    assert "also holds 1 row(s) of files manifest.json no longer lists" in section and "old.tflite" not in section
    # the tolerances parity checks, stated once (the page left out pet and the verdicts), with their columns
    from html import escape

    from catdog.contract import TOLERANCE_TEXT

    assert escape(TOLERANCE_TEXT) in section and "<th>max |Δpet|</th>" in section and "<th>verdict agree</th>" in section
    # the ART_DIR's sensitivity chart of another model: left out, said (it was shown as this run's)
    from catdog.report.facts import exported_from_another_model
    from catdog.report.page import neither_section, sensitivity_section

    png = b"\x89PNG any bytes"  # embedded as they are
    assert exported_from_another_model(manifest, "bbb") and not exported_from_another_model(manifest, "aaa")
    assert "this run's model.keras" in sensitivity_section(png, True) and "<img" not in sensitivity_section(png, True)
    assert "<img" in sensitivity_section(png, False)
    # an older pet_predictions.csv (no threshold column): no "threshold under each photo" where none is
    tile = {"name": "x.jpg", "p_pet": 0.1, "threshold": None, "jpeg": None}
    photos = {"rejected_pets": [tile], "accepted_negatives": [], "n_rejected_pets": 1, "n_accepted_negatives": 0, "n_pets": 9, "n_negatives": 0}
    metrics = {"pet": {"keep": 0.9, "reject": None, "n_pets": 9, "threshold": 0.8, "method": "nested 5-fold CV"}}
    assert "the threshold under each photo" not in neither_section(metrics, photos)
    photos["rejected_pets"] = [{**tile, "threshold": 0.7}]
    assert "the threshold under each photo is its fold's" in neither_section(metrics, photos)

    report = {"passed": True, "n_images": 9, "n_reference": 9, "edge_cases": False, "labelled_photos": 0, "keras_model": "m",
              "platform": "p", "artefacts": []}
    assert "9 reference images (no edge cases: --no-edge)" in markdown(report)
    assert "(edge cases included)" in markdown({**report, "edge_cases": True})

    in_sample = {"pet": {"keep": 0.975, "n_pets": 40, "threshold": 0.8, "method": "the ImageNet top's pet log-odds alone (no negatives)"}}
    assert "(in-sample: the photos the threshold was chosen on;" in neither_rates(in_sample)
    nested = {"pet": {**in_sample["pet"], "method": "nested 5-fold CV over 40 cats and dogs"}}
    assert "(nested CV;" in neither_rates(nested)


def test_the_report_does_not_pass_an_artefact_changed_since_export(tmp_path):
    """An fp16 .tflite copied over by the int8 one kept its "pass" in report.html: parity.json and
    manifest.json still agreed on the sha256, and the file itself was never hashed."""
    from catdog.contract import sha256_path
    from catdog.report.facts import current_parity

    (tmp_path / "m_fp16.tflite").write_bytes(b"the fp16 model")
    sha = sha256_path(tmp_path / "m_fp16.tflite")
    manifest = {"keras_model": {"sha256": "aaa"}, "artefacts": [{"file": "m_fp16.tflite", "sha256": sha}]}
    parity = {"passed": True, "artefacts": [{"file": "m_fp16.tflite", "sha256": sha, "passed": True}]}
    assert current_parity(parity, manifest, tmp_path, "aaa")["passed"] is True
    (tmp_path / "m_fp16.tflite").write_bytes(b"the int8 model")
    now = current_parity(parity, manifest, tmp_path, "aaa")
    assert now["passed"] is False and now["artefacts"][0]["passed"] is False
    assert now["artefacts"][0]["stale"].startswith("m_fp16.tflite is not the file manifest.json lists (sha256 differs")


def test_a_new_calibration_set_makes_the_int8_artefacts_again(tmp_path):
    from catdog.export import _complete_artefacts

    header = {"keras_model": {"sha256": "m"}, "temperature": 1.0, "calibration_photos": 32, "calibration_sha256": "c1",
              "backbone": "b", "input": {}, "mixed_precision": {"int8": [], "coreml": {}}}
    artefact = tmp_path / "m_int8.tflite"
    artefact.write_bytes(b"model")
    import hashlib

    entry = {"file": artefact.name, "format": "tflite", "precision": "int8", "sha256": hashlib.sha256(b"model").hexdigest(), "kept_float32": []}
    (tmp_path / "manifest.json").write_text(json.dumps({**header, "artefacts": [entry]}))
    assert list(_complete_artefacts(tmp_path, header)) == [artefact.name]
    assert _complete_artefacts(tmp_path, {**header, "calibration_sha256": "c2"}) == {}  # other photos, as many


@needs_shared
def test_int8_calibrated_on_few_photos_says_so(subset_run, tmp_path, capsys):
    """An int8 export calibrated on one photo passed parity with its CAM 72 % off, and said nothing
    of the calibration: a note now, with the count and what to give."""
    from catdog.cli import main

    folder = copy_photos(tmp_path / "cal", kaggle_names("cat", range(950, 953)))
    args = ["export", str(subset_run), "--out", str(tmp_path / "art"), "--formats", "tflite", "--precision", "int8", "--mixed", "off",
            "--calibration", str(folder)]
    assert main(args) == 0
    assert "export: note: int8 calibrated on 3 photo(s), fewer than the 100 it draws where it can" in capsys.readouterr().out
    assert json.loads((tmp_path / "art" / "manifest.json").read_text())["calibration_photos"] == 3


def test_an_unusable_calibration_photo_is_named_once_per_export(tmp_path, capsys):
    """export draws from --calibration DIR twice (the int8 calibration photos, then the sensitivity
    photos): each unusable file was printed once per draw."""
    from catdog.data import scan
    from catdog.export import draw_photos, load_calibration

    folder = copy_photos(tmp_path / "cal", kaggle_names("cat", range(3)) + kaggle_names("dog", range(3)))
    (folder / "cat.98.jpg").write_bytes(b"not a photo")
    samples = scan(folder)[0]
    said: set = set()
    load_calibration(samples, 96, said=said)
    draw_photos(samples, 96, 64, seed=1, said=said)
    out = capsys.readouterr().out
    assert out.count("cat.98.jpg") == 1 and "skipped" in out, out
    draw_photos(samples, 96, 64, seed=1)  # another export (no shared set): named again
    assert capsys.readouterr().out.count("cat.98.jpg") == 1


@needs_shared
def test_an_output_is_never_written_over_a_run_or_art_dir_file(subset_run, subset_artefacts, train_subset, capsys):
    """`evaluate --json RUN/metrics.json` replaced the run's metrics (the run was then "trained by an
    older catdog"); `predict --out ART/manifest.json` would have replaced the apps' manifest. Each
    such path is refused as the arguments are read, and the file stays as it was."""
    from catdog.cli import main

    metrics, manifest = (subset_run / "metrics.json").read_bytes(), (subset_artefacts / "manifest.json").read_bytes()
    cases = [
        (["evaluate", str(subset_run), str(train_subset), "--json", str(subset_run / "metrics.json")], f"the metrics.json of RUN_DIR {subset_run}"),
        (["predict", str(subset_run), str(train_subset), "--out", str(subset_artefacts / "manifest.json")],
         f"the manifest.json of ART_DIR {subset_artefacts}"),
        (["predict", str(subset_run), str(train_subset), "--out", str(subset_run / "sub.csv"), "--rejected", str(subset_run / "split.json")],
         f"the split.json of RUN_DIR {subset_run}"),
    ]
    for args, said in cases:
        with pytest.raises(SystemExit) as stop:
            main(args)
        assert stop.value.code == 2
        assert f"is {said}; give another name" in capsys.readouterr().err
    assert (subset_run / "metrics.json").read_bytes() == metrics and (subset_artefacts / "manifest.json").read_bytes() == manifest


@needs_shared
def test_an_earlier_exports_files_that_the_new_manifest_does_not_list_are_named(subset_run, tmp_path, capsys):
    """Exporting other formats into the same ART_DIR left the earlier files there without a word;
    the runtime then refused them. They are kept (the user's files) and named in a note, on every
export into that folder."""
    from catdog.cli import main
    from catdog.contract import check_artefact

    art = tmp_path / "art"
    assert main(["export", str(subset_run), "--out", str(art), "--formats", "tflite", "--precision", "fp32"]) == 0
    tflite = next(art.glob("*.tflite"))
    capsys.readouterr()
    assert main(["export", str(subset_run), "--out", str(art), "--formats", "onnx", "--precision", "fp32"]) == 0
    out = capsys.readouterr().out
    assert f"still holds 1 artefact(s) of an earlier export that this manifest does not list ({tflite.name})" in out, out
    assert tflite.exists() and [a["format"] for a in json.loads((art / "manifest.json").read_text())["artefacts"]] == ["onnx"]
    with pytest.raises(CatdogError, match="does not list it"):
        check_artefact(tflite)
    assert main(["export", str(subset_run), "--out", str(art), "--formats", "onnx", "--precision", "fp32"]) == 0
    assert f"still holds 1 artefact(s) of an earlier export that this manifest does not list ({tflite.name})" in capsys.readouterr().out
    # the ART_DIR moved (its manifest reaches model.keras by another relative path): its artefacts
    # are kept, not exported again; a manifest.json export cannot read is started afresh (tracebacks)
    import shutil

    moved = tmp_path / "deeper" / "moved"
    shutil.copytree(art, moved)
    onnx = next(moved.glob("*.onnx"))
    stamp = onnx.stat().st_mtime_ns
    assert main(["export", str(subset_run), "--out", str(moved), "--formats", "onnx", "--precision", "fp32"]) == 0
    assert onnx.stat().st_mtime_ns == stamp, "a moved ART_DIR's artefact was exported again"
    assert f"export: kept 1 artefact(s) an earlier export made from this model with these settings, their sha256 checked ({onnx.name})" \
        in capsys.readouterr().out  # the table shows its first export's time
    for unreadable in (b"[]", b"\xff\xfe{", json.dumps({**json.loads((moved / "manifest.json").read_text()), "keras_model": 3}).encode()):
        (moved / "manifest.json").write_bytes(unreadable)
        assert main(["export", str(subset_run), "--out", str(moved), "--formats", "onnx", "--precision", "fp32"]) == 0
        assert [a["format"] for a in json.loads((moved / "manifest.json").read_text())["artefacts"]] == ["onnx"]
