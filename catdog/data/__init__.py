"""Stage 1, data: find photos (Kaggle layout or class folders), validate and decode them.

Names are imported on first use (catdog.lazy), so the CLI can read MAX_PIXELS without numpy.
"""

from catdog.lazy import lazy_exports

__getattr__, __dir__, __all__ = lazy_exports(
    __name__,
    {
        "catdog.data.batches": ["Batch", "iter_batches"],
        "catdog.data.ingest": [
            "IMAGE_KINDS",
            "IMAGE_SIZE",
            "LABELS",
            "ImageError",
            "ImageKind",
            "Rejection",
            "Sample",
            "decode",
            "class_label",
            "fingerprint",
            "labels_hint",
            "listed",
            "natural_key",
            "no_labels",
            "open_rgb",
            "probe",
            "resize",
            "scan",
            "sha256_file",
            "shown",
            "unique_ids",
            "unlisted_note",
            "write_rejections",
        ],
        "catdog.data.limits": ["MAX_PIXELS"],
        "catdog.data.views": ["PLAIN", "SHIFTS", "VIEWS", "apply_view", "check_view", "shift_photos"],
    },
)
