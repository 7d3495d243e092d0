"""A 12 MP phone photo decoded whole or shrunk: `python -m bench.decode [--art ART_DIR]`.

catdog decodes every photo whole and squashes it to S x S with Pillow's antialiased bilinear
filter; the phone apps feed their model the same pixels (the iOS app's CatDogCore and Android's
:core port that resize bit for bit) but decode a large photo shrunk first: the iOS app above
16 MP (ImageIO's thumbnail), the Android demo by a power of two (BitmapFactory's inSampleSize,
libjpeg-turbo's DCT scaling for a JPEG). This measures what shrinking costs on the most common
phone photo, 4032 x 3024 (12.19 MP): the artefact's outputs on the whole photo against the same
photo decoded at 1/2 and 1/4 by libjpeg's DCT scaling (Pillow's `draft`, the decoder Android's
Skia uses), then squashed as catdog does.

../shared holds no 12 MP photo: each of ours is a shared photo (Kaggle test photos, which no run
trains on, and the not-pets) resized to 4032 x 3024 (Lanczos) with seeded Gaussian noise of
sigma 4 (a sensor's grain: the fine detail a DCT-scaled decode drops) and saved as a quality 92
JPEG, as a phone would. Per decoding: the squashed pixels' mean |difference|, max and 99th
percentile |dP(dog)| and max |dpet| against the whole photo, verdict flips (cat, dog or neither
at the manifest's threshold), the decode time and the decoded image's size. Prints the table
and writes bench/results/decode.json.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from bench.__main__ import SHARED, save, table  # noqa: E402
from catdog.cli import _whole  # noqa: E402  (the CLI's own check: a count under 1 is refused as it is read)

PHONE = (4032, 3024)  # the 12 MP sensor's photo, width x height
SCALES = (1, 2, 4)  # 1: whole; 2 and 4: DCT-scaled, as inSampleSize 2 and 4
GRAIN = 4.0


def phone_photo(source: Path, out: Path, rng) -> Path:
    """`source` resized to PHONE with seeded grain, written as a quality-92 JPEG at `out`."""
    import numpy as np
    from PIL import Image

    big = np.asarray(Image.open(source).convert("RGB").resize(PHONE, Image.LANCZOS), np.float32)
    big += rng.normal(0.0, GRAIN, big.shape).astype(np.float32)
    Image.fromarray(np.clip(big, 0, 255).astype(np.uint8)).save(out, quality=92)
    return out


def decoded(path: Path, scale: int):
    """`path` decoded at 1/scale by libjpeg's DCT scaling (scale 1: whole, as catdog decodes)."""
    from PIL import Image

    from catdog.data import open_rgb

    if scale == 1:
        return open_rgb(path)
    im = Image.open(path)
    im.draft("RGB", (PHONE[0] // scale, PHONE[1] // scale))
    im = im.convert("RGB")
    if im.size != (PHONE[0] // scale, PHONE[1] // scale):
        raise SystemExit(f"{path}: Pillow decoded {im.size}, not 1/{scale}: no DCT scaling here")
    return im


def main(argv=None) -> None:
    import numpy as np

    from catdog.contract import PET, PROBABILITIES, chosen_artefact, load_manifest, pet_threshold, verdict
    from catdog.data import resize, scan
    from catdog.runtime import open_model

    parser = argparse.ArgumentParser(prog="python -m bench.decode", description=__doc__.splitlines()[0])
    parser.add_argument("--art", type=Path, default=REPO / "runs" / "mobilenet+mobilenet_v2_288" / "artefacts", help="ART_DIR (default: make run's)")
    parser.add_argument("--pets", type=_whole(1), default=60, help="Kaggle test photos to use (default 60), beside every not-pet")
    args = parser.parse_args(argv)

    entry = chosen_artefact(load_manifest(args.art), "tflite")  # the one the Android demo loads (fp32 first)
    model = open_model(args.art / entry["file"])
    threshold = pet_threshold(args.art)
    test = scan(SHARED / "data" / "dogs-vs-cats" / "test")[0]
    pets = [s.path for s in test[:: max(1, len(test) // args.pets)][: args.pets]]
    sources = pets + [s.path for s in scan(SHARED / "data" / "not-pets")[0]]

    rng = np.random.default_rng(0)
    inputs = {scale: [] for scale in SCALES}
    seconds = {scale: 0.0 for scale in SCALES}
    with tempfile.TemporaryDirectory() as tmp:
        for i, source in enumerate(sources):
            photo = phone_photo(Path(source), Path(tmp) / f"{i}.jpg", rng)
            for scale in SCALES:
                t = time.perf_counter()
                im = decoded(photo, scale)
                seconds[scale] += time.perf_counter() - t
                inputs[scale].append(resize(im, model.image_size))
            print(f"\r{i + 1}/{len(sources)} photos", end="", file=sys.stderr)
    print(file=sys.stderr)

    inputs = {scale: np.stack(images) for scale, images in inputs.items()}
    outputs = {scale: model.run(inputs[scale]) for scale in SCALES}
    whole = outputs[1]
    verdicts = {s: [verdict(p, q[0], threshold) for p, q in zip(o[PROBABILITIES], o[PET])] for s, o in outputs.items()}
    rows = []
    for scale in SCALES:
        o = outputs[scale]
        dp = np.abs(o[PROBABILITIES][:, 1] - whole[PROBABILITIES][:, 1])
        pixels = np.abs(inputs[scale].astype(np.int16) - inputs[1].astype(np.int16))
        w, h = PHONE[0] // scale, PHONE[1] // scale
        rows.append({
            "decoding": "whole (catdog, iOS up to 16 MP)" if scale == 1 else f"1/{scale} by DCT scaling (inSampleSize {scale})",
            "decoded": f"{w}x{h}",
            "decoded_mb": w * h * 4 / 1e6,  # an ARGB_8888 / RGBA bitmap
            "decode_ms": 1000 * seconds[scale] / len(sources),
            "mean_pixel_diff": float(pixels.mean()),
            "max_dp": float(dp.max()),
            "p99_dp": float(np.quantile(dp, 0.99)),
            "max_dpet": float(np.abs(o[PET] - whole[PET]).max()),
            "verdict_flips": sum(a != b for a, b in zip(verdicts[scale], verdicts[1])),
        })
    print(f"{len(sources)} photos at {PHONE[0]}x{PHONE[1]} ({len(pets)} Kaggle test photos, {len(sources) - len(pets)} not-pets), {entry['file']} (LiteRT)")
    table(rows, [("decoding", "decoding", "<42"), ("decoded", "decoded", "<10"), ("decoded_mb", "bitmap MB", ".1f"),
                 ("decode_ms", "decode ms", ".0f"), ("mean_pixel_diff", "|d pixel|", ".3f"), ("max_dp", "max |dP(dog)|", ".2e"),
                 ("p99_dp", "p99 |dP(dog)|", ".2e"), ("max_dpet", "max |dpet|", ".2e"), ("verdict_flips", "verdicts flipped", "d")])
    save("decode", rows, {"photos": len(sources), "phone": PHONE, "grain_sigma": GRAIN, "artefact": entry["file"], "pet_threshold": threshold})


if __name__ == "__main__":
    from bench.__main__ import run_main

    sys.exit(run_main(main))
