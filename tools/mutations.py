"""Hostile variants of real photos, for the fuzz tests and `python -m bench fuzz`.

Every mutation is a pure function of the original bytes and explicit parameters, so a failing
case is reproduced from its `Mutant.note`. `mutants(bases)` is the Hypothesis strategy that draws
one kind and its parameters; `KINDS` names them all:

    bitflip           n bits flipped anywhere (header, tables or entropy-coded data)
    truncate          the file cut at any length (including inside the header)
    jpeg_dims         a JPEG's SOF width/height forged (0, 1, tiny, just over or far over the pixel limit)
    png_dims          a PNG's IHDR width/height forged, CRC fixed or left stale
    bmp_dims          a BMP's width/height forged (negative = top-down, zero, huge)
    magic             the first bytes swapped for another format's signature (or garbage)
    exif_orientation  EXIF Orientation absurd: 0, 9, 65535, 2^32-1, wrong type, count, or offset
    exif_sizes        EXIF with absurd counts, offsets and pixel dimensions, self-referencing IFDs
    jpeg_icc          up to 2 MB of ICC_PROFILE (APP2) segments, numbered inconsistently
    jpeg_scans        a progressive JPEG's last scan repeated: 100 to 20,000 scans (a decoding bomb of kilobytes)
    png_chunks        iCCP / zTXt / iTXt zlib bombs (64 MB), PLTE over 256 entries, tEXt up to 8 MB, a chunk claiming 2 GB
    png_bomb          a valid PNG up to 16000 x 16000 (~100 KB on disk) that decodes to gigabytes
    splice            a JPEG body after a PNG header and the reverse

Bases: real photos from ../shared as JPEG (as shipped) and re-encoded as PNG (RGB and palette)
and BMP, at their own size.
"""

from __future__ import annotations

import io
import struct
import zlib
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path

from hypothesis import strategies as st
from PIL import Image

KINDS = (
    "bitflip", "truncate", "jpeg_dims", "png_dims", "bmp_dims", "magic", "exif_orientation", "exif_sizes",
    "jpeg_icc", "jpeg_scans", "png_chunks", "png_bomb", "splice",
)
MAGICS = (
    b"\x89PNG\r\n\x1a\n", b"\xff\xd8\xff", b"GIF89a", b"BM", b"RIFF\x00\x00\x00\x00WEBP", b"II*\x00", b"MM\x00*",
    b"%PDF-1.4", b"PK\x03\x04", b"\x00\x00\x00\x0cjP  ", b"\x00\x00\x01\x00", b"8BPS", b"\x00" * 16, b"\xff" * 16,
)


@dataclass(frozen=True)
class Base:
    """A real photo in one container: its name, format ("JPEG", "PNG", "BMP") and bytes."""

    name: str
    format: str
    data: bytes = field(repr=False)


@dataclass(frozen=True)
class Mutant:
    kind: str
    note: str  # the parameters, enough to rebuild it
    base: Base
    data: bytes = field(repr=False)
    # the pixel count the header declares where the mutation forged it (None: unchanged/unknown)
    declared_pixels: int | None = None
    scans: int | None = None  # a JPEG's scans where the mutation set them
    # a side the format cannot hold (2^31 px or more, as Pillow reads it: a PNG's, a BMP's negative
    # width read unsigned): refused as corrupt, not as a decompression bomb
    impossible: bool = False

    @property
    def suffix(self) -> str:
        return {"JPEG": ".jpg", "PNG": ".png", "BMP": ".bmp"}[self.base.format]


def load_bases(photos: list[Path]) -> list[Base]:
    """Each photo as shipped (JPEG), and the first two re-encoded as PNG (RGB, palette) and BMP."""
    bases = [Base(p.name, "JPEG", p.read_bytes()) for p in photos]
    for p in photos[:2]:
        im = Image.open(p).convert("RGB")
        for fmt, image in (("PNG", im), ("PNG", im.convert("P")), ("BMP", im)):
            buf = io.BytesIO()
            image.save(buf, format=fmt)
            bases.append(Base(f"{p.stem}.{image.mode}.{fmt.lower()}", fmt, buf.getvalue()))
    return bases


