"""Unusable files made from a real photo, each with the words its rejection reason must contain."""

from __future__ import annotations

import io
from pathlib import Path

from PIL import Image

from tools.mutations import scan_bomb


def make_bad_files(folder: Path, photo: Path, start: int = 5000) -> dict[str, str]:
    """Write one file per kind of bad input into `folder`; return {file name: expected reason words}."""
    folder.mkdir(parents=True, exist_ok=True)
    data = photo.read_bytes()
    im = Image.open(photo).convert("RGB")
    cases: dict[str, str] = {}

    def put(name: str, payload: bytes, reason: str) -> None:
        (folder / name).write_bytes(payload)
        cases[name] = reason

    def encoded(image: Image.Image, fmt: str) -> bytes:
        buf = io.BytesIO()
        image.save(buf, format=fmt)
        return buf.getvalue()

    put(f"cat.{start}.jpg", b"", "empty file")
    put(f"dog.{start}.jpg", data[: len(data) // 3], "truncated or corrupt")
    put(f"cat.{start + 1}.jpg", b"this is a text file that a tool renamed to .jpg\n" * 20, "not an image")
    put(f"dog.{start + 1}.jpg", encoded(im, "PNG"), "content is PNG")
    put(f"cat.{start + 2}.jpg", encoded(im.convert("P"), "GIF"), "content is GIF")
    put(f"dog.{start + 2}.jpg", encoded(im, "WEBP"), "content is WEBP")
    # A decompression bomb: over 50 million pixels (the default limit) in a small file.
    put(f"cat.{start + 3}.png", encoded(im.resize((8000, 7000), Image.NEAREST).convert("L"), "PNG"), "pixel limit")
    # A decoding bomb: a progressive JPEG of 5,000 scans (70 KB), each visiting all 4 million pixels again.
    put(f"dog.{start + 3}.jpg", scan_bomb(data, 5000, 2000), "scans")
    put(f"kitten_{start}.jpg", data, "name matches neither")
    put(f"cat.{start + 4}.txt", b"notes", "not an image type")
    return cases
