"""Find the photos in a data folder, validate them, and decode them to model input.

Three layouts are understood:

* Kaggle: one flat folder of `cat.N.jpg` / `dog.N.jpg` (labelled) and `N.jpg` (unlabelled).
* Class folders: `DATA/cat/*` and `DATA/dog/*` (any file names, labelled by folder).
* Unlabelled: a folder where no name carries a label (photos to predict, photos with neither):
  every image under it, any name, subfolders included; Kaggle's test folder is one.

A linked folder directly in the data folder is followed (each real folder once); links further down are not.

Every file that cannot be used becomes a `Rejection` (path + one-line reason); the caller
reports it and goes on with the rest.
"""

from __future__ import annotations

import csv
import hashlib
import io
import mmap
import os
import re
import warnings
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image, UnidentifiedImageError

from catdog.atomic import open_atomic
from catdog.data.limits import EXTENSION_FORMATS, MAX_JPEG_SCANS, MAX_PIXELS
from catdog.errors import CatdogError

from catdog.contract import CAM_GRID, LABELS, ArtDir, RunDir  # noqa: E402  (LABELS re-exported: catdog.data.LABELS)
IMAGE_SIZE = 224


# ASCII digits only: Kaggle ids are numbers (re's \d would also take other scripts' digits).
_KAGGLE_LABELLED = re.compile(r"^(cat|dog)\.([0-9]+)\.([A-Za-z]+)$")
_KAGGLE_UNLABELLED = re.compile(r"^([0-9]+)\.([A-Za-z]+)$")
_CONTROL = re.compile(r"[\x00-\x1f\x7f]")


def class_label(folder: str) -> int | None:
    """The label a class folder's name gives: cat/, cats/, Cat/ (Microsoft's PetImages), Dogs/, ...
    -> 0 or 1; None for any other name. Plural and capitalised names were read as unlabelled
    photos, and the error then told the user to do what they had done."""
    name = folder.lower()
    return LABELS.index(name[:-1] if name.endswith("s") else name) if name in ("cat", "cats", "dog", "dogs") else None

# Pillow refuses images over 2 * MAX_IMAGE_PIXELS on open; we apply our own limit instead.
Image.MAX_IMAGE_PIXELS = None
# Pillow warns about each odd EXIF tag or metadata chunk of a hostile file; the reason that matters
# is the one-line rejection (a module filter, not catch_warnings, which is not thread-safe).
warnings.filterwarnings("ignore", category=UserWarning, module=r"PIL\.")

# The formats catdog parses, whatever the file is called; all of Pillow's other readers stay unused.
READ_FORMATS = tuple(dict.fromkeys(EXTENSION_FORMATS.values()))  # JPEG, PNG, BMP, WEBP
# (magic bytes, offset, format) to name what a file holds when no accepted reader takes it.
_MAGIC = (
    (b"\xff\xd8\xff", 0, "JPEG"),
    (b"\x89PNG\r\n\x1a\n", 0, "PNG"),
    (b"BM", 0, "BMP"),
    (b"WEBP", 8, "WEBP"),
    (b"GIF8", 0, "GIF"),
    (b"II*\x00", 0, "TIFF"),
    (b"MM\x00*", 0, "TIFF"),
    (b"ftypheic", 4, "HEIC"),
    (b"ftypheix", 4, "HEIC"),
    (b"ftypmif1", 4, "HEIF"),
    (b"ftypavif", 4, "AVIF"),
    (b"\x00\x00\x00\x0cjP  ", 0, "JPEG2000"),
    (b"8BPS", 0, "PSD"),
    (b"\x00\x00\x01\x00", 0, "ICO"),
    (b"%PDF", 0, "PDF"),
    (b"PK\x03\x04", 0, "ZIP"),
)


@dataclass(frozen=True)
class Sample:
    """One usable-looking photo: where it is, its stable id and its label (None if unknown)."""

    path: Path
    name: str  # path relative to the data folder, with '/' separators
    id: str  # Kaggle id ("12" for test/12.jpg, "cat.12" for train/cat.12.jpg) or name stem
    label: int | None  # 0 = cat, 1 = dog

    @property
    def cache_key(self) -> str:
        """Identity of the file's content for the feature cache: name, size and mtime."""
        st = self.path.stat()
        return f"{self.name}|{st.st_size}|{st.st_mtime_ns}"


