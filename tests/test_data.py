"""Stage 1: layouts, decoding of real photos in every colour mode, and every kind of bad input."""

from __future__ import annotations

import csv
import io
import os
import pickle
import shutil
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from tools.badfiles import make_bad_files
from catdog.data import IMAGE_KINDS, ImageError, ImageKind, class_label, decode, open_rgb, scan
from catdog.errors import CatdogError
from conftest import TEST, TRAIN, copy_photos, kaggle_names, needs_shared


@needs_shared
def test_scan_kaggle_train_layout_labels_every_photo():
    samples, rejections = scan(TRAIN)
    assert len(samples) == 2002 and rejections == []
    labels = np.array([s.label for s in samples])
    assert (labels == 0).sum() == 1001 and (labels == 1).sum() == 1001
    by_name = {s.name: s for s in samples}
    assert by_name["cat.7.jpg"].label == 0 and by_name["cat.7.jpg"].id == "cat.7"
    assert by_name["dog.1000.jpg"].label == 1


@needs_shared
def test_scan_kaggle_test_layout_is_unlabelled_with_numeric_ids():
    samples, _ = scan(TEST)
    assert len(samples) == 500
    assert all(s.label is None for s in samples)
    assert [s.id for s in samples[:3]] == ["1", "2", "3"]  # natural order, not 1, 10, 100


@needs_shared
def test_class_folders_layout(tmp_path):
    for label in ("cat", "dog"):
        (tmp_path / label).mkdir()
        for n in range(3):
            shutil.copy(TRAIN / f"{label}.{n}.jpg", tmp_path / label / f"photo_{n}.jpg")
    (tmp_path / "stray.jpg").write_bytes((TRAIN / "cat.0.jpg").read_bytes())
    samples, rejections = scan(tmp_path)
    assert [(s.name, s.label) for s in samples[:3]] == [(f"cat/photo_{n}.jpg", 0) for n in range(3)]
    assert [s.label for s in samples[3:]] == [1, 1, 1]
    assert len(rejections) == 1 and "outside the cat/ and dog/" in rejections[0].reason


@needs_shared
@pytest.mark.parametrize("mode", ["L", "P", "RGBA", "CMYK", "I;16", "LA"])
def test_decode_converts_every_colour_mode_to_rgb(tmp_path, mode):
    src = Image.open(TRAIN / "dog.3.jpg").convert("RGB")
    if mode == "I;16":
        im = Image.fromarray(np.asarray(src.convert("L"), np.uint16) * 256)
    else:
        im = src.convert(mode)
    path = tmp_path / ("x.jpg" if mode in ("L", "CMYK") else "x.png")
    im.save(path)
    out = decode(path)
    assert out.shape == (224, 224, 3) and out.dtype == np.uint8
    if mode in ("L", "I;16", "LA"):
        assert np.array_equal(out[..., 0], out[..., 1]) and np.array_equal(out[..., 1], out[..., 2])
    # the photo survives conversion: correlation with the RGB decode stays high
    reference = decode(TRAIN / "dog.3.jpg").astype(float).mean(-1)
    assert np.corrcoef(out.astype(float).mean(-1).ravel(), reference.ravel())[0, 1] > 0.9


@needs_shared
def test_a_16_bit_gray_png_keeps_its_brightness(tmp_path):
    """16-bit gray was stretched by the photo's own maximum: a dark photo (values up to 1020 of
    65535) decoded as bright as a full-range one, while the phones draw it into 8 bits (÷257)."""
    gray = np.asarray(Image.open(TRAIN / "dog.3.jpg").convert("L"), np.uint16)
    Image.fromarray(gray * 257).save(tmp_path / "full.png")  # 0..255 spread over 0..65535
    Image.fromarray(gray * 4).save(tmp_path / "dark.png")
    Image.fromarray(gray.astype(np.uint8)).save(tmp_path / "eight.png")
    assert np.array_equal(decode(tmp_path / "full.png"), decode(tmp_path / "eight.png"))
    dark = decode(tmp_path / "dark.png")
    assert dark.max() <= 4 and dark.mean() > 0.5  # 1020 / 257 ≈ 4 at most (it was 255, its own maximum)


@needs_shared
def test_decode_squashes_non_square_photos_whole():
    path = TRAIN / "cat.2.jpg"
    w, h = Image.open(path).size
    assert w != h
    out = decode(path)
    expected = np.asarray(Image.open(path).convert("RGB").resize((224, 224), Image.BILINEAR))
    assert np.array_equal(out, expected)


