"""`catdog features --ray` and `catdog predict --ray` on a local Ray instance (2 CPUs, a small
object store) against the single-process path: real photos with broken files among them, real
MobileNetV2 weights, real Ray Data."""

from __future__ import annotations

import csv
import sys

import h5py
import numpy as np
import pytest

from tools.badfiles import make_bad_files
import catdog.features.distributed as distributed
from catdog.cli import main
from catdog.data import scan
from catdog.features import load_features
from conftest import TEST, TRAIN, catdog_cli, copy_photos, kaggle_names, needs_shared
from test_cli_quiet import library_lines

ray = pytest.importorskip("ray", reason="Ray is an optional extra (pip install -e '.[ray]'); make test installs it")

pytestmark = needs_shared
PER_CLASS = 60  # 120 real photos (+ 9 broken files): CI time


@pytest.fixture(scope="module")
def local_ray():
    """A new local instance (as `--ray` with no ADDRESS starts), sized for CI: 2 CPUs, a 100 MB object store."""
    ray.init(address="local", num_cpus=2, object_store_memory=100 * 2**20, include_dashboard=False, logging_level="WARNING")
    yield
    ray.shutdown()


@pytest.fixture(scope="module")
def photos(tmp_path_factory):
    """120 real photos of cats and dogs and one file of each kind of breakage; {name: reason words}."""
    root = tmp_path_factory.mktemp("ray_photos")
    data = copy_photos(root / "data", kaggle_names("cat", range(PER_CLASS)) + kaggle_names("dog", range(PER_CLASS)))
    return data, make_bad_files(data, TRAIN / "cat.1.jpg")


def _rows(csv_path):
    with open(csv_path, newline="") as f:
        return list(csv.reader(f))


def test_features_on_ray_equal_single_process_and_resume(local_ray, photos, tmp_path, capsys, monkeypatch):
    data, bad = photos
    single, on_ray = tmp_path / "single" / "f.h5", tmp_path / "ray" / "f.h5"
    assert main(["features", str(data), "--out", str(single)]) == 0
    capsys.readouterr()
    assert main(["features", str(data), "--out", str(on_ray), "--ray", "--workers", "2"]) == 0
    printed = capsys.readouterr().out
    a, b = load_features(single), load_features(on_ray)  # what `catdog train` reads
    assert len(b.names) == 2 * PER_CLASS and b.names == a.names and b.ids == a.ids
    assert np.array_equal(b.labels, a.labels)
    assert np.abs(b.features - a.features).max() <= 1e-4
    for key in ("backbone", "weights", "image_size", "complete", "data_fingerprint", "data_dir"):
        assert b.attrs[key] == a.attrs[key], key
    # every broken file named when found and listed in rejected.csv, exactly as without Ray
    rejected = _rows(on_ray.parent / "f.rejected.csv")  # beside f.h5: NAME.rejected.csv
    assert rejected == _rows(single.parent / "f.rejected.csv")
    reasons = {row[0].rsplit("/", 1)[-1]: row[1] for row in rejected[1:]}
    assert reasons.keys() == bad.keys()
    for name, words in bad.items():
        assert words in reasons[name] and f"skipped {data / name}" in printed
    assert f"{2 * PER_CLASS} photos in {on_ray} ({2 * PER_CLASS} computed" in printed

    # resumable: a run killed after 70 committed rows computes the rest, on Ray, into the same file;
    # the photos' cache keys taken by Ray tasks this time (as where the driver's stats are slow)
    with h5py.File(on_ray, "a") as f:
        f.attrs["rows"], f.attrs["complete"] = 70, False
    monkeypatch.setattr(distributed, "KEYS_ON_RAY_AFTER_S", 0.0)
    monkeypatch.setattr(distributed, "KEYS_PROBE", 16)
    cache_keys, calls = distributed.cache_keys, []
    monkeypatch.setattr(distributed, "cache_keys", lambda ray, samples, workers: calls.append(len(samples)) or cache_keys(ray, samples, workers))
    assert main(["features", str(data), "--out", str(on_ray), "--ray"]) == 0
    assert f"({2 * PER_CLASS - 70} computed" in capsys.readouterr().out
    assert calls == [len(scan(data)[0]) - 16]  # all but the probed photos' keys came from Ray
    resumed = load_features(on_ray)
    assert resumed.names == a.names and np.abs(resumed.features - a.features).max() <= 1e-4
    # a finished file is not recomputed; one of another input size is refused, before Ray runs
    assert main(["features", str(data), "--out", str(on_ray), "--ray"]) == 0
    assert f"(0 computed, {2 * PER_CLASS} from cache" in capsys.readouterr().out
    assert main(["features", str(data), "--out", str(on_ray), "--ray", "--image-size", "256"]) == 2
    assert "holds mobilenet_v2 features" in capsys.readouterr().err


