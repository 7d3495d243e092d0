"""Find the photos in a data folder, validate them, and decode them to model input.

Two layouts are understood:

* Kaggle: one flat folder of `cat.N.jpg` / `dog.N.jpg` (labelled) and `N.jpg` (unlabelled).
* Class folders: `DATA/cat/*` and `DATA/dog/*` (any file names, labelled by folder).

Every file that cannot be used becomes a `Rejection` (path + one-line reason); the caller
reports it and goes on with the rest.
"""

from __future__ import annotations

import csv
import hashlib
import io
import os
import re
import warnings
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image, ImageOps

from catdog.data.limits import MAX_PIXELS
from catdog.errors import CatdogError

LABELS = ("cat", "dog")
IMAGE_SIZE = 224

# File extension -> the Pillow format its content must have.
EXTENSION_FORMATS = {
    ".jpg": "JPEG",
    ".jpeg": "JPEG",
    ".png": "PNG",
    ".bmp": "BMP",
    ".webp": "WEBP",
}

_KAGGLE_LABELLED = re.compile(r"^(cat|dog)\.(\d+)\.([A-Za-z]+)$")
_KAGGLE_UNLABELLED = re.compile(r"^(\d+)\.([A-Za-z]+)$")

# Pillow refuses images over 2 * MAX_IMAGE_PIXELS on open; we apply our own limit instead.
Image.MAX_IMAGE_PIXELS = None


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
        return f"skipped {self.path}: {self.reason}"


class ImageError(Exception):
    """A file that is not a usable image; the message is the one-line reason."""


def scan(data_dir: str | os.PathLike) -> tuple[list[Sample], list[Rejection]]:
    """List the photos in `data_dir` (Kaggle layout or class folders), sorted by name.

    Returns the samples whose names fit the layout and the files whose names do not.
    Raises CatdogError when the folder is missing or holds no file at all.
    """
    root = Path(data_dir)
    if not root.exists():
        raise CatdogError(f"{root}: no such folder; give a folder of cat.N.jpg/dog.N.jpg/N.jpg photos or cat/ and dog/ folders")
    if not root.is_dir():
        raise CatdogError(f"{root}: not a folder; give the folder that holds the photos")
    class_dirs = [root / label for label in LABELS if (root / label).is_dir()]
    samples, rejections = (_scan_class_folders if class_dirs else _scan_kaggle)(root)
    if not samples and not rejections:
        raise CatdogError(f"{root}: the folder is empty; put cat.N.jpg/dog.N.jpg/N.jpg photos or cat/ and dog/ folders in it")
    return sorted(samples, key=lambda s: _natural_key(s.name)), rejections


def _natural_key(name: str) -> list:
    return [int(t) if t.isdigit() else t for t in re.split(r"(\d+)", name)]


def _files(folder: Path) -> list[Path]:
    return sorted(p for p in folder.rglob("*") if p.is_file())


def _extension_ok(path: Path) -> str | None:
    if path.suffix.lower() not in EXTENSION_FORMATS:
        return f"extension {path.suffix or '(none)'!r} is not an image type catdog reads ({', '.join(EXTENSION_FORMATS)}); convert it or move it out"
    return None


def _scan_kaggle(root: Path) -> tuple[list[Sample], list[Rejection]]:
    samples, rejections = [], []
    for path in _files(root):
        name = path.relative_to(root).as_posix()
        if path.parent != root:
            rejections.append(Rejection(path, "in a subfolder of a Kaggle-layout folder; move it up or use cat/ and dog/ class folders"))
            continue
        labelled = _KAGGLE_LABELLED.match(path.name)
        unlabelled = _KAGGLE_UNLABELLED.match(path.name)
        if not (labelled or unlabelled):
            rejections.append(Rejection(path, "name matches neither cat.N.jpg / dog.N.jpg nor N.jpg; rename it or use cat/ and dog/ class folders"))
            continue
        bad_ext = _extension_ok(path)
        if bad_ext:
            rejections.append(Rejection(path, bad_ext))
            continue
        if labelled:
            label = LABELS.index(labelled.group(1))
            samples.append(Sample(path, name, f"{labelled.group(1)}.{labelled.group(2)}", label))
        else:
            samples.append(Sample(path, name, unlabelled.group(1), None))
    return samples, rejections