@needs_shared
def test_every_bad_file_gets_its_reason(tmp_path):
    cases = make_bad_files(tmp_path, TRAIN / "cat.1.jpg")
    samples, rejections = scan(tmp_path)
    reasons = {r.path.name: r.reason for r in rejections}
    for sample in samples:
        with pytest.raises(ImageError) as err:
            decode(sample.path)
        reasons[sample.path.name] = str(err.value)
    assert set(reasons) == set(cases)
    for name, words in cases.items():
        assert words in reasons[name], (name, reasons[name])
        assert "\n" not in reasons[name]


@needs_shared
def test_every_bad_file_raises_its_kind_and_the_kind_survives_pickling(tmp_path):
    """Each unusable photo (tools/badfiles.py, plus a damaged header, a missing file and the same
    files as bytes, as uploads) raises ImageError with the kind callers act on; pickled (as Ray
    ships it between processes) it keeps its message and kind."""
    make_bad_files(tmp_path, TRAIN / "cat.1.jpg")
    png = io.BytesIO()
    Image.open(TRAIN / "cat.1.jpg").save(png, format="PNG")
    png = png.getvalue()
    (tmp_path / "dog.5003.png").write_bytes(png[:29] + b"\0\0\0\0" + png[33:])  # IHDR checksum broken
    bmp = io.BytesIO()
    Image.open(TRAIN / "cat.1.jpg").save(bmp, format="BMP")
    bmp = bytearray(bmp.getvalue())
    bmp[18:22] = (-8).to_bytes(4, "little", signed=True)  # a negative width: Pillow reads 4294967288 (was "too big")
    (tmp_path / "cat.5005.bmp").write_bytes(bytes(bmp))
    expected = {
        "cat.5000.jpg": ImageKind.EMPTY,
        "dog.5000.jpg": ImageKind.UNDECODABLE,  # truncated JPEG: the header passes, the pixels do not
        "cat.5001.jpg": ImageKind.NOT_IMAGE,  # text named .jpg
        "dog.5001.jpg": ImageKind.FORMAT,  # PNG named .jpg
        "cat.5002.jpg": ImageKind.FORMAT,  # GIF
        "dog.5002.jpg": ImageKind.FORMAT,  # WebP named .jpg
        "cat.5003.png": ImageKind.TOO_BIG,  # 56 million pixels
        "dog.5003.jpg": ImageKind.TOO_BIG,  # 5,000 progressive scans
        "dog.5003.png": ImageKind.CORRUPT,
        "cat.5005.bmp": ImageKind.CORRUPT,
        "cat.5004.jpg": ImageKind.UNREADABLE,  # no such file
    }
    from_bytes = {"cat.5005.bmp", "dog.5000.jpg", "cat.5001.jpg", "cat.5002.jpg", "cat.5003.png", "dog.5003.png", "dog.5003.jpg"}  # no name to contradict
    seen = set()
    for name, kind in expected.items():
        sources = [tmp_path / name] + ([(tmp_path / name).read_bytes()] if name in from_bytes else [])
        for source in sources:
            with pytest.raises(ImageError) as err:
                decode(source) if isinstance(source, Path) else open_rgb(source)
            exc = err.value
            assert exc.kind == kind, (name, exc.kind, str(exc))
            assert "\n" not in str(exc) and "; " in str(exc)
            back = pickle.loads(pickle.dumps(exc))
            assert type(back) is ImageError and str(back) == str(exc) and back.kind == kind and back.args == exc.args
            seen.add(exc.kind)
    assert seen == set(IMAGE_KINDS) - {ImageKind.NO_PIXELS}  # Pillow's readers refuse a 0-pixel header first
    with pytest.raises(ValueError):
        ImageError("a reason; what to do", "no such kind")
    with pytest.raises(ImageError) as err:
        open_rgb(b"")
    assert err.value.kind == ImageKind.EMPTY and str(err.value) == "empty file (0 bytes); re-copy or delete it"


