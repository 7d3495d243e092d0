"""kill -9 of real `catdog features` and `catdog export` processes, then the same command again;
and Ctrl-C of a real `catdog export` while its second process works.

Checked each time: the re-run gives the uninterrupted result (features within 1e-6; artefacts'
outputs within 1e-6 of an uninterrupted export, as tf2onnx and the TFLite metadata zip are not
byte-reproducible), nothing complete is recomputed (committed feature rows come from the cache;
a finished artefact keeps its sha256 and mtime), and no file under a final name says something
untrue at any instant (the manifest only lists artefacts whose sha256 matches; an unfinished
feature file is refused by `load_features`).
"""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import h5py
import numpy as np
import pytest

from catdog.contract import sha256_path
from catdog.data import decode, scan, sha256_file
from catdog.errors import CatdogError
from catdog.features import extract_features, load_features
from conftest import REFERENCE, REPO, TRAIN, catdog_cli, copy_photos, kaggle_names, needs_shared, process_group_ends

ENV = {**os.environ, "PYTHONUNBUFFERED": "1", "TF_CPP_MIN_LOG_LEVEL": "2"}
BATCH = 4


def catdog(*args: str) -> subprocess.Popen:
    return subprocess.Popen(
        [sys.executable, "-m", "catdog.cli", *args], cwd=REPO, env=ENV, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True
    )


def kill_when(proc: subprocess.Popen, ready, timeout: float = 240, poll: float = 0.02) -> None:
    """SIGKILL `proc` as soon as `ready()` is true; fail if it finishes or times out first."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and proc.poll() is None:
        if ready():
            proc.send_signal(signal.SIGKILL)
            break
        time.sleep(poll)
    out = proc.communicate()[0]
    assert proc.returncode == -signal.SIGKILL, f"not killed (exit {proc.returncode}); output:\n{out[-3000:]}"


def committed_rows(path: Path) -> int | None:
    try:
        with h5py.File(path, "r") as f:
            return int(f.attrs["rows"])
    except (OSError, KeyError):
        return None


# ---------------------------------------------------------------- features
@pytest.fixture(scope="module")
def photos(tmp_path_factory) -> Path:
    if not TRAIN.is_dir():
        pytest.skip(f"real photos not found at {TRAIN}")
    return copy_photos(tmp_path_factory.mktemp("kill_photos"), kaggle_names("cat", range(20)) + kaggle_names("dog", range(20)))


@pytest.fixture(scope="module")
def uninterrupted(photos, tmp_path_factory):
    """The same extraction, never killed (same batch size)."""
    out = tmp_path_factory.mktemp("kill_ref") / "features.h5"
    report = extract_features(scan(photos)[0], out, "mobilenet_v2", batch_size=BATCH, progress=False)
    assert report.computed == 40
    return load_features(out)


@needs_shared
def test_features_file_killed_while_being_created(photos, uninterrupted, tmp_path):
    """The instant a kill can hit between h5py creating the file and writing its attributes (CI
    once caught it): the file is now created under a temporary name, and a file left that way by
    an older catdog is set aside as unreadable, not refused as another backbone's."""
    out = tmp_path / "features.h5"
    with h5py.File(out, "w"):
        pass  # what such a kill leaves: an HDF5 file with no dataset and no attribute
    report = extract_features(scan(photos)[0], out, "mobilenet_v2", batch_size=BATCH, progress=False)
    assert report.computed == 40 and (tmp_path / "features.h5.broken").exists()
    again = load_features(out)
    assert again.names == uninterrupted.names and np.abs(again.features - uninterrupted.features).max() <= 1e-6
    assert not [p.name for p in tmp_path.iterdir() if ".tmp" in p.name]
    with h5py.File(out, "w"):  # a second incident: the first one's file is kept (it was overwritten)
        pass
    extract_features(scan(photos)[0][:2], out, "mobilenet_v2", batch_size=BATCH, progress=False)
    assert (tmp_path / "features.h5.broken").exists() and (tmp_path / "features.h5.broken.1").exists()


