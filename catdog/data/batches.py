"""Decode photos in parallel, batch by batch, ahead of the model."""

from __future__ import annotations

import os
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

import numpy as np

from catdog.data.ingest import IMAGE_SIZE, MAX_PIXELS, ImageError, Rejection, Sample, decode, open_rgb, resize
from catdog.data.views import PLAIN, apply_view


@dataclass
class Batch:
    """Decoded photos (uint8, N x size x size x 3), the samples they came from, and the rejects."""

    images: np.ndarray
    samples: list[Sample]
    rejections: list[Rejection]


def _decode_one(sample: Sample, size: int, max_pixels: int, view: str = PLAIN):
    try:
        if view == PLAIN:
            return decode(sample.path, size, max_pixels)
        photo = open_rgb(sample.path, max_pixels)
    except ImageError as exc:
        return Rejection(sample.path, str(exc))
    try:
        return resize(apply_view(photo, view, sample.name), size)
    except (OSError, ValueError) as exc:  # a photo the view cannot change: that photo, not the run
        reason = " ".join(str(exc).split()) or type(exc).__name__
        return Rejection(sample.path, f"its {view} view could not be made ({reason}); the photo is left out of that view only")


def iter_batches(
    samples: list[Sample],
    batch_size: int = 32,
    size: int = IMAGE_SIZE,
    max_pixels: int = MAX_PIXELS,
    workers: int | None = None,
    view: str = PLAIN,
) -> Iterator[Batch]:
    """Yield `Batch`es in sample order; decoding of the next batch overlaps the caller's work.

    view: each photo as seen by that view of catdog.data.views (changed before the squash to size).

    Pillow releases the GIL while decoding and resizing, so threads scale across cores.
    A batch may hold fewer images than `batch_size` (rejected files) or none at all.
    """
    workers = workers or min(8, os.cpu_count() or 1)
    chunks = [samples[i : i + batch_size] for i in range(0, len(samples), batch_size)]
    with ThreadPoolExecutor(max_workers=workers) as pool:

        def submit(chunk):
            return [pool.submit(_decode_one, s, size, max_pixels, view) for s in chunk]

        pending = submit(chunks[0]) if chunks else None
        for i, chunk in enumerate(chunks):
            futures = pending
            pending = submit(chunks[i + 1]) if i + 1 < len(chunks) else None
            images, kept, rejected = [], [], []
            for sample, fut in zip(chunk, futures):
                out = fut.result()
                if isinstance(out, Rejection):
                    rejected.append(out)
                else:
                    images.append(out)
                    kept.append(sample)
            array = np.stack(images) if images else np.zeros((0, size, size, 3), np.uint8)
            yield Batch(array, kept, rejected)