@dataclass(frozen=True)
class Rejection:
    """A file that cannot be used, and why (one line, with what to do)."""

    path: Path
    reason: str

    def line(self) -> str:
        return f"skipped {shown(self.path)}: {self.reason}"


def shown(path: str | os.PathLike) -> str:
    """`path` as one printable line, whatever its name holds: bytes that are not UTF-8 become
    \\xNN (as Python's surrogateescape keeps them) and control characters (a newline) \\xNN."""
    text = os.fsencode(path).decode("utf-8", "backslashreplace")
    return _CONTROL.sub(lambda m: f"\\x{ord(m.group()):02x}", text)


class ImageKind:
    """What is wrong with an unusable image: the `kind` of an ImageError (plain strings, so they
    pickle, compare and print as themselves). See ImageError for what each one means."""

    TOO_BIG = "too_big"
    FORMAT = "format"
    NOT_IMAGE = "not_image"
    CORRUPT = "corrupt"
    UNDECODABLE = "undecodable"
    EMPTY = "empty"
    NO_PIXELS = "no_pixels"
    UNREADABLE = "unreadable"


IMAGE_KINDS = (
    ImageKind.TOO_BIG, ImageKind.FORMAT, ImageKind.NOT_IMAGE, ImageKind.CORRUPT,
    ImageKind.UNDECODABLE, ImageKind.EMPTY, ImageKind.NO_PIXELS, ImageKind.UNREADABLE,
)


class ImageError(Exception):
    """A file that is not a usable image: `str(exc)` is the one-line reason (with what to do),
    `exc.kind` says which of a fixed set of problems it is, for code that acts on it (the web
    server's HTTP status, the fault tools' categories) without reading the message:

    * ``too_big`` (ImageKind.TOO_BIG): a possible decompression bomb, refused before anything is
      decoded: the header declares more pixels than the limit, or a JPEG holds more scans than
      MAX_JPEG_SCANS (each scan decodes the whole image again).
    * ``format`` (FORMAT): the content is an image format catdog does not read (GIF, TIFF, HEIC,
      ...), or a format other than the one the file's extension names.
    * ``not_image`` (NOT_IMAGE): no known image format in the content at all (text, zeros, ...).
    * ``corrupt`` (CORRUPT): a JPEG/PNG/BMP/WebP reader took the file and failed on its header.
    * ``undecodable`` (UNDECODABLE): the header passed every check, but decoding the pixels
      failed (truncated or corrupt image data).
    * ``empty`` (EMPTY): 0 bytes.
    * ``no_pixels`` (NO_PIXELS): the header declares a width or height of 0.
    * ``unreadable`` (UNREADABLE): the file cannot be read (an OS error: missing, permissions).

    Pickles with message and kind (Ray ships it between processes).
    """

    def __init__(self, message: str, kind: str):
        if kind not in IMAGE_KINDS:
            raise ValueError(f"ImageError kind {kind!r} is not one of {', '.join(IMAGE_KINDS)}")
        super().__init__(message)
        self.kind = kind

    def __reduce__(self):
        return type(self), (str(self), self.kind), self.__dict__ or None


def scan(data_dir: str | os.PathLike, any_name: bool = False) -> tuple[list[Sample], list[Rejection]]:
    """List the photos in `data_dir` (Kaggle layout or class folders), sorted by name.

    Returns the samples whose names fit the layout and the files whose names do not. any_name: no
    label is needed (`predict`, `cam`): a photo whose name or place the layout cannot label (IMG_1.jpg
    beside cat.1.jpg, a file outside cat/ and dog/) is an unlabelled sample, as in a folder without labels.
    Raises CatdogError when the folder is missing, its path is not UTF-8, or it holds no file at all.
    """
    root = Path(data_dir)
    if not root.exists():
        raise CatdogError(f"{root}: no such folder; give a folder of cat.N.jpg/dog.N.jpg/N.jpg photos or cat/ and dog/ folders")
    if not root.is_dir():
        raise CatdogError(f"{root}: not a folder; give the folder that holds the photos")
    if _name_ok(str(root.resolve())):
        raise CatdogError(f"{shown(root.resolve())}: the folder's path is not valid UTF-8 (catdog records it as text); rename the folder")
    class_dirs = [d for d in _subfolders(root) if class_label(d.name) is not None]
    files, outputs, folders_refused = _files(root)
    if class_dirs:
        layout = _scan_class_folders
    elif any(path.parent == root and _KAGGLE_LABELLED.match(path.name) for path in files):
        layout = _scan_kaggle
    else:  # no name carries a label: the photos are unlabelled, whatever their names
        layout = _scan_unlabelled
    if any_name and layout is not _scan_unlabelled:
        samples, rejections = layout(root, files)
        unlabelled, still = _scan_unlabelled(root, [r.path for r in rejections if r.reason in _UNLABELLABLE])  # still: by extension, say
        samples += unlabelled
        rejections = [r for r in rejections if r.reason not in _UNLABELLABLE] + still
    else:
        samples, rejections = layout(root, files)
    # one line for a RUN_DIR, ART_DIR or inspect report written inside DATA, not one per file in it
    rejections += [Rejection(folder, "a catdog output folder (not photos); left out: move it out of the photo folder") for folder in outputs]
    rejections += [Rejection(folder, reason) for folder, reason in folders_refused]
    if not samples and not rejections:
        raise CatdogError(f"{root}: the folder is empty; put cat.N.jpg/dog.N.jpg/N.jpg photos or cat/ and dog/ folders in it")
    return sorted(samples, key=lambda s: natural_key(s.name)), rejections