@needs_shared
def test_an_out_that_is_not_a_feature_file_or_is_in_use_is_refused_untouched(photos, tmp_path, monkeypatch):
    """--out naming a file catdog did not write (notes, a Keras weights file), or a feature file
    another process holds open, was renamed *.broken "killed mid-write?" and replaced: the user's
    file moved aside, a notebook's open file pulled away. Each is refused in one line, untouched."""
    notes = tmp_path / "notes.txt"
    notes.write_text("my notes\n")
    weights = tmp_path / "my_weights.h5"
    with h5py.File(weights, "w") as f:
        f.create_dataset("model_weights", data=[1.0, 2.0])
    samples = scan(photos)[0][:2]
    for path, said in ((notes, "exists and is not a feature file (not HDF5)"), (weights, "an HDF5 file without catdog's features")):
        before = path.read_bytes()
        with pytest.raises(CatdogError, match=re.escape(f"{path}: {said}")):
            extract_features(samples, path, "mobilenet_v2", batch_size=BATCH, progress=False)
        assert path.read_bytes() == before and not path.with_suffix(path.suffix + ".broken").exists()
    out = tmp_path / "features.h5"
    extract_features(samples, out, "mobilenet_v2", batch_size=BATCH, progress=False)
    monkeypatch.setenv("HDF5_USE_FILE_LOCKING", "TRUE")  # HDF5's default, which conftest turns off for the test session
    holder = subprocess.Popen([sys.executable, "-c", f"import h5py, sys, time; f = h5py.File({str(out)!r}, 'r'); print('open', flush=True); time.sleep(60)"],
                              stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "open"
        result = catdog_cli("features", str(photos), "--out", str(out))  # a process of its own: HDF5 reads the setting once
        assert result.returncode == 2 and f"catdog: error: {out}: in use by another process (HDF5 could not lock it)" in result.output, result.output
    finally:
        holder.kill()
        holder.wait()
    assert not (tmp_path / "features.h5.broken").exists() and load_features(out).names == [s.name for s in samples]


@needs_shared
@pytest.mark.parametrize("point", ["before the first batch", "mid-batch"])
def test_features_killed_then_rerun(photos, uninterrupted, tmp_path, point):
    out = tmp_path / "features.h5"
    args = ("features", str(photos), "--out", str(out), "--batch-size", str(BATCH))
    at_least = 0 if point == "before the first batch" else 8
    kill_when(catdog(*args), lambda: (committed_rows(out) or 0) >= at_least and out.exists())
    committed = committed_rows(out)
    if committed is not None:  # the killed file says it is unfinished: nothing can read it as complete
        with pytest.raises(CatdogError, match="did not finish"):
            load_features(out)
    assert point == "before the first batch" or (committed or 0) >= 8
    rerun = catdog(*args)
    printed = rerun.communicate(timeout=240)[0]
    assert rerun.returncode == 0, printed[-3000:]
    done = re.search(r"\((\d+) computed.*?, (\d+) from cache", printed)
    assert done, printed[-2000:]
    computed, cached = int(done.group(1)), int(done.group(2))
    # what was committed before the kill is reused, nothing more is recomputed
    assert cached == (committed or 0) and computed == 40 - cached, (committed, computed, cached)
    again = load_features(out)
    assert again.names == uninterrupted.names and list(again.labels) == list(uninterrupted.labels)
    assert np.abs(again.features - uninterrupted.features).max() <= 1e-6
    assert not [p.name for p in tmp_path.iterdir() if ".tmp" in p.name], "a temporary file left behind"


# ---------------------------------------------------------------- export
class ManifestWatch(threading.Thread):
    """Reads ART_DIR/manifest.json as often as it can while an export runs; records every instant
    the manifest listed an artefact whose file was missing or whose sha256 did not match."""

    def __init__(self, art_dir: Path):
        super().__init__(daemon=True)
        self.art_dir, self.stop, self.untrue, self.reads = art_dir, threading.Event(), [], 0

    def run(self):
        while not self.stop.is_set():
            try:
                manifest = json.loads((self.art_dir / "manifest.json").read_text())
            except (OSError, ValueError):
                time.sleep(0.01)  # not there yet (a half-written manifest would fail the JSON: see below)
                continue
            self.reads += 1
            for a in manifest["artefacts"] + manifest.get("uniform_artefacts", []):
                path = self.art_dir / a["file"]
                if not path.exists() or sha256_path(path) != a["sha256"]:
                    # the file may have been replaced after the manifest was read: read both again
                    again = json.loads((self.art_dir / "manifest.json").read_text())
                    if a in again["artefacts"] and (not path.exists() or sha256_path(path) != a["sha256"]):
                        self.untrue.append(a["file"])


def listed(art_dir: Path) -> list[dict]:
    path = art_dir / "manifest.json"
    return json.loads(path.read_text())["artefacts"] if path.exists() else []


def outputs(art_dir: Path, entry: dict, images: np.ndarray) -> dict[str, np.ndarray]:
    from catdog.runtime import open_model

    return open_model(art_dir / entry["file"]).run(images)


@needs_shared
def test_export_killed_mid_export_then_rerun(subset_run, subset_artefacts, tmp_path):
    art = tmp_path / "art"
    args = ("export", str(subset_run), "--out", str(art), "--formats", "tflite,onnx", "--precision", "fp32")
    watch = ManifestWatch(art)
    watch.start()
    # the first artefact (TFLite) is complete and listed: the ONNX export is under way
    kill_when(catdog(*args), lambda: len(listed(art)) == 1, poll=0.01)
    first = listed(art)
    assert [a["format"] for a in first] == ["tflite"]
    tflite = art / first[0]["file"]
    stamp = (tflite.stat().st_mtime_ns, sha256_file(tflite))
    assert stamp[1] == first[0]["sha256"]
    # whatever a final name holds after the kill is complete (an unlisted ONNX may have been renamed in)
    for path in list(art.glob("*.tflite")) + list(art.glob("*.onnx")):
        outputs(art, {"format": path.suffix[1:], "file": path.name}, np.zeros((1, 224, 224, 3), np.float32))
    left = art / ".staging-999999999-0badc0de" / "catdog_x_fp32.mlpackage"  # as a kill -9 beside Core ML leaves (no such pid)
    left.mkdir(parents=True)
    half = art / ".catdog_x_fp16.tmp-0badc0de.tflite"  # a file a kill -9 cut short mid-write (it stayed, "an earlier export's")
    half.write_bytes(b"TFL3" + bytes(1000))
    rerun = catdog(*args)
    printed = rerun.communicate(timeout=300)[0]
    watch.stop.set()
    watch.join()
    assert rerun.returncode == 0, printed[-3000:]
    assert watch.reads > 0 and watch.untrue == [], f"the manifest listed {watch.untrue} before they were complete"
    manifest = json.loads((art / "manifest.json").read_text())
    assert [(a["format"], a["precision"]) for a in manifest["artefacts"]] == [("tflite", "fp32"), ("onnx", "fp32")]
    assert manifest["artefacts"][0] == first[0], "the finished TFLite artefact was exported again"
    assert (tflite.stat().st_mtime_ns, sha256_file(tflite)) == stamp
    for a in manifest["artefacts"]:
        assert sha256_file(art / a["file"]) == a["sha256"]
    assert not [p.name for p in art.iterdir() if ".tmp" in p.name], "a temporary file left behind"
    assert not left.parent.exists(), "the killed export's staging folder was left"
    assert not half.exists() and "that this manifest does not list" not in printed  # the half-written file is not one
    assert "export: kept 1 artefact(s) an earlier export made from this model" in printed  # the TFLite, said so
    # the same outputs as an uninterrupted export of the same RUN_DIR, on real photos
    images = np.stack([decode(p) for p in sorted(REFERENCE.glob("*.jpg"))[:6]]).astype(np.float32)
    reference = {(a["format"], a["precision"]): a for a in json.loads((subset_artefacts / "manifest.json").read_text())["artefacts"]}
    for a in manifest["artefacts"]:
        ours, theirs = outputs(art, a, images), outputs(subset_artefacts, reference[(a["format"], a["precision"])], images)
        for key in ours:
            assert np.abs(ours[key] - theirs[key]).max() <= 1e-6, (a["file"], key, np.abs(ours[key] - theirs[key]).max())


@needs_shared
def test_export_ctrl_c_while_its_second_process_converts(subset_run, subset_artefacts, tmp_path):
    """Ctrl-C (SIGINT to the process group, as a terminal sends it) while the second process has
    made the Core ML fp32 package and runs Core ML's fp16 analysis, in an ART_DIR holding an earlier
    export: the command stops within seconds with its one line and exit 130, none of its processes
    is left running, the earlier manifest stays true of every file it lists (the new package is not
    moved in before its entry is written), and nothing staged is left behind."""
    art = tmp_path / "art"
    shutil.copytree(subset_artefacts, art)
    before = json.loads((art / "manifest.json").read_text())
    package = art / next(a["file"] for a in before["artefacts"] if a["format"] == "coreml" and a["precision"] == "fp32")
    stamp = package.stat().st_mtime_ns
    # a default SIGINT handler whatever this process inherited (a shell's background job ignores it)
    launch = "import os, signal, sys; signal.signal(signal.SIGINT, signal.SIG_DFL); os.execv(sys.executable, [sys.executable, *sys.argv[1:]])"
    proc = subprocess.Popen([sys.executable, "-c", launch, "-m", "catdog.cli", "export", str(subset_run), "--out", str(art), "--calibrated"],
                            cwd=REPO, env=ENV, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, start_new_session=True)
    watch = ManifestWatch(art)
    watch.start()
    deadline = time.monotonic() + 240
    while proc.poll() is None and time.monotonic() < deadline:
        if list(art.glob(".staging-*/*.mlpackage")) or package.stat().st_mtime_ns != stamp:
            break  # the fp32 package is made (staged, or over the earlier one): the Core ML analysis runs
        time.sleep(0.02)
    assert proc.poll() is None, f"the export ended before the Core ML package was made:\n{proc.communicate()[0][-3000:]}"
    os.killpg(proc.pid, signal.SIGINT)
    sent = time.monotonic()
    try:
        out = proc.communicate(timeout=30)[0]
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        pytest.fail(f"still running 30 s after Ctrl-C:\n{proc.communicate()[0][-3000:]}")
    # the second process, whose work nothing waits for now
    assert process_group_ends(proc.pid, 30 - (time.monotonic() - sent)), "a process of the export was still running 30 s after Ctrl-C"
    gone = time.monotonic() - sent
    watch.stop.set()
    watch.join()
    assert proc.returncode == 130 and out.rstrip().endswith("catdog: interrupted; run the same command again to resume"), out[-3000:]
    assert gone < 15, f"the export's processes ran {gone:.0f} s after Ctrl-C"
    assert "leaked" not in out and "Traceback" not in out, out[-3000:]
    assert watch.reads > 0 and watch.untrue == [], f"the manifest listed {watch.untrue} while they were being replaced"
    assert json.loads((art / "manifest.json").read_text()) == before
    for a in before["artefacts"] + before.get("uniform_artefacts", []):
        assert sha256_path(art / a["file"]) == a["sha256"], a["file"]
    assert not [p.name for p in art.iterdir() if p.name.startswith(".")], "something staged was left in ART_DIR"