@needs_shared
def test_jpeg_scan_bombs_are_refused_before_decoding(tmp_path):
    """A progressive JPEG decodes scan by scan, each scan visiting every block, so many near-empty
    scans make a bomb (minutes of CPU in kilobytes). Up to MAX_JPEG_SCANS a JPEG decodes like any
    photo; one scan more and it is refused before decoding, as bytes and as a file; scan markers
    inside a metadata segment (an EXIF thumbnail's) are not counted."""
    import time

    from catdog.data import probe
    from catdog.data.ingest import jpeg_scans
    from catdog.data.limits import MAX_JPEG_SCANS
    from tools.mutations import insert_jpeg_segments, scan_bomb

    photo = (TRAIN / "cat.1.jpg").read_bytes()
    assert jpeg_scans(photo, 10**6) == 1
    at_limit, over = scan_bomb(photo, MAX_JPEG_SCANS, 512), scan_bomb(photo, MAX_JPEG_SCANS + 1, 512)
    assert jpeg_scans(at_limit, 10**6) == MAX_JPEG_SCANS and jpeg_scans(over, 10**6) == MAX_JPEG_SCANS + 1
    assert open_rgb(at_limit).size == (512, 512)
    bomb = tmp_path / "cat.1.jpg"
    bomb.write_bytes(scan_bomb(photo, 20_000, 4000))  # minutes of decoding were it let through
    for source in (over, bomb):
        start = time.perf_counter()
        for refuse in (open_rgb, probe):
            with pytest.raises(ImageError) as err:
                refuse(source)
            assert err.value.kind == ImageKind.TOO_BIG
            assert str(err.value) == (f"JPEG with over {MAX_JPEG_SCANS} scans (possible decompression bomb: each scan decodes "
                                      "the whole image again); re-save it as an ordinary JPEG")
        assert time.perf_counter() - start < 1
    wrapped = insert_jpeg_segments(photo, [(0xE1, b"Exif\0\0" + b"\xff\xda\x00\x08" * 10_000)])  # 10,000 scan markers in APP1
    assert jpeg_scans(wrapped, 10**6) == 1
    assert np.array_equal(np.asarray(open_rgb(wrapped)), np.asarray(open_rgb(photo)))


@needs_shared
def test_max_pixels_is_configurable(tmp_path):
    path = TRAIN / "cat.1.jpg"
    w, h = Image.open(path).size
    decode(path, max_pixels=w * h)
    with pytest.raises(ImageError, match="pixel limit") as err:
        decode(path, max_pixels=w * h - 1)
    assert err.value.kind == ImageKind.TOO_BIG


def test_missing_and_empty_folders_are_errors(tmp_path):
    with pytest.raises(CatdogError, match="no such folder"):
        scan(tmp_path / "nope")
    with pytest.raises(CatdogError, match="empty"):
        scan(tmp_path)


@needs_shared
def test_cli_run_goes_on_past_bad_files_and_lists_them(tmp_path, capsys):
    from catdog.cli import main

    data = copy_photos(tmp_path / "data", kaggle_names("cat", range(6)) + kaggle_names("dog", range(6)))
    cases = make_bad_files(data, TRAIN / "dog.1.jpg")
    out = tmp_path / "f.h5"
    assert main(["features", str(data), "--out", str(out)]) == 0
    printed = capsys.readouterr()
    with open(tmp_path / "f.rejected.csv") as f:
        rows = {row["file"].rsplit("/", 1)[-1]: row["reason"] for row in csv.DictReader(f)}
    assert set(rows) == set(cases)
    for name in cases:
        assert name in printed.out + printed.err
    from catdog.features import load_features

    fs = load_features(out)
    assert sorted(fs.names) == sorted(f"{label}.{n}.jpg" for label in ("cat", "dog") for n in range(6))


@needs_shared
def test_cli_exits_2_with_one_line_when_nothing_is_usable(tmp_path, capsys):
    from catdog.cli import main

    make_bad_files(tmp_path / "bad", TRAIN / "cat.1.jpg")
    (tmp_path / "empty").mkdir()
    for data in (tmp_path / "bad", tmp_path / "empty", tmp_path / "missing"):
        assert main(["features", str(data), "--out", str(tmp_path / "f.h5")]) == 2
        err = [line for line in capsys.readouterr().err.splitlines() if line.strip()]
        errors = [line for line in err if "error" in line]
        assert errors == [err[-1]] and err[-1].startswith("catdog: error: ") and str(data) in err[-1]


