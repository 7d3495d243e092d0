"""Stage 1, data: find photos (Kaggle layout or class folders), validate and decode them."""

from catdog.data.batches import Batch, iter_batches
from catdog.data.ingest import (
    IMAGE_SIZE,
    LABELS,
    MAX_PIXELS,
    ImageError,
    Rejection,
    Sample,
    decode,
    fingerprint,
    listed,
    open_rgb,
    probe,
    resize,
    scan,
    sha256_file,
    write_rejections,
)

__all__ = [
    "IMAGE_SIZE",
    "LABELS",
    "MAX_PIXELS",
    "Batch",
    "ImageError",
    "Rejection",
    "Sample",
    "decode",
    "fingerprint",
    "iter_batches",
    "listed",
    "open_rgb",
    "probe",
    "resize",
    "scan",
    "sha256_file",
    "write_rejections",
]