def natural_key(name: str) -> list:
    """The order photos are listed in: cat.2 before cat.10 (`scan`, and a submission's ids)."""
    # Odd places hold the digit runs ("2" of "cat.2.jpg"), so numbers compare as numbers and
    # text as text; str.isdigit would also take "²", which int() refuses.
    return [int(t) if i % 2 else t for i, t in enumerate(re.split(r"([0-9]+)", name))]


# A subfolder holding one of these is catdog's own output (a RUN_DIR, an ART_DIR, an inspect report,
# `catdog cam`'s overlays)
_OUTPUT_MARKERS = {RunDir.METRICS, RunDir.FEATURES, ArtDir.MANIFEST, "suspects.csv", CAM_GRID}


def _files(folder: Path) -> tuple[list[Path], list[Path], list[tuple[Path, str]]]:
    """Every entry under `folder` but folders: files, and what only looks like one by name (a
    broken link, a FIFO, a socket), which `_not_a_file` turns away before anything opens it (a
    FIFO's read would wait forever). A linked folder directly in `folder` is followed (a `cat`
    link to a photo library), each real folder once; links further down are not (as before: a
    link there to /proc or / must not make the listing walk the machine). Second: the subfolders
    that are catdog's own outputs (`_OUTPUT_MARKERS`), whose files are left out. Third: the folders
    left out with their reason: one that cannot be read (its photos were dropped without a word),
    and a link in `folder` to `folder` itself or a folder above it (it pulled in photos from outside)."""
    found, outputs, seen, refused = [], [], set(), []
    real = Path(folder).resolve()

    def unreadable(exc: OSError) -> None:
        refused.append((Path(exc.filename or folder), f"cannot read the folder ({exc.strerror}); its photos are left out: check its permissions"))

    for dirpath, dirnames, filenames in os.walk(folder, followlinks=True, onerror=unreadable):
        here = Path(dirpath)
        st = os.stat(here)
        if (st.st_dev, st.st_ino) in seen:
            dirnames[:] = []
            continue
        seen.add((st.st_dev, st.st_ino))
        if here != Path(folder):
            if _OUTPUT_MARKERS & set(filenames):
                outputs.append(here)
                dirnames[:] = []
                continue
            dirnames[:] = [d for d in dirnames if not (here / d).is_symlink()]
        else:
            for d in [d for d in dirnames if (here / d).is_symlink()]:
                target = (here / d).resolve()
                if target == real or target in real.parents:
                    refused.append((here / d, f"a link to {target}, which holds this folder: left out (it would pull in photos from outside)"))
                    dirnames.remove(d)
        found.extend(here / name for name in filenames)
    return sorted(found), sorted(outputs), sorted(refused)


def _not_a_file(path: Path) -> str | None:
    if path.is_file():
        return None
    kind = "a broken link" if path.is_symlink() else "a FIFO" if path.is_fifo() else "a socket" if path.is_socket() else "a device"
    return f"not a regular file ({kind}); put the photo itself here or move it out"


