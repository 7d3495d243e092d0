"""Feature-extraction throughput (images/s) per backbone and batch size, on real photos.

    python bench/features.py [--images 128] [--batch-sizes 1,16,64] [--backbones resnet50,mobilenet_v2]

For each backbone and batch size it times, side by side in one run:
  decode   JPEG decode + resize to 224x224 (catdog.data.iter_batches, threaded), no network
  network  the feature model alone on already-decoded photos
  total    catdog.features.extract_features end to end (decode overlapped with the network, h5 writes)
ResNet50 runs with random weights (no ImageNet file offline; speed does not depend on the values).
Prints a table and writes bench/results/features.json.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
REPO = Path(__file__).resolve().parents[1]
SHARED = Path(os.environ.get("CATDOG_SHARED", REPO.parent / "shared"))


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--images", type=int, default=128)
    parser.add_argument("--batch-sizes", default="1,16,64")
    parser.add_argument("--backbones", default="mobilenet_v2,resnet50")
    parser.add_argument("--data", default=str(SHARED / "data" / "dogs-vs-cats" / "train"))
    parser.add_argument("--out", default=str(REPO / "bench" / "results" / "features.json"))
    args = parser.parse_args()

    import numpy as np
    import tensorflow as tf

    from catdog.data import iter_batches, scan
    from catdog.features import build_backbone, extract_features, feature_model

    samples, _ = scan(args.data)
    samples = samples[:: max(1, len(samples) // args.images)][: args.images]
    batch_sizes = [int(b) for b in args.batch_sizes.split(",")]
    rows = []
    for name in args.backbones.split(","):
        weights = "imagenet" if name == "mobilenet_v2" else None
        model = feature_model(name, build_backbone(name, weights))
        for bs in batch_sizes:
            t = time.perf_counter()
            images = np.concatenate([b.images for b in iter_batches(samples, batch_size=bs)]).astype(np.float32)
            decode_s = time.perf_counter() - t
            model.predict_on_batch(images[:bs])  # warm-up: trace and allocate for this batch size
            t = time.perf_counter()
            for i in range(0, len(images), bs):
                model.predict_on_batch(images[i : i + bs])
            network_s = time.perf_counter() - t
            total_s = float("nan")
            if weights is not None:  # end to end through the real cache writer
                with tempfile.TemporaryDirectory() as tmp:
                    report = extract_features(samples, Path(tmp) / "f.h5", name, weights, batch_size=bs, progress=False)
                    total_s = report.seconds  # excludes model loading
            n = len(samples)
            row = {
                "backbone": name,
                "batch_size": bs,
                "images": n,
                "decode_images_per_s": n / decode_s,
                "network_images_per_s": n / network_s,
                "total_images_per_s": n / total_s if total_s == total_s else None,
            }
            rows.append(row)
            total = f"{row['total_images_per_s']:8.1f}" if row["total_images_per_s"] else "       -"
            print(f"{name:>13} bs={bs:<3} decode {row['decode_images_per_s']:7.1f}  network {row['network_images_per_s']:7.1f}  total {total}  img/s", file=sys.stderr)

    print()
    print(f"{'backbone':>13} {'batch':>5} {'decode img/s':>13} {'network img/s':>14} {'total img/s':>12}")
    for r in rows:
        total = f"{r['total_images_per_s']:12.1f}" if r["total_images_per_s"] else f"{'-':>12}"
        print(f"{r['backbone']:>13} {r['batch_size']:>5} {r['decode_images_per_s']:>13.1f} {r['network_images_per_s']:>14.1f} {total}")
    result = {
        "machine": {"cpus": os.cpu_count(), "platform": platform.platform(), "tensorflow": tf.__version__},
        "note": "total = extract_features end to end, model loading excluded (ImageNet weights only, so mobilenet_v2 only offline)",
        "rows": rows,
    }
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(result, indent=2))
    print(f"\nwritten {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