def _scan_class_folders(root: Path) -> tuple[list[Sample], list[Rejection]]:
    samples, rejections = [], []
    for path in _files(root):
        rel = path.relative_to(root)
        name = rel.as_posix()
        top = rel.parts[0] if len(rel.parts) > 1 else None
        if top not in LABELS:
            rejections.append(Rejection(path, "outside the cat/ and dog/ class folders; move it into one of them"))
            continue
        bad_ext = _extension_ok(path)
        if bad_ext:
            rejections.append(Rejection(path, bad_ext))
            continue
        samples.append(Sample(path, name, Path(name).with_suffix("").as_posix(), LABELS.index(top)))
    return samples, rejections


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

    The content decides, never the name: a file's extension must match its content; bytes are
    taken for whatever image format they hold. Raises ImageError with a one-line reason.
    """
    if isinstance(source, (bytes, bytearray)):
        n_bytes, fp, expected = len(source), io.BytesIO(source), None
    else:
        path = Path(source)
        try:
            n_bytes = path.stat().st_size
        except OSError as exc:
            raise ImageError(f"cannot read the file ({exc.strerror}); check it exists and is readable") from None
        fp, expected = path, EXTENSION_FORMATS.get(path.suffix.lower())
    if n_bytes == 0:
        raise ImageError("empty file (0 bytes); re-copy or delete it")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            im = Image.open(fp)
    except Exception:
        raise ImageError("not an image (no known image format in its content); delete it or re-export it as JPEG") from None
    with im:
        if expected and im.format != expected:
            raise ImageError(
                f"content is {im.format or 'unknown'} but the name says {expected}; rename it to match or re-encode it"
            )
        width, height = im.size
        if width * height > max_pixels:
            raise ImageError(
                f"{width}x{height} = {width * height:,} pixels is over the {max_pixels:,}-pixel limit "
                "(possible decompression bomb); downscale it or raise --max-pixels"
            )
        if width < 1 or height < 1:
            raise ImageError("image has no pixels; delete it")
        try:
            im.load()
            im = ImageOps.exif_transpose(im)
            return _to_rgb(im)
        except Exception as exc:
            reason = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
            raise ImageError(f"cannot decode ({reason}); the file is truncated or corrupt, re-copy or delete it") from None


def _to_rgb(im: Image.Image) -> Image.Image:
    if im.mode == "RGB":
        return im
    if im.mode == "P":
        im = im.convert("RGBA")
    if im.mode in ("RGBA", "LA", "PA"):
        background = Image.new("RGB", im.size, (255, 255, 255))
        background.paste(im.convert("RGBA"), mask=im.convert("RGBA").getchannel("A"))
        return background
    if im.mode in ("I", "I;16", "I;16B", "I;16L", "F"):
        arr = np.asarray(im, dtype=np.float64)
        top = arr.max() or 1.0
        im = Image.fromarray((arr * (255.0 / top)).clip(0, 255).astype(np.uint8), mode="L")
    return im.convert("RGB")


def resize(im: Image.Image, size: int = IMAGE_SIZE) -> np.ndarray:
    """Squash an RGB Pillow image to (size, size, 3) uint8 (see `decode` for the policy)."""
    if im.size != (size, size):
        im = im.resize((size, size), Image.BILINEAR)
    return np.asarray(im, dtype=np.uint8)


def listed(name: str, names: set[str]) -> bool:
    """Whether a photo (relative name, e.g. "cat/x.jpg") is in `names`, by relative or file name."""
    return name in names or Path(name).name in names


def write_rejections(csv_path: str | os.PathLike, rejections: list[Rejection]) -> Path:
    """Write `file,reason` rows (always with a header, even when empty)."""
    csv_path = Path(csv_path)
    csv_path.parent.mkdir(parents=True, exist_ok=True)
    with csv_path.open("w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(["file", "reason"])
        for r in rejections:
            writer.writerow([str(r.path), r.reason])
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