def _name_ok(name: str) -> str | None:
    """Why `name` (the path in the data folder) cannot be a photo's name, or None. Names are
    text in the feature cache, the splits and every CSV; bytes that are not UTF-8 (a Latin-1 name
    copied from an old disk) have no text to be."""
    try:
        name.encode("utf-8")
    except UnicodeEncodeError:
        return "name is not valid UTF-8 (catdog keeps photo names as text); rename it"
    return None


def _extension_ok(path: Path) -> str | None:
    if path.suffix.lower() not in EXTENSION_FORMATS:
        return f"extension {path.suffix or '(none)'!r} is not an image type catdog reads ({', '.join(EXTENSION_FORMATS)}); convert it or move it out"
    return None


_IN_SUBFOLDER = "in a subfolder of a Kaggle-layout folder; move it up or use cat/ and dog/ class folders"
_UNNAMED = "name matches neither cat.N.jpg / dog.N.jpg nor N.jpg; rename it or use cat/ and dog/ class folders"
_OUTSIDE_CLASSES = "outside the cat/ and dog/ class folders; move it into one of them"
_UNLABELLABLE = {_IN_SUBFOLDER, _UNNAMED, _OUTSIDE_CLASSES}  # a photo all the same, where no label is needed (`scan`'s any_name)


def _scan_kaggle(root: Path, files: list[Path]) -> tuple[list[Sample], list[Rejection]]:
    samples, rejections = [], []
    for path in files:
        name = path.relative_to(root).as_posix()
        if path.parent != root:
            rejections.append(Rejection(path, _IN_SUBFOLDER))
            continue
        bad_name = _name_ok(name) or _not_a_file(path)
        if bad_name:
            rejections.append(Rejection(path, bad_name))
            continue
        bad_ext = _extension_ok(path)  # first: a predictions.csv left here is not a photo to rename
        if bad_ext:
            rejections.append(Rejection(path, bad_ext))
            continue
        labelled = _KAGGLE_LABELLED.match(path.name)
        unlabelled = _KAGGLE_UNLABELLED.match(path.name)
        if not (labelled or unlabelled):
            rejections.append(Rejection(path, _UNNAMED))
            continue
        if labelled:
            label = LABELS.index(labelled.group(1))
            samples.append(Sample(path, name, f"{labelled.group(1)}.{labelled.group(2)}", label))
        else:
            samples.append(Sample(path, name, unlabelled.group(1), None))
    return samples, rejections


def _scan_class_folders(root: Path, files: list[Path]) -> tuple[list[Sample], list[Rejection]]:
    samples, rejections = [], []
    for path in files:
        rel = path.relative_to(root)
        name = rel.as_posix()
        top = rel.parts[0] if len(rel.parts) > 1 else None
        if top is None or class_label(top) is None:
            rejections.append(Rejection(path, _OUTSIDE_CLASSES))
            continue
        bad = _name_ok(name) or _not_a_file(path) or _extension_ok(path)
        if bad:
            rejections.append(Rejection(path, bad))
            continue
        samples.append(Sample(path, name, Path(name).with_suffix("").as_posix(), class_label(top)))
    return samples, rejections


def _subfolders(root: Path) -> list[Path]:
    try:
        return sorted(p for p in root.iterdir() if p.is_dir())
    except OSError:
        return []


def no_labels(data_dir: str | os.PathLike) -> str:
    """What to say where DATA holds no labelled photo: how to label them, and where Kaggle names sit
    one folder down (an unzipped train.zip) the folder to give instead."""
    return ("no photo is labelled cat or dog; name them cat.N.jpg / dog.N.jpg or put them in cat/ and dog/ folders"
            + labels_hint(data_dir))


def labels_hint(data_dir: str | os.PathLike) -> str:
    """Where DATA holds no labelled photo: a hint when Kaggle names sit one folder down (an unzipped
    train.zip: DATA/train/cat.1.jpg), naming the folder to give instead; "" otherwise."""
    root = Path(data_dir)
    for sub in _subfolders(root):
        try:
            if any(_KAGGLE_LABELLED.match(p.name) for p in sub.iterdir()):
                return f" (the cat.N.jpg / dog.N.jpg photos are in {sub}: give that folder as DATA)"
        except OSError:
            continue
    return ""