def test_cache_keys_on_ray_equal_the_drivers(local_ray, photos, tmp_path):
    """The listing's per-file share on Ray tasks: every photo's key as `Sample.cache_key` gives it,
    in sample order, across several key batches; a file gone since the listing gets "" (its decode
    then names it)."""
    data, _ = photos
    samples, _ = scan(data)
    gone = copy_photos(tmp_path / "gone", ["cat.0.jpg"])
    samples = samples + scan(gone)[0]
    (gone / "cat.0.jpg").unlink()
    expected = [s.cache_key for s in samples[:-1]] + [""]
    assert distributed.cache_keys(ray, samples, workers=2) == expected
    assert len(samples) > 3 * 32
    original = distributed.KEY_BATCH
    try:
        distributed.KEY_BATCH = 32  # several blocks and tasks, reassembled in order
        assert distributed.cache_keys(ray, samples, workers=2) == expected
    finally:
        distributed.KEY_BATCH = original


def test_predict_on_ray_writes_the_same_submission(local_ray, subset_run, tmp_path, capsys):
    data = copy_photos(tmp_path / "test", [f"{n}.jpg" for n in range(1, 101)], src=TEST)
    make_bad_files(data, TEST / "1.jpg")
    single, on_ray = tmp_path / "single" / "submission.csv", tmp_path / "ray" / "submission.csv"
    # --tta: the Ray actor averages each photo with its mirror image as predict_images does
    assert main(["predict", str(subset_run), str(data), "--out", str(single), "--tta"]) == 0
    assert main(["predict", str(subset_run), str(data), "--out", str(on_ray), "--ray", "--tta"]) == 0
    said = [line for line in capsys.readouterr().out.splitlines() if line.startswith("submission:")]
    assert len(said) == 2 and all("label = P(dog), mean of each photo and its mirror image (--tta)" in line for line in said), said
    rows = _rows(on_ray)
    # predict needs no label: kitten_5000.jpg, a photo named as no Kaggle file is, is predicted too
    assert len(rows) == 102 and rows[1][0] == "1" and rows[-1][0] == "kitten_5000"
    assert on_ray.read_text() == single.read_text()
    assert _rows(on_ray.parent / "submission.rejected.csv") == _rows(single.parent / "submission.rejected.csv")


def test_workers_without_ray_and_ray_missing_are_one_line_errors(photos, tmp_path, capsys, monkeypatch):
    data, _ = photos
    assert main(["features", str(data), "--out", str(tmp_path / "f.h5"), "--workers", "2"]) == 2
    assert "--workers 2: sets the Ray actor pool; add --ray" in capsys.readouterr().err
    monkeypatch.setitem(sys.modules, "ray", None)  # as if the extra were not installed
    assert main(["features", str(data), "--out", str(tmp_path / "f.h5"), "--ray"]) == 2
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and "pip install -e '.[ray]'" in err
    assert not (tmp_path / "f.h5").exists()


def test_a_head_address_where_nothing_listens_is_one_line_at_once(photos, tmp_path, capsys):
    """ray.init on a HOST:PORT with nothing listening retried for minutes, printing its C++
    client's warnings; now one line within seconds."""
    import socket
    import time

    with socket.socket() as s:  # a port that was free a moment ago: nothing listens there
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    data, _ = photos
    start = time.perf_counter()
    assert main(["features", str(data), "--out", str(tmp_path / "f.h5"), "--ray", f"127.0.0.1:{port}"]) == 2
    err = capsys.readouterr().err.strip()
    assert time.perf_counter() - start < 30 and err.count("\n") == 0, err
    assert err.startswith(f"catdog: error: --ray 127.0.0.1:{port}: nothing answers there (Connection refused); start the cluster's head")


