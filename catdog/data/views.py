"""Views of a photo: the photo changed in one controlled way, before the squash to S x S.

Two uses, one table:

* augmented views train the head on several versions of each photo (TRAIN_VIEWS);
* shifted views measure how the model copes with photos unlike the training ones (SHIFTS):
  held-out photos, each changed one way, scored by a head that never saw them.

Every view is a pure function of the photo and a seed drawn from (view, photo name), so a view's
features are reproducible and can be cached and resumed like the plain ones.
"""

from __future__ import annotations

import hashlib
import io
import math
from collections.abc import Callable

import numpy as np
from PIL import Image, ImageEnhance, ImageOps

PLAIN = "plain"


def _mirror(im: Image.Image, rng: np.random.Generator) -> Image.Image:
    return ImageOps.mirror(im)


def _closeup(im: Image.Image, rng: np.random.Generator) -> Image.Image:
    """A crop of 40-70 % of the area at a random place, the photo's aspect ratio kept: the
    close-up portraits other sources are full of."""
    side = math.sqrt(rng.uniform(0.40, 0.70))
    w, h = im.size
    cw, ch = max(1, round(w * side)), max(1, round(h * side))
    left, top = int(rng.integers(0, w - cw + 1)), int(rng.integers(0, h - ch + 1))
    return im.crop((left, top, left + cw, top + ch))


def _rotate(im: Image.Image, rng: np.random.Generator) -> Image.Image:
    """Rotated by 5-15 degrees either way, then cropped to the largest centred rectangle of the
    same aspect ratio with no corner outside the photo (no black wedges)."""
    angle = float(rng.uniform(5, 15) * rng.choice([-1, 1]))
    w, h = im.size
    rotated = im.rotate(angle, resample=Image.BILINEAR)
    a = math.radians(abs(angle))
    scale = min(w, h) / (min(w, h) * math.cos(a) + max(w, h) * math.sin(a))
    cw, ch = max(1, int(w * scale)), max(1, int(h * scale))
    left, top = (w - cw) // 2, (h - ch) // 2
    return rotated.crop((left, top, left + cw, top + ch))


JPEG_MAX_SIDE = 65_500  # libjpeg's largest side


def _jpeg(im: Image.Image, rng: np.random.Generator) -> Image.Image:
    """Saved again as JPEG at quality 20, at the photo's own size (a panorama wider than JPEG
    allows first shrunk to fit: the squash to S shrinks it far more)."""
    if max(im.size) > JPEG_MAX_SIDE:
        im = im.copy()
        im.thumbnail((JPEG_MAX_SIDE, JPEG_MAX_SIDE), Image.BILINEAR)
    buffer = io.BytesIO()
    im.save(buffer, "JPEG", quality=20)
    buffer.seek(0)
    return Image.open(buffer).convert("RGB")


def _colour(im: Image.Image, rng: np.random.Generator) -> Image.Image:
    """Brightness and contrast times 0.6-1.4, saturation times 0.5-1.5, in random order."""
    steps = [
        (ImageEnhance.Brightness, rng.uniform(0.6, 1.4)),
        (ImageEnhance.Contrast, rng.uniform(0.6, 1.4)),
        (ImageEnhance.Color, rng.uniform(0.5, 1.5)),
    ]
    for i in rng.permutation(len(steps)):
        enhancer, factor = steps[i]
        im = enhancer(im).enhance(float(factor))
    return im


def _lowres(im: Image.Image, rng: np.random.Generator) -> Image.Image:
    """Shrunk so its longest side is 96 px (the squash to S then scales it back up)."""
    im = im.copy()
    im.thumbnail((96, 96), Image.BILINEAR)
    return im


def _gray(im: Image.Image, rng: np.random.Generator) -> Image.Image:
    return im.convert("L").convert("RGB")


# name -> (what it does, in a few words; the function)
VIEWS: dict[str, tuple[str, Callable[[Image.Image, np.random.Generator], Image.Image]]] = {
    "mirror": ("mirror image (left-right)", _mirror),
    "closeup": ("close-up crop, 40-70 % of the area", _closeup),
    "rotate": ("rotated 5-15 degrees either way", _rotate),
    "jpeg": ("JPEG quality 20", _jpeg),
    "colour": ("brightness, contrast, saturation jitter", _colour),
    "lowres": ("low resolution, longest side 96 px", _lowres),
    "gray": ("grayscale", _gray),
}
SHIFTS = ("closeup", "mirror", "rotate", "jpeg", "colour", "lowres", "gray")


def check_view(view: str) -> str:
    """`view` if it is PLAIN or one of VIEWS, else a one-line CatdogError listing them."""
    if view != PLAIN and view not in VIEWS:
        from catdog.errors import CatdogError

        raise CatdogError(f"unknown view {view!r}; choose {PLAIN} or one of {', '.join(VIEWS)}")
    return view


def view_seed(view: str, name: str) -> int:
    """The seed of `view` for the photo `name`: the same on every machine and every run."""
    return int.from_bytes(hashlib.sha256(f"{view}|{name}".encode()).digest()[:8], "little")


def apply_view(im: Image.Image, view: str, name: str) -> Image.Image:
    """The photo `im` (RGB, any size) as seen by `view` (PLAIN: unchanged); `name` seeds it."""
    if view == PLAIN:
        return im
    return VIEWS[check_view(view)][1](im, np.random.default_rng(view_seed(view, name)))


def shift_photos(samples: list, n: int, seed: int = 0) -> list:
    """A seeded subset of about `n` of the labelled `samples`, as many of each class, in sample
    order: the photos whose shifted views are measured (a shift's cost grows with its photos)."""
    rng = np.random.default_rng(seed)
    chosen = []
    for label in sorted({s.label for s in samples if s.label is not None}):
        idx = [i for i, s in enumerate(samples) if s.label == label]
        chosen.extend(rng.permutation(idx)[: n // 2].tolist())
    return [samples[i] for i in sorted(chosen)]