# ---------------------------------------------------------------- byte-level mutations
def bitflip(data: bytes, positions: list[int]) -> bytes:
    out = bytearray(data)
    for p in positions:
        out[(p // 8) % len(out)] ^= 1 << (p % 8)
    return bytes(out)


def truncate(data: bytes, length: int) -> bytes:
    return data[: length % max(1, len(data))]


def replace_magic(data: bytes, magic: bytes) -> bytes:
    return magic + data[len(magic) :]


# ---------------------------------------------------------------- JPEG
_SOF = {0xC0, 0xC1, 0xC2, 0xC3, 0xC5, 0xC6, 0xC7, 0xC9, 0xCA, 0xCB, 0xCD, 0xCE, 0xCF}


def jpeg_segments(data: bytes) -> list[tuple[int, int, int]]:
    """(marker, start of the segment's payload, payload length) up to SOS."""
    out, i = [], 2
    while i + 4 <= len(data) and data[i] == 0xFF:
        marker, length = data[i + 1], struct.unpack(">H", data[i + 2 : i + 4])[0]
        out.append((marker, i + 4, length - 2))
        if marker == 0xDA:
            break
        i += 2 + length
    return out


def forge_jpeg_dims(data: bytes, width: int, height: int) -> bytes:
    out = bytearray(data)
    for marker, start, _ in jpeg_segments(data):
        if marker in _SOF:
            out[start + 1 : start + 5] = struct.pack(">HH", height, width)
    return bytes(out)


def scan_bomb(data: bytes, scans: int, side: int) -> bytes:
    """A progressive JPEG of `scans` scans: the photo `data`'s average colour on a side x side
    canvas, its last scan repeated. Each repeat is a few bytes (a run of empty blocks) and makes
    the decoder visit every block once more: at 4000 x 4000, 1,000 scans are 125 KB and 12 s of
    decoding here, 20,000 scans 0.7 MB and minutes (libjpeg-turbo's LJT-01-003). 0xFF 0xDA cannot
    occur inside entropy-coded data, and Pillow writes no metadata that holds it, so the scans are
    found by search."""
    canvas = Image.open(io.BytesIO(data)).convert("RGB").resize((1, 1), Image.BOX).resize((side, side))
    buf = io.BytesIO()
    canvas.save(buf, format="JPEG", quality=90, progressive=True)
    prog = buf.getvalue()
    assert prog.endswith(b"\xff\xd9")
    last = prog.rfind(b"\xff\xda")
    return prog[:-2] + prog[last:-2] * max(0, scans - prog.count(b"\xff\xda")) + b"\xff\xd9"


@lru_cache(maxsize=16)
def cached_scan_bomb(data: bytes, scans: int, side: int) -> bytes:
    return scan_bomb(data, scans, side)


def insert_jpeg_segments(data: bytes, segments: list[tuple[int, bytes]]) -> bytes:
    """`data` with APPn segments (marker, payload up to 65533 bytes) inserted after SOI."""
    inserted = b"".join(b"\xff" + bytes([m]) + struct.pack(">H", len(p) + 2) + p for m, p in segments)
    return data[:2] + inserted + data[2:]


def icc_segments(total: int, chunk: int, numbering: str, seed: int) -> list[tuple[int, bytes]]:
    """`total` APP2 ICC_PROFILE segments of `chunk` bytes: numbered 1..n (consistent), all 1,
    all beyond the count, or zero."""
    body = bytes((seed + i * 131) % 256 for i in range(chunk))
    out = []
    for i in range(total):
        seq, count = {"consistent": (i + 1, total), "repeated": (1, total), "beyond": (i + 200, 3), "zero": (0, 0)}[numbering]
        out.append((0xE2, b"ICC_PROFILE\x00" + bytes([seq % 256, count % 256]) + body))
    return out


# ---------------------------------------------------------------- EXIF (little-endian TIFF)
_TYPE_SIZES = {1: 1, 2: 1, 3: 2, 4: 4, 5: 8, 7: 1, 9: 4, 10: 8}


def exif_payload(entries: list[tuple[int, int, int, bytes]], extra: bytes = b"", next_ifd: int = 0) -> bytes:
    """APP1 Exif payload: IFD0 at offset 8 with (tag, type, count, 4-byte value or offset) entries."""
    ifd = struct.pack("<H", len(entries))
    for tag, typ, count, value in entries:
        ifd += struct.pack("<HHI", tag, typ, count) + value[:4].ljust(4, b"\x00")
    return b"Exif\x00\x00II*\x00" + struct.pack("<I", 8) + ifd + struct.pack("<I", next_ifd) + extra


def orientation_entry(value: int, typ: int, count: int) -> tuple[int, int, int, bytes]:
    packed = struct.pack("<I", value % 2**32) if typ in (4, 9) or count > 1 else struct.pack("<H", value % 2**16) + b"\x00\x00"
    return (0x0112, typ, count, packed)


def exif_orientation(data: bytes, value: int, typ: int, count: int) -> bytes:
    return insert_jpeg_segments(data, [(0xE1, exif_payload([orientation_entry(value, typ, count)]))])


def exif_sizes(data: bytes, width: int, height: int, count: int, offset: int, loop: bool) -> bytes:
    """EXIF whose pixel dimensions are absurd, one entry's count/offset points far outside the
    block, and (loop) whose Exif sub-IFD and next-IFD pointers point back at IFD0."""
    entries = [
        (0x0100, 4, 1, struct.pack("<I", width)),
        (0x0101, 4, 1, struct.pack("<I", height)),
        (0x010F, 2, count, struct.pack("<I", offset)),  # Make: ASCII, count and offset forged
        (0x0112, 3, 1, struct.pack("<H", 6)),  # a valid orientation beside them
        (0x8769, 4, 1, struct.pack("<I", 8 if loop else offset)),  # Exif IFD pointer
    ]
    sub = struct.pack("<H", 2) + struct.pack("<HHI", 0xA002, 4, 1) + struct.pack("<I", width)
    sub += struct.pack("<HHI", 0xA003, 4, 1) + struct.pack("<I", height) + struct.pack("<I", 8 if loop else 0)
    return insert_jpeg_segments(data, [(0xE1, exif_payload(entries, sub, next_ifd=8 if loop else 0))])


# ---------------------------------------------------------------- PNG
def png_chunk(kind: bytes, payload: bytes, crc: bool = True) -> bytes:
    check = zlib.crc32(kind + payload) if crc else 0xDEADBEEF
    return struct.pack(">I", len(payload)) + kind + payload + struct.pack(">I", check & 0xFFFFFFFF)


def forge_png_dims(data: bytes, width: int, height: int, fix_crc: bool) -> bytes:
    ihdr = bytearray(data[16:29])
    ihdr[0:8] = struct.pack(">II", width % 2**32, height % 2**32)
    crc = zlib.crc32(b"IHDR" + bytes(ihdr)) if fix_crc else struct.unpack(">I", data[29:33])[0]
    return data[:16] + bytes(ihdr) + struct.pack(">I", crc) + data[33:]


@lru_cache(maxsize=8)
def zlib_bomb(megabytes: int) -> bytes:
    """`megabytes` MB of zeros, deflated (about 1,000 : 1)."""
    c = zlib.compressobj(9)
    block = bytes(1 << 20)
    return b"".join(c.compress(block) for _ in range(megabytes)) + c.flush()


def insert_png_chunks(data: bytes, chunks: list[bytes]) -> bytes:
    """`data` with chunks inserted after IHDR (8 + 25 bytes)."""
    return data[:33] + b"".join(chunks) + data[33:]


def png_chunks(data: bytes, kind: str, size: int) -> bytes:
    """One hostile ancillary or palette chunk of about `size` (bytes, or MB for bombs)."""
    if kind == "iccp_bomb":
        chunk = png_chunk(b"iCCP", b"icc\x00\x00" + zlib_bomb(size))
    elif kind == "ztxt_bomb":
        chunk = png_chunk(b"zTXt", b"Comment\x00\x00" + zlib_bomb(size))
    elif kind == "itxt_bomb":
        chunk = png_chunk(b"iTXt", b"Comment\x00\x01\x00\x00\x00" + zlib_bomb(size))
    elif kind == "big_plte":
        chunk = png_chunk(b"PLTE", bytes(i % 256 for i in range(3 * size)))
    elif kind == "big_text":
        chunk = png_chunk(b"tEXt", b"Comment\x00" + b"x" * (size * 1024))
    elif kind == "exif_chunk":
        chunk = png_chunk(b"eXIf", exif_payload([orientation_entry(size, 3, 1)])[6:])
    else:  # "bogus_length": a chunk that claims 2 GB
        chunk = struct.pack(">I", 0x7FFFFFF0) + b"tEXt" + b"Comment\x00x"
    return insert_png_chunks(data, [chunk])


def png_bomb(width: int, height: int) -> bytes:
    """A valid 8-bit grayscale PNG of width x height zeros, deflated row by row (no big buffer)."""
    c = zlib.compressobj(9)
    row = bytes(width + 1)  # filter byte 0 + zeros
    idat = b"".join(c.compress(row) for _ in range(height)) + c.flush()
    ihdr = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + png_chunk(b"IHDR", ihdr) + png_chunk(b"IDAT", idat) + png_chunk(b"IEND", b"")


@lru_cache(maxsize=8)
def cached_png_bomb(width: int, height: int) -> bytes:
    return png_bomb(width, height)


# ---------------------------------------------------------------- BMP
def forge_bmp_dims(data: bytes, width: int, height: int) -> bytes:
    return data[:18] + struct.pack("<ii", width, height) + data[26:]


# ---------------------------------------------------------------- the strategy
def _of(bases: list[Base], fmt: str) -> st.SearchStrategy[Base]:
    return st.sampled_from([b for b in bases if b.format == fmt])


def mutants(bases: list[Base], max_pixels: int, kinds=KINDS) -> st.SearchStrategy[Mutant]:
    """One hostile variant (of one of `kinds`) of one of `bases`; forged dimensions straddle `max_pixels`."""
    any_base = st.sampled_from(bases)
    side = st.one_of(st.sampled_from([0, 1, 2, 7, 8, 9, 65535]), st.integers(1, 65535))
    over = int(max_pixels**0.5) + 1  # a square just over the pixel limit

    @st.composite
    def draw(d) -> Mutant:
        kind = d(st.sampled_from(list(kinds)))
        if kind == "bitflip":
            base, flips = d(any_base), d(st.lists(st.integers(0, 2**31), min_size=1, max_size=64))
            return Mutant(kind, f"{len(flips)} bits at {flips[:4]}...", base, bitflip(base.data, flips))
        if kind == "truncate":
            base = d(any_base)
            n = d(st.one_of(st.integers(0, 64), st.integers(0, len(base.data) - 1)))
            return Mutant(kind, f"first {n} bytes", base, truncate(base.data, n))
        if kind == "jpeg_dims":
            base = d(_of(bases, "JPEG"))
            w, h = d(st.one_of(st.tuples(side, side), st.just((over, over)), st.just((65535, 65535))))
            return Mutant(kind, f"SOF {w}x{h}", base, forge_jpeg_dims(base.data, w, h), w * h)
        if kind == "png_dims":
            base, fix = d(_of(bases, "PNG")), d(st.booleans())
            w, h = d(st.one_of(st.tuples(side, side), st.just((over, over)), st.tuples(st.integers(0, 2**32 - 1), st.integers(0, 2**32 - 1))))
            return Mutant(kind, f"IHDR {w}x{h} crc {'fixed' if fix else 'stale'}", base, forge_png_dims(base.data, w, h, fix), w * h if fix else None,
                          impossible=fix and max(w, h) >= 2**31)
        if kind == "bmp_dims":
            base = d(_of(bases, "BMP"))
            w, h = d(st.tuples(st.integers(-(2**31), 2**31 - 1), st.integers(-(2**31), 2**31 - 1)) | st.just((over, -over)))
            return Mutant(kind, f"BMP {w}x{h}", base, forge_bmp_dims(base.data, w, h), abs(w * h), impossible=w < 0 or abs(h) >= 2**31)
        if kind == "magic":
            base, magic = d(any_base), d(st.sampled_from(MAGICS) | st.binary(min_size=1, max_size=16))
            return Mutant(kind, f"magic {magic!r}", base, replace_magic(base.data, magic))
        if kind == "exif_orientation":
            base = d(_of(bases, "JPEG"))
            value = d(st.sampled_from([0, 9, 255, 65535, 2**31, 2**32 - 1]) | st.integers(0, 2**32 - 1))
            typ, count = d(st.sampled_from([3, 4, 1, 2, 5, 7, 9, 10, 0, 13, 255])), d(st.sampled_from([1, 0, 2, 1000, 2**32 - 1]))
            return Mutant(kind, f"Orientation {value} type {typ} count {count}", base, exif_orientation(base.data, value, typ, count))
        if kind == "exif_sizes":
            base = d(_of(bases, "JPEG"))
            w, h = d(st.integers(0, 2**32 - 1)), d(st.integers(0, 2**32 - 1))
            count, offset, loop = d(st.integers(0, 2**32 - 1)), d(st.integers(0, 2**32 - 1)), d(st.booleans())
            note = f"EXIF {w}x{h}, Make count {count} at {offset}, loop {loop}"
            return Mutant(kind, note, base, exif_sizes(base.data, w, h, count, offset, loop))
        if kind == "jpeg_icc":
            base = d(_of(bases, "JPEG"))
            total, chunk = d(st.integers(1, 32)), d(st.sampled_from([1, 100, 65519]))
            numbering, seed = d(st.sampled_from(["consistent", "repeated", "beyond", "zero"])), d(st.integers(0, 255))
            note = f"{total} ICC segments of {chunk} bytes, {numbering}"
            return Mutant(kind, note, base, insert_jpeg_segments(base.data, icc_segments(total, chunk, numbering, seed)))
        if kind == "jpeg_scans":
            base = d(_of(bases, "JPEG"))
            scans = d(st.sampled_from([100, 101, 1000, 20_000]))  # the limit (catdog.data.limits.MAX_JPEG_SCANS), just over, far over
            edge = d(st.sampled_from([64, 1000]))
            return Mutant(kind, f"{scans} scans of {edge}x{edge}", base, cached_scan_bomb(base.data, scans, edge), scans=scans)
        if kind == "png_chunks":
            base = d(_of(bases, "PNG"))
            chunk = d(st.sampled_from(["iccp_bomb", "ztxt_bomb", "itxt_bomb", "big_plte", "big_text", "exif_chunk", "bogus_length"]))
            # text up to 8 MB (under the 10 MB upload limit: the parser is what is tried here)
            size = d(st.sampled_from([1, 8, 64])) if chunk.endswith("bomb") else d(st.integers(0, 2**13))
            unit = "MB inflated" if chunk.endswith("bomb") else ("entries" if chunk == "big_plte" else "")
            return Mutant(kind, f"{chunk} {size} {unit}".strip(), base, png_chunks(base.data, chunk, size))
        if kind == "png_bomb":
            base = d(_of(bases, "PNG"))  # named after a base; the content is all forged
            w, h = d(st.sampled_from([(8000, 7000), (16000, 16000), (over, over), (100_000, 1)]))
            return Mutant(kind, f"valid {w}x{h} PNG", base, cached_png_bomb(w, h), w * h)
        jpeg, png = d(_of(bases, "JPEG")), d(_of(bases, "PNG"))
        if d(st.booleans()):
            return Mutant(kind, "PNG header + JPEG body", png, png.data[:33] + jpeg.data[2:])
        return Mutant(kind, "JPEG SOI + PNG body", jpeg, jpeg.data[:2] + png.data[8:])

    return draw()


# ---------------------------------------------------------------- a fixed hostile set (soak)
def largest_legal(photo: Path, max_pixels: int, fmt: str) -> bytes:
    """A real photo enlarged to the largest square under `max_pixels`: as a JPEG, or (the costliest
    to decode) as a 64-colour palette PNG with a transparent entry (decoded via RGBA)."""
    side = int(max_pixels**0.5)
    im = Image.open(photo).convert("RGB")
    buf = io.BytesIO()
    if fmt == "JPEG":
        im.resize((side, side), Image.BILINEAR).save(buf, format="JPEG", quality=85)
    else:
        im.resize((160, 160)).quantize(64).resize((side, side), Image.NEAREST).save(buf, format="PNG", transparency=0)
    return buf.getvalue()


def hostile_set(bases: list[Base], max_pixels: int) -> list[Mutant]:
    """One or more fixed instances of every kind, plus the two largest legal photos (accepted,
    but the most memory a single upload can cost)."""
    jpeg = next(b for b in bases if b.format == "JPEG")
    png = next(b for b in bases if b.format == "PNG")
    bmp = next(b for b in bases if b.format == "BMP")
    over = int(max_pixels**0.5) + 1
    m = [
        Mutant("bitflip", "16 bits", jpeg, bitflip(jpeg.data, list(range(1000, 1000 + 16 * 8191, 8191)))),
        Mutant("bitflip", "header bits", png, bitflip(png.data, [8 * 20 + 3, 8 * 40 + 1])),
        Mutant("truncate", "half", jpeg, truncate(jpeg.data, len(jpeg.data) // 2)),
        Mutant("truncate", "inside the header", png, truncate(png.data, 30)),
        Mutant("jpeg_dims", "SOF 65535x65535", jpeg, forge_jpeg_dims(jpeg.data, 65535, 65535), 65535**2),
        Mutant("jpeg_dims", f"SOF {over}x{over}", jpeg, forge_jpeg_dims(jpeg.data, over, over), over**2),
        Mutant("jpeg_dims", "SOF 6000x6000 (under the limit, data short)", jpeg, forge_jpeg_dims(jpeg.data, 6000, 6000)),
        Mutant("png_dims", "IHDR 2^31x2^31 crc fixed", png, forge_png_dims(png.data, 2**31, 2**31, True), 2**62, impossible=True),
        Mutant("png_dims", "IHDR 2^31-1 x 2^31-1 crc fixed", png, forge_png_dims(png.data, 2**31 - 1, 2**31 - 1, True), (2**31 - 1) ** 2),
        Mutant("bmp_dims", f"BMP -{over}x{over}", bmp, forge_bmp_dims(bmp.data, -over, over), over**2, impossible=True),
        Mutant("png_dims", "IHDR 100000x100000 crc stale", png, forge_png_dims(png.data, 100_000, 100_000, False)),
        Mutant("bmp_dims", f"BMP {over}x-{over}", bmp, forge_bmp_dims(bmp.data, over, -over), over**2),
        Mutant("magic", "GIF89a", jpeg, replace_magic(jpeg.data, b"GIF89a")),
        Mutant("magic", "PNG signature on a JPEG", jpeg, replace_magic(jpeg.data, MAGICS[0])),
        Mutant("exif_orientation", "Orientation 65535", jpeg, exif_orientation(jpeg.data, 65535, 3, 1)),
        Mutant("exif_orientation", "Orientation count 2^32-1", jpeg, exif_orientation(jpeg.data, 6, 3, 2**32 - 1)),
        Mutant("exif_sizes", "EXIF 2^32-1 px, loops", jpeg, exif_sizes(jpeg.data, 2**32 - 1, 2**32 - 1, 2**32 - 1, 2**31, True)),
        Mutant("jpeg_icc", "32 x 64 KB ICC segments", jpeg, insert_jpeg_segments(jpeg.data, icc_segments(32, 65519, "repeated", 7))),
        Mutant("jpeg_scans", "20,000 scans of 4000x4000", jpeg, cached_scan_bomb(jpeg.data, 20_000, 4000), scans=20_000),
        Mutant("png_chunks", "iCCP 64 MB zlib bomb", png, png_chunks(png.data, "iccp_bomb", 64)),
        Mutant("png_chunks", "zTXt 64 MB zlib bomb", png, png_chunks(png.data, "ztxt_bomb", 64)),
        Mutant("png_chunks", "PLTE of 65536 entries", png, png_chunks(png.data, "big_plte", 65536)),
        Mutant("png_chunks", "chunk claiming 2 GB", png, png_chunks(png.data, "bogus_length", 0)),
        Mutant("png_bomb", "valid 16000x16000 PNG", png, cached_png_bomb(16000, 16000), 16000**2),
        Mutant("splice", "PNG header + JPEG body", png, png.data[:33] + jpeg.data[2:]),
    ]
    return m