def _scan_unlabelled(root: Path, files: list[Path]) -> tuple[list[Sample], list[Rejection]]:
    """Every image under `root`, unlabelled; its id is its name without the suffix ("12" for 12.jpg,
    as in the Kaggle layout; "trip/IMG_0042" for trip/IMG_0042.jpg)."""
    samples, rejections = [], []
    for path in files:
        name = path.relative_to(root).as_posix()
        bad = _name_ok(name) or _not_a_file(path) or _extension_ok(path)
        if bad:
            rejections.append(Rejection(path, bad))
            continue
        samples.append(Sample(path, name, Path(name).with_suffix("").as_posix(), None))
    return samples, rejections


def unique_ids(samples: list[Sample]) -> tuple[list[Sample], list[Rejection]]:
    """The samples whose id no earlier sample has, and a Rejection for each of the others (12.jpg
    and 12.png would be two rows of id 12 in a submission)."""
    first: dict[str, Sample] = {}
    kept, rejections = [], []
    for s in samples:
        if s.id in first:
            rejections.append(Rejection(s.path, f"same id {shown(s.id)} as {shown(first[s.id].name)}; rename or move one of them"))
        else:
            first[s.id] = s
            kept.append(s)
    return kept, rejections


def decode(path: str | os.PathLike, size: int = IMAGE_SIZE, max_pixels: int = MAX_PIXELS) -> np.ndarray:
    """Decode an image file to RGB uint8 of shape (size, size, 3).

    Resize policy: the whole photo is squashed to size x size (aspect ratio not kept, nothing
    cropped away, as the classic Kaggle solutions do) with Pillow's antialiased bilinear filter.
    EXIF orientation is applied; grayscale, palette, CMYK and alpha images become RGB (alpha
    composited over white). Raises ImageError with a one-line reason for an unusable file.
    """
    path = Path(path)
    return resize(open_rgb(path, max_pixels), size)


def open_rgb(source: str | os.PathLike | bytes, max_pixels: int = MAX_PIXELS) -> Image.Image:
    """Open, validate and fully decode an image (a file, or bytes such as an upload) as RGB.

    The content decides, never the name: only JPEG, PNG, BMP and WebP are parsed (Pillow's other
    decoders are never tried on untrusted bytes), and a file's extension must match its content.
    The pixel count in the header is checked against `max_pixels` before anything is decoded
    (decompression bombs are refused unread), so decoding holds at most about 9 bytes per
    allowed pixel (a palette image with transparency composited over white: P, RGBA and RGB,
    which Pillow keeps in 4 bytes a pixel). Unreadable EXIF is ignored (the
    photo is used unrotated). Raises ImageError with a one-line reason.
    """
    with _checked_header(source, max_pixels) as im:
        try:
            im.load()
            return _to_rgb(_oriented(im))
        except Exception as exc:
            raise ImageError(f"cannot decode ({_first_line(exc)}); the file is truncated or corrupt, re-copy or delete it", ImageKind.UNDECODABLE) from None


def probe(source: str | os.PathLike | bytes, max_pixels: int = MAX_PIXELS) -> tuple[int, int]:
    """(width, height) from the header alone, after every check `open_rgb` makes before decoding
    (format, name, pixel limit); raises ImageError as it does. Nothing is decoded."""
    with _checked_header(source, max_pixels) as im:
        return im.size


