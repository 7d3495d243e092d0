"""Stage 2: preprocessing layers, the h5 cache, resumption after a kill, ResNet50 mechanics."""

from __future__ import annotations

import csv
import os
import signal
import subprocess
import sys
import time

import h5py
import keras
import numpy as np
import pytest

from catdog.data import decode, scan
from catdog.errors import CatdogError
from catdog.features import BackbonePreprocessing, build_backbone, extract_features, feature_model, load_features
from conftest import R50_SIZE, REPO, TRAIN, copy_photos, kaggle_names, needs_shared


@needs_shared
@pytest.mark.parametrize(
    "mode,reference",
    [("caffe", keras.applications.resnet50.preprocess_input), ("tf", keras.applications.mobilenet_v2.preprocess_input)],
)
def test_preprocessing_layer_equals_keras_preprocess_input(mode, reference):
    images = np.stack([decode(TRAIN / f"dog.{n}.jpg") for n in range(4)]).astype(np.float32)
    ours = np.asarray(BackbonePreprocessing(mode)(images))
    assert np.allclose(ours, reference(images.copy()), atol=1e-5)


@pytest.fixture(scope="module")
def small_data(tmp_path_factory):
    if not TRAIN.is_dir():
        pytest.skip(f"real photos not found at {TRAIN}")
    names = kaggle_names("cat", range(20)) + kaggle_names("dog", range(20))
    return copy_photos(tmp_path_factory.mktemp("small"), names)


@needs_shared
def test_features_file_contents_and_cache_hit(small_data, tmp_path):
    samples, _ = scan(small_data)
    out = tmp_path / "f.h5"
    first = extract_features(samples, out, "mobilenet_v2", progress=False)
    assert first.computed == 40 and first.cached == 0
    fs = load_features(out)
    assert fs.features.shape == (40, 1280) and fs.features.dtype == np.float32
    assert fs.names == [s.name for s in samples] and list(fs.labels) == [s.label for s in samples]
    assert np.all(fs.features >= 0) and fs.features.std() > 0  # GAP of ReLU6 activations
    # the cache (LiteRT engine) equals the Keras model applied to the same photos
    model = feature_model("mobilenet_v2", build_backbone("mobilenet_v2"))
    direct = model.predict_on_batch(np.stack([decode(s.path) for s in samples[:5]]).astype(np.float32))
    assert np.abs(fs.features[:5] - direct).max() <= 1e-4 * max(1.0, float(np.abs(direct).max()))
    keras_engine = extract_features(samples[:5], tmp_path / "k.h5", "mobilenet_v2", progress=False, engine="keras")
    assert keras_engine.computed == 5
    assert np.allclose(load_features(tmp_path / "k.h5").features, direct, atol=1e-6)
    again = extract_features(samples, out, "mobilenet_v2", progress=False)
    assert again.computed == 0 and again.cached == 40
    # a half-written batch (rows not committed) is recomputed, nothing else
    with h5py.File(out, "a") as f:
        f.attrs["rows"] = 33
        f.attrs["complete"] = False
    resumed = extract_features(samples, out, "mobilenet_v2", progress=False)
    assert resumed.computed == 7 and resumed.cached == 33
    assert np.allclose(load_features(out).features, fs.features, atol=1e-5)


@needs_shared
def test_a_photo_touched_since_is_computed_again_with_a_note(tmp_path, capsys):
    """The cache keys a photo by name, size and modification time: a copied dataset (new mtimes) was
    computed whole again with no word on why (114 s for make run's photos). A note says it."""
    data = copy_photos(tmp_path / "data", kaggle_names("cat", [1, 2]) + kaggle_names("dog", [1, 2]))
    out = tmp_path / "f.h5"
    extract_features(scan(data)[0], out, "mobilenet_v2", progress=False)
    capsys.readouterr()
    st = os.stat(data / "cat.1.jpg")
    os.utime(data / "cat.1.jpg", ns=(st.st_atime_ns, st.st_mtime_ns + 10**9))  # as a copy or `touch` leaves it
    again = extract_features(scan(data)[0], out, "mobilenet_v2", progress=False)
    assert again.computed == 1 and again.cached == 3
    assert "features: note: 1 photo(s) have the name and size of cached ones but another modification time" in capsys.readouterr().out


