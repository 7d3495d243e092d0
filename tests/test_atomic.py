"""catdog.atomic: the final name holds the old file or the new one, never part of one: after an
error in the writer, after kill -9 of a real writing process, and under concurrent writers."""

from __future__ import annotations

import csv
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from catdog.atomic import open_atomic, staged, staged_dir, write_bytes, write_text
from catdog.data import Rejection, write_rejections
from conftest import REPO


def leftovers(folder):
    return sorted(p.name for p in folder.iterdir() if ".tmp-" in p.name or ".old-" in p.name)


def test_write_replaces_whole_files(tmp_path):
    path = tmp_path / "sub" / "a.json"
    write_text(path, "old")
    write_bytes(path, b"new")
    assert path.read_bytes() == b"new" and leftovers(path.parent) == []
    with pytest.raises(ValueError):
        with open_atomic(path, "w") as f:
            f.write("half")
            raise ValueError("the writer failed mid-file")
    assert path.read_text() == "new" and leftovers(path.parent) == []
    with pytest.raises(ValueError, match="not a write mode"):
        with open_atomic(path, "a"):
            pass


@pytest.mark.skipif(not Path("/proc/self").is_dir(), reason="needs Linux's /proc, where no file can be made")
def test_a_failed_write_names_the_file_asked_for_not_the_temporary_one():
    """The CLI prints an OSError as `FILE: reason`: it named `/proc/.sub.tmp-1a2b3c4d.csv`."""
    def package(path):  # a folder written whole (an .mlpackage)
        with staged_dir(path) as tmp:
            tmp.mkdir()

    for write in (lambda p: write_text(p, "x"), package):
        with pytest.raises(OSError) as err:
            write(Path("/proc/sub.csv"))
        assert err.value.filename == "/proc/sub.csv", err.value


def test_staged_keeps_the_suffix_for_writers_that_need_it(tmp_path):
    from PIL import Image

    with staged(tmp_path / "x.png") as tmp:
        assert tmp.suffix == ".png" and tmp.parent == tmp_path
        Image.new("RGB", (4, 4)).save(tmp)  # Pillow picks the format from the suffix
    assert Image.open(tmp_path / "x.png").format == "PNG" and leftovers(tmp_path) == []


def test_staged_dir_replaces_a_folder_whole(tmp_path):
    target = tmp_path / "m.mlpackage"
    for version in ("1", "2"):
        with staged_dir(target) as tmp:
            tmp.mkdir()
            (tmp / "weights.bin").write_text(version)
            if version == "1":
                (tmp / "only_in_1").write_text("x")
    assert sorted(p.name for p in target.iterdir()) == ["weights.bin"] and (target / "weights.bin").read_text() == "2"
    with pytest.raises(RuntimeError):
        with staged_dir(target) as tmp:
            tmp.mkdir()
            raise RuntimeError("export failed")
    assert (target / "weights.bin").read_text() == "2" and leftovers(tmp_path) == []


def test_rejected_csv_survives_kill_9_of_its_writer(tmp_path):
    """A real process writing a large rejected.csv is killed mid-write: the old file stays whole."""
    csv_path = tmp_path / "rejected.csv"
    write_rejections(csv_path, [Rejection(tmp_path / "old.jpg", "empty file (0 bytes); re-copy or delete it")])
    before = csv_path.read_bytes()
    writer = f"""
import sys, time
from pathlib import Path
import catdog.data.ingest as ingest
from catdog.data import Rejection
class Slow(list):
    def __iter__(self):
        for i, r in enumerate(list.__iter__(self)):
            if i == 5:
                sys.stdout.write("writing\\n"); sys.stdout.flush(); time.sleep(60)
            yield r
rows = Slow(Rejection(Path(f"x{{i}}.jpg"), "not an image; delete it") for i in range(100000))
ingest.write_rejections({str(csv_path)!r}, rows)
"""
    proc = subprocess.Popen([sys.executable, "-c", writer], cwd=REPO, stdout=subprocess.PIPE, text=True)
    assert proc.stdout.readline().strip() == "writing"
    assert any(".tmp-" in p.name for p in tmp_path.iterdir()), "no temporary file while writing"
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert csv_path.read_bytes() == before
    with open(csv_path, newline="") as f:
        assert [r["file"] for r in csv.DictReader(f)] == [str(tmp_path / "old.jpg")]


def test_concurrent_writers_never_mix(tmp_path):
    path = tmp_path / "manifest.json"
    versions = [str(i) * 200_000 for i in range(8)]
    seen, stop = set(), threading.Event()

    def read():
        while not stop.is_set():
            if path.exists():
                seen.add(path.read_text())

    reader = threading.Thread(target=read)
    reader.start()
    threads = [threading.Thread(target=lambda v=v: [write_text(path, v) for _ in range(5)]) for v in versions]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    time.sleep(0.05)
    stop.set()
    reader.join()
    assert seen and seen <= set(versions), "a reader saw a mixed or partial file"
    assert path.read_text() in versions and leftovers(tmp_path) == []
    assert os.stat(path).st_size == 200_000


def test_a_long_name_and_an_unwritable_folder(tmp_path):
    """A name near the 255-byte limit failed on its hidden temporary twin (`.NAME.tmp-XXXX`, 14 bytes
    more), naming that twin; an unwritable place is refused before any work by `check_writable`
    (parity measured every artefact, then could not write parity.json and lost the numbers)."""
    from catdog.atomic import check_writable
    from catdog.errors import CatdogError

    long = tmp_path / ("a" * 248 + ".h5")
    write_bytes(long, b"x")
    assert long.read_bytes() == b"x" and [p.name for p in tmp_path.iterdir()] == [long.name]
    check_writable(tmp_path / "parity.json")
    assert not (tmp_path / "parity.json").exists() and [p.name for p in tmp_path.iterdir()] == [long.name]
    unwritable = Path("/proc/1")  # not writable even by root
    if not unwritable.is_dir():
        pytest.skip("no /proc here")
    with pytest.raises(CatdogError, match=r"^/proc/1/parity.json: cannot be written \("):
        check_writable(unwritable / "parity.json")


def test_a_link_is_written_through(tmp_path):
    """An output that is a link (`--out latest.csv` pointing at a dated file) had the link itself
    replaced by a file, the file it pointed at left as it was; as root, `--out /dev/stdout` replaced
    that link for every process. The file the link points at is written, the link kept."""
    from catdog.atomic import write_text

    real = tmp_path / "runs" / "2026-12-07.csv"
    real.parent.mkdir()
    real.write_text("old\n")
    link = tmp_path / "latest.csv"
    link.symlink_to(real)
    write_text(link, "new\n")
    assert link.is_symlink() and real.read_text() == "new\n" and link.read_text() == "new\n"
    assert [p.name for p in real.parent.iterdir()] == ["2026-12-07.csv"]