def _checked_header(source: str | os.PathLike | bytes, max_pixels: int) -> Image.Image:
    """The opened, not yet decoded image, once its header passed the checks; the caller closes it."""
    if isinstance(source, (bytes, bytearray)):
        n_bytes, fp, expected = len(source), io.BytesIO(source), None
    else:
        path = Path(source)
        try:
            n_bytes = path.stat().st_size
            with open(path, "rb") as f:  # stat needs no read permission: an unreadable photo stopped the whole run
                f.read(1)
        except OSError as exc:
            raise ImageError(f"cannot read the file ({exc.strerror}); check it exists and is readable", ImageKind.UNREADABLE) from None
        fp, expected = path, EXTENSION_FORMATS.get(path.suffix.lower())
    if n_bytes == 0:
        raise ImageError("empty file (0 bytes); re-copy or delete it", ImageKind.EMPTY)
    im = _open_header(fp, expected)
    try:
        content = "JPEG" if im.format == "MPO" else im.format  # multi-picture JPEG (many cameras)
        if expected and content != expected:
            raise ImageError(
                f"content is {content or 'unknown'} but the name says {expected}; rename it to match or re-encode it",
                ImageKind.FORMAT,
            )
        width, height = im.size
        if max(width, height) >= 2**31:  # no format stores a side that long: a negative size read unsigned (a BMP's)
            raise ImageError(f"its header declares {width}x{height} pixels, a side no format holds (a negative size read unsigned, "
                             "say): corrupt; re-encode or delete it", ImageKind.CORRUPT)
        if width * height > max_pixels:
            raise ImageError(
                f"{width}x{height} = {width * height:,} pixels is over the {max_pixels:,}-pixel limit "
                "(possible decompression bomb); downscale it or raise --max-pixels",
                ImageKind.TOO_BIG,
            )
        if width < 1 or height < 1:
            raise ImageError("image has no pixels; delete it", ImageKind.NO_PIXELS)
        if content == "JPEG":
            if isinstance(source, (bytes, bytearray)):
                scans = jpeg_scans(source, MAX_JPEG_SCANS + 1)
            else:  # mapped, not read: a huge file costs no memory
                with open(path, "rb") as f, mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_READ) as data:
                    scans = jpeg_scans(data, MAX_JPEG_SCANS + 1)
            if scans > MAX_JPEG_SCANS:
                raise ImageError(
                    f"JPEG with over {MAX_JPEG_SCANS} scans (possible decompression bomb: each scan decodes the whole "
                    "image again); re-save it as an ordinary JPEG",
                    ImageKind.TOO_BIG,
                )
    except BaseException:
        im.close()
        raise
    return im


# A marker after entropy-coded data: 0xFF followed by anything but a stuffed 0x00, a restart
# marker (RST0-7, which stays inside the scan) or another 0xFF (fill).
_NEXT_MARKER = re.compile(rb"\xff[^\x00\xd0-\xd7\xff]")


def jpeg_scans(data: bytes | mmap.mmap, stop: int) -> int:
    """The start-of-scan markers of a JPEG stream, counted up to `stop` (enough to refuse it).

    Walks the markers from SOI: segments are skipped by their length (an EXIF thumbnail's scans
    inside APP1 are not counted), a scan's entropy-coded data up to the next marker. Stops at EOI
    or at bytes that are not a marker, where the decoder will stop too."""
    i, scans = 2, 0
    while i + 4 <= len(data) and data[i] == 0xFF:
        marker = data[i + 1]
        if marker == 0xFF:  # fill byte before a marker
            i += 1
            continue
        if marker == 0xD9:  # EOI
            break
        if 0xD0 <= marker <= 0xD8 or marker == 0x01:  # standalone markers (RSTn, SOI, TEM): no length
            i += 2
            continue
        i += 2 + int.from_bytes(data[i + 2 : i + 4], "big")
        if marker == 0xDA:
            scans += 1
            found = _NEXT_MARKER.search(data, i) if scans < stop else None
            if found is None:
                break
            i = found.start()
    return scans


def _open_header(fp: io.BytesIO | Path, expected: str | None) -> Image.Image:
    """Parse the header with the readers of the formats catdog accepts; say why it failed."""
    try:
        return Image.open(fp, formats=READ_FORMATS)
    except UnidentifiedImageError:
        pass  # no accepted reader took it: say what it is, below
    except Exception as exc:  # a reader took it and failed (bad chunk, zlib bomb in metadata, ...)
        raise ImageError(
            f"corrupt {_sniff(fp) or 'image'} header ({_first_line(exc)}); the file is damaged, re-copy or re-export it", ImageKind.CORRUPT
        ) from None
    found = _sniff(fp)
    if found in READ_FORMATS:
        if isinstance(fp, io.BytesIO):
            fp.seek(0)
        try:  # its own reader, to get its reason (Image.open only says "cannot identify")
            Image.OPEN[found][0](fp, "").close()
            reason = "unreadable"
        except Exception as exc:
            reason = _first_line(exc)
        raise ImageError(f"corrupt {found} header ({reason}); the file is damaged, re-copy or re-export it", ImageKind.CORRUPT)
    if found:
        readable = ", ".join(READ_FORMATS)
        if expected:
            raise ImageError(f"content is {found} but the name says {expected}; catdog reads {readable}: re-encode it as JPEG", ImageKind.FORMAT)
        raise ImageError(f"content is {found}, not a format catdog reads ({readable}); re-export it as JPEG", ImageKind.FORMAT)
    raise ImageError("not an image (no known image format in its content); delete it or re-export it as JPEG", ImageKind.NOT_IMAGE)