@needs_shared
def test_a_folder_whose_names_carry_no_label_is_read_whole(tmp_path):
    """Photos to predict and photos with neither need no label: a folder where no name says cat or
    dog (no cat.N.jpg, no cat/ or dog/ folder) is read whole, any name and subfolders included,
    each photo's id its name without the suffix; a folder with labelled names still turns the
    others away (a misnamed training photo must be seen, not silently unlabelled)."""
    photo = (TRAIN / "cat.0.jpg").read_bytes()
    mine = tmp_path / "mine"
    for name in ("IMG_0042.JPG", "trip/beach 1.jpeg", "trip/2024/x.png", "12.jpg", "notes.txt"):
        (mine / name).parent.mkdir(parents=True, exist_ok=True)
        (mine / name).write_bytes(photo if not name.endswith(".png") else _png(photo))
    samples, rejections = scan(mine)
    assert [(s.name, s.id, s.label) for s in samples] == [
        ("12.jpg", "12", None), ("IMG_0042.JPG", "IMG_0042", None), ("trip/2024/x.png", "trip/2024/x", None),
        ("trip/beach 1.jpeg", "trip/beach 1", None)]
    assert [(r.path.name, r.reason.split(";")[0]) for r in rejections] == [("notes.txt", "extension '.txt' is not an image type catdog reads (.jpg, .jpeg, .png, .bmp, .webp)")]
    (mine / "cat.1.jpg").write_bytes(photo)  # one labelled name: the Kaggle layout, as before
    samples, rejections = scan(mine)
    assert [s.name for s in samples] == ["12.jpg", "cat.1.jpg"]
    assert {r.path.name: r.reason.split(";")[0] for r in rejections} == {
        "IMG_0042.JPG": "name matches neither cat.N.jpg / dog.N.jpg nor N.jpg",
        "notes.txt": "extension '.txt' is not an image type catdog reads (.jpg, .jpeg, .png, .bmp, .webp)",  # was "rename it"
        "x.png": "in a subfolder of a Kaggle-layout folder", "beach 1.jpeg": "in a subfolder of a Kaggle-layout folder"}
    # where no label is needed (predict, cam), those photos are read all the same, unlabelled
    samples, rejections = scan(mine, any_name=True)
    assert [(s.name, s.id, s.label) for s in samples] == [
        ("12.jpg", "12", None), ("IMG_0042.JPG", "IMG_0042", None), ("cat.1.jpg", "cat.1", 0),
        ("trip/2024/x.png", "trip/2024/x", None), ("trip/beach 1.jpeg", "trip/beach 1", None)]
    assert [r.path.name for r in rejections] == ["notes.txt"]
    (mine / "cat").mkdir()  # class folders: a photo outside cat/ and dog/ as well
    (mine / "cat" / "a.jpg").write_bytes(photo)
    assert "outside the cat/ and dog/ class folders" in {r.path.name: r.reason for r in scan(mine)[1]}["12.jpg"]
    samples, rejections = scan(mine, any_name=True)
    assert [(s.name, s.label) for s in samples][:4] == [("12.jpg", None), ("IMG_0042.JPG", None), ("cat.1.jpg", None), ("cat/a.jpg", 0)]
    assert [r.path.name for r in rejections] == ["notes.txt"]


@needs_shared
def test_catdog_outputs_written_inside_data_are_one_line_each(tmp_path):
    """`catdog run DATA --out DATA/run` or `predict DATA --out DATA/predictions.csv`: the next read of
    DATA listed every file of the RUN_DIR as a rejected photo ("in a subfolder…", dozens of lines), and
    the CSV as a name to rename. A RUN_DIR, ART_DIR or inspect report is one line; a CSV is not a photo."""
    photo = (TRAIN / "cat.0.jpg").read_bytes()
    for data, photos in ((tmp_path / "kaggle", ("cat.1.jpg", "dog.1.jpg")), (tmp_path / "classes", ("cat/a.jpg", "dog/b.jpg"))):
        for name in photos:
            (data / name).parent.mkdir(parents=True, exist_ok=True)
            (data / name).write_bytes(photo)
        outputs = {"run/metrics.json": "{}", "run/model.keras": "", "run/artefacts/manifest.json": "{}", "run/artefacts/m.tflite": "",
                   "inspected/suspects.csv": "file\n", "inspected/report.html": "", "predictions.csv": "id,label\n"}
        for name, text in outputs.items():
            (data / name).parent.mkdir(parents=True, exist_ok=True)
            (data / name).write_text(text)
        samples, rejections = scan(data)
        assert sorted(s.name for s in samples) == sorted(photos)
        reasons = {r.path.relative_to(data).as_posix(): r.reason.split(";")[0] for r in rejections}
        assert reasons == {"run": "a catdog output folder (not photos)", "inspected": "a catdog output folder (not photos)",
                           "predictions.csv": "extension '.csv' is not an image type catdog reads (.jpg, .jpeg, .png, .bmp, .webp)"
                           if data.name == "kaggle" else "outside the cat/ and dog/ class folders"}, reasons