def test_ray_cli_starts_its_own_instance_and_is_quiet_unless_verbose(photos, tmp_path):
    """`catdog features --ray` as a user runs it (a new process, no Ray running): it starts a local
    instance, names the broken files and prints no Ray, LiteRT or TensorFlow log line; --verbose
    shows them (so the counter does see Ray's lines)."""
    data, bad = photos
    # the lines, not the number of photos, matter here: 24 photos and every broken file (CI time)
    some = copy_photos(tmp_path / "some", [*sorted(p.name for p in data.glob("*.jpg") if p.name not in bad)[:24], *bad], data)
    quiet = catdog_cli("features", str(some), "--out", str(tmp_path / "quiet.h5"), "--ray", "--workers", "1")
    assert quiet.returncode == 0, quiet.output
    assert library_lines(quiet.output) == [], library_lines(quiet.output)[:5]
    assert "features: 24 photos in" in quiet.output and f"{len(bad)} rejected" in quiet.output
    few = copy_photos(tmp_path / "few", sorted(p.name for p in data.glob("*.jpg"))[:8], data)
    loud = catdog_cli("features", str(few), "--out", str(tmp_path / "loud.h5"), "--ray", "--workers", "1", "--verbose")
    assert loud.returncode == 0, loud.output
    assert any("pid=" in line for line in library_lines(loud.output)), loud.output[-3000:]  # a worker's LiteRT notice


def test_sigterm_stops_features_on_ray_in_one_line_and_the_run_resumes(photos, tmp_path):
    """SIGTERM (kill, timeout, docker stop) to `catdog features --ray` while its actors load: Ray's
    own handler aborted the driver with a C++ crash dump (exit 134) and left its local instance to
    die with it. Now the command shuts Ray down, says how to resume in one line, exits 143, and
    leaves no process of its own behind; the same command then finishes. A real process, real Ray."""
    import os
    import signal
    import subprocess
    import threading
    import time

    from conftest import REPO, process_group_ends

    data, bad = photos
    out = tmp_path / "f.h5"
    command = [sys.executable, "-m", "catdog.cli", "features", str(data), "--out", str(out), "--ray", "--workers", "1"]
    env = {k: v for k, v in os.environ.items() if k not in ("TF_CPP_MIN_LOG_LEVEL", "TQDM_DISABLE")}
    proc = subprocess.Popen(command, cwd=REPO, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, start_new_session=True)
    said = bytearray()
    reader = threading.Thread(target=lambda: [said.extend(chunk) for chunk in iter(lambda: proc.stdout.read1(4096), b"")], daemon=True)
    reader.start()
    deadline = time.monotonic() + 180
    while proc.poll() is None and b"on Ray (" not in said and time.monotonic() < deadline:
        time.sleep(0.05)  # the bar: Ray is up, the actors load their model
    assert proc.poll() is None, f"ended before it could be stopped:\n{said.decode(errors='replace')[-3000:]}"
    proc.send_signal(signal.SIGTERM)  # to the command alone, as kill PID sends it
    try:
        proc.wait(timeout=60)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        pytest.fail(f"still running 60 s after SIGTERM:\n{said.decode(errors='replace')[-3000:]}")
    reader.join(10)
    text = said.decode(errors="replace")
    assert proc.returncode == 143, f"exit {proc.returncode}:\n{text[-3000:]}"
    assert text.rstrip().endswith("catdog: terminated; run the same command again to resume"), text[-3000:]
    assert "SIGTERM received" not in text and "Traceback" not in text, text[-3000:]
    # Ray's own processes (GCS, raylet, the actor), started by the command
    assert process_group_ends(proc.pid), "a process the command started was still running 30 s after it ended"
    again = catdog_cli(*command[3:])
    assert again.returncode == 0 and f"features: {PER_CLASS * 2} photos in" in again.output, again.output[-3000:]