def _sniff(fp: io.BytesIO | Path) -> str | None:
    """The image format named by the first bytes (magic numbers), or None."""
    if isinstance(fp, io.BytesIO):
        head = fp.getvalue()[:32]
    else:
        with open(fp, "rb") as f:
            head = f.read(32)
    for magic, offset, name in _MAGIC:
        if head[offset : offset + len(magic)] == magic:
            return name
    return None


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0][:200] if text else type(exc).__name__


_ORIENTATION_TRANSPOSE = {
    2: Image.Transpose.FLIP_LEFT_RIGHT,
    3: Image.Transpose.ROTATE_180,
    4: Image.Transpose.FLIP_TOP_BOTTOM,
    5: Image.Transpose.TRANSPOSE,
    6: Image.Transpose.ROTATE_270,
    7: Image.Transpose.TRANSVERSE,
    8: Image.Transpose.ROTATE_90,
}


def _oriented(im: Image.Image) -> Image.Image:
    """`im` turned upright by its EXIF Orientation (as ImageOps.exif_transpose); an unreadable
    EXIF block or an orientation outside 1..8 leaves it as stored, as phones' decoders do."""
    try:
        orientation = im.getexif().get(0x0112, 1)
    except Exception:
        return im
    method = _ORIENTATION_TRANSPOSE.get(orientation) if isinstance(orientation, int) else None
    return im.transpose(method) if method is not None else im


def _to_rgb(im: Image.Image) -> Image.Image:
    if im.mode == "RGB":
        return im
    if im.mode == "P":
        im = im.convert("RGBA")
    if im.mode in ("RGBA", "LA", "PA"):
        rgba = im.convert("RGBA")  # once, and used as its own mask (its alpha band): no extra copies
        background = Image.new("RGB", im.size, (255, 255, 255))
        background.paste(rgba, mask=rgba)
        return background
    if im.mode in ("I", "I;16", "I;16B", "I;16L", "F"):
        # 16-bit gray (PNG): 0..65535 to 0..255 as the phones draw it into 8 bits (÷257). It was
        # stretched by the photo's own maximum: a dark photo came out bright, unlike on the phone.
        arr = np.array(im, dtype=np.float64)
        arr /= 257.0  # in place: one float64 copy at a time
        im = Image.fromarray(np.clip(np.rint(arr, out=arr), 0, 255, out=arr).astype(np.uint8), mode="L")
    return im.convert("RGB")


def resize(im: Image.Image, size: int = IMAGE_SIZE) -> np.ndarray:
    """Squash an RGB Pillow image to (size, size, 3) uint8 (see `decode` for the policy)."""
    if im.size != (size, size):
        im = im.resize((size, size), Image.BILINEAR)
    return np.asarray(im, dtype=np.uint8)


def listed(name: str, names: set[str]) -> bool:
    """Whether a photo (relative name, e.g. "cat/x.jpg") is in `names`, by relative or file name."""
    return name in names or Path(name).name in names


def unlisted_note(names: set[str], photo_names: list[str], source: str) -> str | None:
    """A line naming the entries of an exclude list (`source`) that match no photo, or None: a typo,
    or a name written with DATA's folder in front, otherwise excluded nothing without a word."""
    known = set(photo_names) | {Path(n).name for n in photo_names}
    missing = sorted(n for n in names if n not in known)
    if not missing:
        return None
    return (f"note: {len(missing)} of the {len(names)} names in {source} match no photo (e.g. {shown(missing[0])}); "
            "give names relative to DATA (cat/x.jpg) or bare file names")


def write_rejections(csv_path: str | os.PathLike, rejections: list[Rejection]) -> Path:
    """Write `file,reason` rows (always with a header, even when empty), atomically."""
    csv_path = Path(csv_path)
    with open_atomic(csv_path, "w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(["file", "reason"])
        for r in rejections:
            writer.writerow([shown(r.path), r.reason])
    return csv_path


def fingerprint(names_and_sizes: list[tuple[str, int]]) -> str:
    """sha256 over the sorted `name:size` lines of the photos used: same data, same print."""
    h = hashlib.sha256()
    for name, n in sorted(names_and_sizes):
        h.update(f"{name}:{n}\n".encode())
    return h.hexdigest()


def sha256_file(path: str | os.PathLike, chunk: int = 1 << 20) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(chunk):
            h.update(block)
    return h.hexdigest()