def _png(jpeg: bytes) -> bytes:
    buffer = io.BytesIO()
    Image.open(io.BytesIO(jpeg)).save(buffer, "PNG")
    return buffer.getvalue()


def test_linked_folders_are_followed_once(tmp_path):
    """A cat/ or dog/ link to a photo library is read (Path.rglob skipped it: "the folder is empty");
    a folder linked twice is read once; links below the top level are not followed (a link to /
    must not walk the machine)."""
    library = tmp_path / "library"
    for name in ("cats/a.jpg", "cats/b.jpg", "dogs/c.jpg"):
        (library / name).parent.mkdir(parents=True, exist_ok=True)
        (library / name).write_bytes(b"\xff\xd8\xff")  # scan reads names only
    data = tmp_path / "data"
    data.mkdir()
    (data / "cat").symlink_to(library / "cats")
    (data / "dog").symlink_to(library / "dogs")
    (library / "cats" / "again").symlink_to(data)  # a loop: data/cat/again/cat/again/...
    (library / "dogs" / "everything").symlink_to("/")  # a link further down is not followed
    samples, rejections = scan(data)
    assert [(s.name, s.label) for s in samples] == [("cat/a.jpg", 0), ("cat/b.jpg", 0), ("dog/c.jpg", 1)]
    assert rejections == []
    unlabelled = tmp_path / "unlabelled"
    unlabelled.mkdir()
    (unlabelled / "one").symlink_to(library / "dogs")
    (unlabelled / "two").symlink_to(library / "dogs")  # the same real folder: its photos once
    assert [s.name for s in scan(unlabelled)[0]] == ["one/c.jpg"]
    # a link at the top to a folder above DATA pulled in every photo beside DATA, without a word
    (unlabelled / "up").symlink_to("..")
    (tmp_path / "elsewhere.jpg").write_bytes(b"\xff\xd8\xff")
    samples, rejections = scan(unlabelled)
    assert [s.name for s in samples] == ["one/c.jpg"]
    assert [(r.path.name, r.reason) for r in rejections] == [
        ("up", f"a link to {tmp_path.resolve()}, which holds this folder: left out (it would pull in photos from outside)")]


def test_a_folder_that_cannot_be_read_is_one_line(tmp_path):
    """os.walk skips a folder it cannot list without a word: its photos were dropped silently. A
    folder that refuses listing even to root in a container (/proc/1/map_files), linked in, stands in."""
    locked = Path("/proc/1/map_files")
    try:
        os.listdir(locked)
        pytest.skip(f"{locked} can be listed here: no folder that refuses this user")
    except PermissionError:
        pass
    except OSError:
        pytest.skip(f"{locked} is not here")
    data = tmp_path / "data"
    data.mkdir()
    (data / "1.jpg").write_bytes(b"\xff\xd8\xff")
    (data / "locked").symlink_to(locked)
    samples, rejections = scan(data)
    assert [s.name for s in samples] == ["1.jpg"]
    assert [(r.path.name, r.reason) for r in rejections] == [
        ("locked", "cannot read the folder (Permission denied); its photos are left out: check its permissions")]


def test_one_row_per_id(tmp_path):
    """12.jpg and 12.png would be two submission rows of id 12: the second is rejected, named."""
    from catdog.data import unique_ids

    for name in ("12.jpg", "12.png", "7.jpg", "a/7.jpg"):
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / name).write_bytes(b"\xff\xd8\xff")
    kept, twins = unique_ids(scan(tmp_path)[0])
    assert [s.name for s in kept] == ["7.jpg", "12.jpg", "a/7.jpg"]
    assert [(r.path.name, r.reason) for r in twins] == [("12.png", "same id 12 as 12.jpg; rename or move one of them")]


@needs_shared
def test_a_panorama_wider_than_jpeg_allows_still_has_its_jpeg_view(tmp_path):
    """A 70,000 x 2 photo (under the pixel limit) ended `catdog evaluate --shifts` and `catdog run`'s
    shift views: JPEG cannot be wider than 65,535. Its JPEG view is made from it shrunk to fit."""
    from catdog.data import Sample, iter_batches

    wide = tmp_path / "wide.png"
    Image.open(TRAIN / "cat.0.jpg").convert("RGB").resize((70_000, 2)).save(wide)
    normal = TRAIN / "cat.1.jpg"
    samples = [Sample(wide, "wide.png", "wide", 0), Sample(normal, "cat.1.jpg", "cat.1", 0)]
    batches = list(iter_batches(samples, batch_size=2, size=64, view="jpeg"))
    assert [s.name for b in batches for s in b.samples] == ["wide.png", "cat.1.jpg"]
    assert sum(len(b.rejections) for b in batches) == 0 and batches[0].images.shape == (2, 64, 64, 3)