def test_a_view_does_not_count_the_rejected_files_again(tmp_path, capsys):
    """`catdog run` extracts each view of the photos already extracted: one empty file was counted
    again after each of the 7 views ("1 file(s) rejected (named above; --rejected FILE lists them)",
    though RUN_DIR/rejected.csv lists it). The plain extraction counts it, once."""
    from catdog.data import MAX_PIXELS
    from catdog.features.stage import Extraction, features_stage

    data = copy_photos(tmp_path / "data", kaggle_names("cat", [1, 2]) + kaggle_names("dog", [1, 2]))
    (data / "cat.3.jpg").write_bytes(b"")
    extraction = Extraction(backbone="mobilenet_v2", weights=None, image_size=224, engine="litert", batch_size=32, max_pixels=MAX_PIXELS)
    features_stage(data, tmp_path / "f.h5", tmp_path / "rejected.csv", extraction)
    assert capsys.readouterr().out.count("1 file(s) rejected") == 1
    features_stage(data, tmp_path / "f.mirror.h5", None, extraction, view="mirror", echo=False)
    assert "rejected" not in capsys.readouterr().out


@needs_shared
def test_killed_feature_run_resumes_where_it_stopped(small_data, tmp_path):
    out = tmp_path / "f.h5"
    cmd = [sys.executable, "-m", "catdog.cli", "features", str(small_data), "--out", str(out), "--batch-size", "4"]
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    proc = subprocess.Popen(cmd, cwd=REPO, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    committed = 0
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline and proc.poll() is None:
        try:
            with h5py.File(out, "r") as f:
                committed = int(f.attrs["rows"])
        except (OSError, KeyError):
            pass
        if committed >= 8:
            proc.send_signal(signal.SIGKILL)
            break
        time.sleep(0.05)
    proc.wait()
    assert proc.returncode == -signal.SIGKILL, "the run finished before it could be killed"
    samples, _ = scan(small_data)
    report = extract_features(samples, out, "mobilenet_v2", batch_size=4, progress=False)
    assert report.cached >= 8 and report.computed == 40 - report.cached
    fs = load_features(out)
    assert fs.names == [s.name for s in samples]
    fresh = extract_features(samples, tmp_path / "fresh.h5", "mobilenet_v2", progress=False)
    assert fresh.computed == 40
    assert np.allclose(fs.features, load_features(tmp_path / "fresh.h5").features, atol=1e-4)


@needs_shared
def test_resnet50_mechanics_with_weights_the_test_makes(small_data, tmp_path):
    weights = tmp_path / "resnet50_random_notop.weights.h5"
    keras.utils.set_random_seed(1)
    keras.applications.ResNet50(include_top=False, weights=None, input_shape=(R50_SIZE, R50_SIZE, 3)).save_weights(weights)
    samples, _ = scan(small_data)
    report = extract_features(samples[:6], tmp_path / "r50.h5", "resnet50", weights=weights, image_size=R50_SIZE, progress=False)
    fs = load_features(tmp_path / "r50.h5")
    assert report.computed == 6 and fs.features.shape == (6, 2048)
    assert fs.weights.startswith("file:") and np.isfinite(fs.features).all()
    # the same file with other weights is refused, not silently mixed
    with pytest.raises(CatdogError, match="choose another --out"):
        extract_features(samples[:6], tmp_path / "r50.h5", "resnet50", weights="imagenet", image_size=R50_SIZE, progress=False)


def test_unknown_backbone_and_missing_weights_are_clear_errors(tmp_path):
    with pytest.raises(CatdogError, match="unknown backbone 'vgg16'"):
        build_backbone("vgg16")
    with pytest.raises(CatdogError, match="weights file not found"):
        build_backbone("resnet50", tmp_path / "nope.h5")


@needs_shared
def test_a_failed_extraction_leaves_no_empty_feature_file(tmp_path, capsys):
    """Weights that cannot be loaded, or a folder whose every photo is rejected: one line, exit 2, and
    no feature file of no rows left where FEATURES.h5 was asked for (before, an empty one was)."""
    from catdog.cli import main

    ok = copy_photos(tmp_path / "ok", kaggle_names("cat", [1]))
    bad = tmp_path / "bad"
    bad.mkdir()
    (bad / "cat.1.jpg").write_bytes(b"not a photo")
    (tmp_path / "bogus.h5").write_text("not weights")
    assert main(["features", str(ok), "--out", str(tmp_path / "a.h5"), "--weights", str(tmp_path / "bogus.h5")]) == 2
    assert "cannot load mobilenet_v2 weights" in capsys.readouterr().err
    assert main(["features", str(bad), "--out", str(tmp_path / "b.h5")]) == 2
    assert "no usable photo" in capsys.readouterr().err
    assert not (tmp_path / "a.h5").exists() and not (tmp_path / "b.h5").exists()
    assert "cat.1.jpg" in (tmp_path / "b.rejected.csv").read_text()  # the rejection itself is kept, beside b.h5
    # as a RUN_DIR names them: features.h5's list is rejected.csv, negatives.h5's rejected_negatives.csv
    # (the README's negatives recipe into the same folder had replaced the photos' list)
    assert main(["features", str(bad), "--out", str(tmp_path / "features.h5")]) == 2
    assert main(["features", str(ok), "--out", str(tmp_path / "negatives.h5")]) == 0
    assert "cat.1.jpg" in (tmp_path / "rejected.csv").read_text() and (tmp_path / "rejected_negatives.csv").read_text().splitlines() == ["file,reason"]


def test_offline_a_size_with_imagenet_weights_of_its_own_names_that_file():
    """Keras loads MobileNetV2's 128 px ImageNet weights at 128 (not the 224 ones the Makefile
    copies); offline, the error names the file Keras looks for."""
    from catdog.features import get_spec
    from catdog.features.backbones import keras_models_dir

    wanted = "mobilenet_v2_weights_tf_dim_ordering_tf_kernels_1.0_128_no_top.h5"
    assert get_spec("mobilenet_v2").weights_file(128) == wanted
    assert get_spec("mobilenet_v2").weights_file(288).endswith("_224_no_top.h5")
    assert get_spec("mobilenet").weights_file(96) == "mobilenet_1_0_224_tf_no_top.h5"  # V1 has no 96 file
    try:
        build_backbone("mobilenet_v2", image_size=128)
    except CatdogError as exc:
        assert wanted in str(exc) and "at 128px" in str(exc), str(exc)
    else:  # a machine with a network downloads the file, as Keras does
        assert (keras_models_dir() / wanted).is_file()


@needs_shared
def test_resuming_rewrites_the_file_to_its_committed_rows(tmp_path):
    """A batch written but not committed (a kill between the data and the `rows` attribute) is
    dropped on resume, and the file is a fresh copy of the committed rows (HDF5 is not crash-safe:
    writing into a killed file's structures once failed in CI), which later batches then extend."""
    from catdog.features.cache import append_rows, close_cache, open_cache

    samples, _ = scan(copy_photos(tmp_path / "data", kaggle_names("cat", range(3)) + kaggle_names("dog", range(3))))
    out = tmp_path / "f.h5"
    rows = np.arange(6 * 1280, dtype=np.float32).reshape(6, 1280)
    target = open_cache(samples, out, "mobilenet_v2")
    append_rows(target, rows[:2], samples[:2], target.keys[:2])
    with h5py.File(out, "a") as f:  # the half-written batch of a killed run
        for name in ("features", "labels", "names", "ids", "keys"):
            f[name].resize(4, axis=0)
        f["features"][2:4] = -1.0
        f["keys"][2:4] = ["x|1|1", "y|1|1"]
    before = out.stat().st_ino
    target = open_cache(samples, out, "mobilenet_v2")
    assert target.cached == 2 and [s.name for s, _ in target.todo] == [s.name for s in samples[2:]]
    assert out.stat().st_ino != before  # replaced, not patched in place
    with h5py.File(out, "r") as f:
        assert f["features"].shape == (2, 1280) and int(f.attrs["rows"]) == 2 and not f.attrs["complete"]
    append_rows(target, rows[2:], samples[2:], target.keys[2:])
    close_cache(target)
    fs = load_features(out)
    assert fs.names == [s.name for s in samples] and np.array_equal(fs.features, rows)


@needs_shared
def test_odd_file_names_are_used_or_named_in_one_line(tmp_path):
    """Names as they come from other disks and phones: bytes that are not UTF-8 (a Latin-1 "é",
    in a file's name or a folder's) crashed `catdog features` in h5py once the photo was decoded;
    "1²2" crashed the sort. Now such a file is one line in rejected.csv and the rest are used."""
    from conftest import catdog_cli

    data = tmp_path / "odd"
    latin1 = os.fsdecode(b"caf\xe9.jpg")  # how Python names a file whose bytes are not UTF-8
    names = {
        "cat/cat.0.jpg": "cat.0.jpg", f"cat/{latin1}": "cat.1.jpg", "cat/1²2.jpg": "cat.2.jpg",
        "cat/" + os.fsdecode(b"d\xe9") + "/x.jpg": "cat.3.jpg", "dog/dog.0.jpg": "dog.0.jpg",
        'dog/new\nline,"quoted".jpg': "dog.1.jpg", "dog/<img src=x onerror=alert(1)>.jpg": "dog.2.jpg",
    }
    for name, source in names.items():
        (data / name).parent.mkdir(parents=True, exist_ok=True)
        (data / name).write_bytes((TRAIN / source).read_bytes())
    out = tmp_path / "f.h5"
    done = catdog_cli("features", str(data), "--out", str(out), timeout=300)
    assert done.returncode == 0, done.output
    assert "Traceback" not in done.output
    skipped = [line for line in done.output.splitlines() if line.startswith("skipped ")]
    assert sorted(skipped) == [
        f"skipped {data}/cat/caf\\xe9.jpg: name is not valid UTF-8 (catdog keeps photo names as text); rename it",
        f"skipped {data}/cat/d\\xe9/x.jpg: name is not valid UTF-8 (catdog keeps photo names as text); rename it",
    ]
    with open(tmp_path / "f.rejected.csv", newline="", encoding="utf-8") as f:
        rows = list(csv.DictReader(f))
    assert sorted(r["file"] for r in rows) == [f"{data}/cat/caf\\xe9.jpg", f"{data}/cat/d\\xe9/x.jpg"]
    fs = load_features(out)
    assert fs.names == ["cat/1²2.jpg", "cat/cat.0.jpg", "dog/<img src=x onerror=alert(1)>.jpg", "dog/dog.0.jpg",
                        'dog/new\nline,"quoted".jpg']
    assert list(fs.labels) == [0, 0, 1, 1, 1] and fs.features.std() > 0


def test_a_run_dir_given_for_its_features_names_the_file_it_holds(tmp_path):
    """`catdog train RUN_DIR` said to extract the RUN_DIR's folder as photos (`catdog features
    RUN_DIR --out FILE.h5`); it names the feature file the run holds."""
    (tmp_path / "run").mkdir()
    (tmp_path / "run" / "features.h5").write_bytes(b"")
    with pytest.raises(CatdogError, match=r"run: a folder, not a feature file; give the feature file it holds, .*run/features\.h5$"):
        load_features(tmp_path / "run")