def test_outputs_that_cannot_be_written_are_refused_before_any_work(tmp_path, capsys):
    """An output under a file (a typo) was a traceback after every photo was predicted; now one line
    before anything runs, and an atomic write there is a one-line CatdogError."""
    from catdog.atomic import write_text
    from catdog.cli import main

    afile = tmp_path / "afile"
    afile.write_text("x")
    for args in (["predict", "RUN", "TEST", "--out", f"{afile}/sub.csv"], ["evaluate", "RUN", "DATA", "--json", f"{afile}/e.json"],
                 ["cam", "RUN", "x.jpg", "--out", f"{afile}/cams"], ["inspect", "DATA", "--out", f"{afile}/deep/report"]):
        with pytest.raises(SystemExit) as exit_:
            main(args)
        assert exit_.value.code == 2
        err = capsys.readouterr().err.strip().splitlines()[-1]
        assert f"{afile} is a file, so nothing can be made under it; give another path" in err, err
    with pytest.raises(CatdogError, match=f"{afile}/x.txt: cannot make its folder {afile}"):
        write_text(afile / "x.txt", "y")
    # the rejected list derived from --out (NAME.rejected.csv beside it) is checked as --out is, and the
    # list may not be the output itself (the submission overwrote it); no model is loaded first
    (tmp_path / "p" / "sub.rejected.csv").mkdir(parents=True)
    assert main(["predict", "RUN", "TEST", "--out", str(tmp_path / "p" / "sub.csv")]) == 2
    assert f"the list of rejected files, {tmp_path / 'p' / 'sub.rejected.csv'} is a folder" in capsys.readouterr().err
    assert main(["predict", "RUN", "TEST", "--out", str(tmp_path / "q.csv"), "--rejected", str(tmp_path / "q.csv")]) == 2
    assert f"--rejected {tmp_path / 'q.csv'}: the same file as the output" in capsys.readouterr().err


def test_a_run_dirs_own_rejected_list_is_not_overwritten(tmp_path):
    """`catdog predict RUN --out RUN/submission.csv` wrote its own rejected.csv over the run's (the
    training photos it could not use, which report.html counts)."""
    from catdog.contract import negatives_csv, rejected_beside

    run = tmp_path / "run"
    run.mkdir()
    # each output its own list: a shared rejected.csv was replaced by the next output into the folder
    assert rejected_beside(run / "submission.csv") == run / "submission.rejected.csv"  # not a RUN_DIR (yet)
    (run / "model.keras").write_bytes(b"")
    assert rejected_beside(run / "submission.csv") == run / "submission.rejected.csv"
    assert rejected_beside(run / "eval.json") == run / "eval.rejected.csv"
    # beside a feature file, rejected.csv is `catdog features`' list: evaluate --json there replaced it
    work = tmp_path / "work"
    work.mkdir()
    (work / "features.h5").write_bytes(b"")
    assert rejected_beside(work / "eval.json") == work / "eval.rejected.csv"
    assert negatives_csv(run / "rejected.csv") == run / "rejected_negatives.csv"
    assert negatives_csv(run / "eval.rejected.csv") == run / "eval.rejected_negatives.csv"


@needs_shared
def test_a_photo_that_cannot_be_opened_is_one_rejection_and_the_run_goes_on(tmp_path, capsys):
    """stat() needs no read permission, open() does: a photo without it stopped `catdog features` at
    the first batch (a PermissionError out of the header sniffing), losing the run. A sysfs file
    that refuses reading even to root (write-only, 4096 bytes) stands in for it, linked as a photo."""
    import glob

    from catdog.cli import main

    refused = [p for p in sorted(glob.glob("/sys/bus/*/uevent")) if not os.access(p, os.R_OK) or not _readable(p)]
    if not refused:
        pytest.skip("no file here that refuses reading to this user (Linux sysfs' write-only files)")
    data = copy_photos(tmp_path / "data", ["cat.1.jpg", "dog.1.jpg"])
    (data / "dog.2.jpg").symlink_to(refused[0])
    with pytest.raises(ImageError) as caught:
        open_rgb(data / "dog.2.jpg")
    assert caught.value.kind == ImageKind.UNREADABLE and "cannot read the file (Permission denied)" in str(caught.value)
    assert main(["features", str(data), "--out", str(tmp_path / "f.h5")]) == 0
    out = capsys.readouterr().out
    assert f"skipped {data / 'dog.2.jpg'}: cannot read the file (Permission denied)" in out
    from catdog.features import load_features

    assert load_features(tmp_path / "f.h5").names == ["cat.1.jpg", "dog.1.jpg"]


def _readable(path: str) -> bool:
    try:
        with open(path, "rb") as f:
            f.read(1)
        return True
    except OSError:
        return False


def test_what_only_looks_like_a_photo_is_one_rejection(tmp_path):
    """A broken link, a FIFO and a socket named like photos, in either layout, are each one
    rejection at the scan, which every command's photos come through (nothing opens them: reading
    a FIFO would wait forever), and the photos beside them are listed."""
    import socket

    for root, names in ((tmp_path / "kaggle", ("cat.1.jpg", "dog.2.jpg", "cat.3.jpg", "dog.4.jpg")),
                        (tmp_path / "classes", ("cat/1.jpg", "dog/2.jpg", "cat/3.jpg", "dog/4.jpg"))):
        photo, link, fifo, sock = (root / n for n in names)
        photo.parent.mkdir(parents=True, exist_ok=True)
        link.parent.mkdir(parents=True, exist_ok=True)
        photo.write_bytes(b"\xff\xd8\xff")  # scan reads names only
        link.symlink_to(root / "gone.jpg")
        os.mkfifo(fifo)
        with socket.socket(socket.AF_UNIX) as s:
            s.bind(str(sock))
        samples, rejections = scan(root)
        assert [s.path for s in samples] == [photo]
        reasons = {r.path: r.reason for r in rejections}
        for path, kind in ((link, "a broken link"), (fifo, "a FIFO"), (sock, "a socket")):
            assert reasons[path] == f"not a regular file ({kind}); put the photo itself here or move it out"


def test_odd_names_are_listed_in_order_or_refused_in_one_line(tmp_path):
    """A name whose bytes are not UTF-8 is one rejection (it has no text to be stored as); other
    names are kept as they are, in natural order; a folder whose own path is not UTF-8 is refused."""
    from catdog.data import shown

    photo = b"\xff\xd8\xff"  # scan reads names only
    for name in ["cat/10.jpg", "cat/9.jpg", "cat/1²2.jpg", 'dog/a\nb,"c".jpg', "dog/<b>.png"]:
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / name).write_bytes(photo)
    latin1 = tmp_path / "cat" / os.fsdecode(b"caf\xe9.jpg")
    latin1.write_bytes(photo)
    samples, rejections = scan(tmp_path)
    assert [s.name for s in samples] == ["cat/1²2.jpg", "cat/9.jpg", "cat/10.jpg", 'dog/<b>.png', 'dog/a\nb,"c".jpg']
    assert [(r.path, r.reason) for r in rejections] == [(latin1, "name is not valid UTF-8 (catdog keeps photo names as text); rename it")]
    assert rejections[0].line() == f"skipped {tmp_path}/cat/caf\\xe9.jpg: {rejections[0].reason}"
    assert shown(tmp_path / 'dog/a\nb,"c".jpg') == f'{tmp_path}/dog/a\\x0ab,"c".jpg'
    # Kaggle layout: ids are ASCII numbers; other scripts' digits fit neither layout
    kaggle = tmp_path / "kaggle"
    kaggle.mkdir()
    for name in ["cat.2.jpg", "cat.10.jpg", "\u0663.jpg", "12.jpg"]:
        (kaggle / name).write_bytes(photo)
    samples, rejections = scan(kaggle)
    assert [s.id for s in samples] == ["12", "cat.2", "cat.10"]
    assert [r.path.name for r in rejections] == ["\u0663.jpg"] and "matches neither" in rejections[0].reason
    # a submission lists them in the same order (it sorted other ids as text: cat.10 before cat.2;
    # an id of other digits, "1²" of "1²2.jpg" in a plain folder, was a ValueError)
    import numpy as np

    from catdog.training.inference import Predictions, submission_rows

    def order(folder, names):
        folder.mkdir()
        for name in names:
            (folder / name).write_bytes(photo)
        listed = scan(folder)[0]
        n = len(listed)
        return [r[0] for r in submission_rows(Predictions(listed, np.full((n, 2), 0.5), [], np.ones(n)), threshold=0.5)]

    assert order(tmp_path / "mixed", ["cat.10.jpg", "cat.2.jpg", "12.jpg", "3.jpg"]) == ["3", "12", "cat.2", "cat.10"]
    assert order(tmp_path / "plain", ["IMG_10.jpg", "IMG_2.jpg", "1\u00b2.jpg", "7.jpg"]) == ["7", "1\u00b2", "IMG_2", "IMG_10"]
    odd_root = tmp_path / os.fsdecode(b"d\xe9")
    odd_root.mkdir()
    (odd_root / "cat.1.jpg").write_bytes(photo)
    with pytest.raises(CatdogError, match=r"d\\xe9: the folder's path is not valid UTF-8"):
        scan(odd_root)


@needs_shared
def test_run_on_photos_with_no_label_stops_before_extracting(tmp_path, capsys):
    """Such a folder is read whole now; `catdog run` needs labels, and says so before extracting."""
    from catdog.cli import main

    data = copy_photos(tmp_path / "mine", ["1.jpg", "2.jpg"], src=TEST)
    (data / "2.jpg").rename(data / "IMG_2.jpg")
    assert main(["run", str(data), "--out", str(tmp_path / "run")]) == 2
    err = capsys.readouterr().err.strip()
    assert err == f"catdog: error: {data}: no photo is labelled cat or dog; name them cat.N.jpg / dog.N.jpg or put them in cat/ and dog/ folders"
    assert not (tmp_path / "run" / "features.h5").exists()
    # an unzipped train.zip: the Kaggle names one folder down. The line names that folder (it said
    # to name them cat.N.jpg, which they were)
    unzipped = tmp_path / "download"
    copy_photos(unzipped / "train", kaggle_names("cat", [1]) + kaggle_names("dog", [1]))
    assert main(["run", str(unzipped), "--out", str(tmp_path / "run")]) == 2
    assert capsys.readouterr().err.strip().endswith(
        f"(the cat.N.jpg / dog.N.jpg photos are in {unzipped / 'train'}: give that folder as DATA)")


def test_plural_and_capitalised_class_folders_are_class_folders(tmp_path):
    """cats/ and dogs/ (a common download layout) and Microsoft's PetImages/Cat and Dog were read as
    unlabelled photos, and training then said to use cat/ and dog/ folders."""
    for cat, dog in (("cats", "dogs"), ("Cat", "Dog"), ("cat", "Dogs")):
        root = tmp_path / f"{cat}_{dog}"
        for folder, name in ((cat, "a.jpg"), (dog, "b.jpg"), (dog, "c.jpg")):
            (root / folder).mkdir(parents=True, exist_ok=True)
            (root / folder / name).write_bytes(b"\xff\xd8\xff")  # scan reads names only
        (root / "readme.jpg").write_bytes(b"\xff\xd8\xff")
        samples, rejections = scan(root)
        assert sorted((s.name, s.label) for s in samples) == sorted([(f"{cat}/a.jpg", 0), (f"{dog}/b.jpg", 1), (f"{dog}/c.jpg", 1)])
        assert [r.path.name for r in rejections] == ["readme.jpg"]  # outside the class folders, as before
    assert [class_label(n) for n in ("cat", "CATS", "dog", "Dogs", "pets", "catalog", "s")] == [0, 0, 1, 1, None, None, None]


@needs_shared
def test_extraction_that_leaves_nothing_says_why(tmp_path, capsys):
    """--shift-photos 1 (none of each class) and an --exclude list naming every photo said "no usable
    photo (0 file(s) rejected)"."""
    from catdog.cli import main

    data = copy_photos(tmp_path / "data", kaggle_names("cat", [1, 2]) + kaggle_names("dog", [1, 2]))
    assert main(["features", str(data), "--out", str(tmp_path / "f.h5"), "--shift-photos", "1"]) == 2
    assert "--shift-photos 1: draws 0 photo(s) of each class, so none; give 2 or more" in capsys.readouterr().err
    (tmp_path / "all.txt").write_text("".join(f"{n}\n" for n in kaggle_names("cat", [1, 2]) + kaggle_names("dog", [1, 2])))
    assert main(["features", str(data), "--out", str(tmp_path / "f.h5"), "--exclude", str(tmp_path / "all.txt")]) == 2
    assert f"{data}: all 4 usable photo(s) are listed in --exclude {tmp_path / 'all.txt'}; nothing is left to extract" in capsys.readouterr().err
