"""Which settings help, by nested cross-validation on the labelled photos: `python -m bench.choices`.

Every row is the whole training procedure of `catdog run` (L2 logistic head, l2 chosen by 5-fold
CV inside each of 5 outer folds) applied to one variant: backbones, input size, mirrored photos
as extra training rows, test-time mirroring, a temperature fitted inside, leaving `catdog
inspect`'s suspects out of training. Each photo is scored once, by the head of the outer fold
that held it out. Columns: nested-CV log loss with a bootstrap 95 % interval over photos, the
spread of the five outer folds, accuracy, and the difference to the default row with a paired
bootstrap 95 % interval (the same photos, the same folds: negative = better than the default).

Features are extracted once into --features-dir (the h5 cache; a fused variant concatenates its
backbones' files, which equals the fused model's features, tested in tests/test_size_fusion.py).
Prints a table and writes bench/results/choices.json.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from dataclasses import dataclass, replace
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
SHARED = Path(os.environ.get("CATDOG_SHARED", REPO.parent / "shared"))

from bench.__main__ import save, table  # noqa: E402


@dataclass(frozen=True)
class Variant:
    name: str
    backbones: tuple[str, ...]
    sizes: tuple[int, ...] = (288,)
    mirror: bool = False
    tta: bool = False
    temperature: bool = False
    exclude_suspects: bool = False
    note: str = ""


DEFAULT = Variant("V1 + V2 fused, 288 (make run)", ("mobilenet", "mobilenet_v2"))
VARIANTS = [
    Variant("V2, 224", ("mobilenet_v2",), (224,)),
    Variant("V2, 288", ("mobilenet_v2",)),
    Variant("V1, 288", ("mobilenet",)),
    Variant("V1 + V2 fused, 224", ("mobilenet", "mobilenet_v2"), (224,)),
    DEFAULT,
    Variant("V1 + V2 fused, 320", ("mobilenet", "mobilenet_v2"), (320,)),
    Variant("V1 + V2 fused, 224 and 288 concatenated", ("mobilenet", "mobilenet_v2"), (224, 288),
            note="two CAM grids (7x7, 9x9): not one map per class, so not shippable as is"),
    replace(DEFAULT, name="+ mirrored photos as training rows", mirror=True),
    replace(DEFAULT, name="+ mirrored rows and test-time mirroring", mirror=True, tta=True),
    replace(DEFAULT, name="+ test-time mirroring only", tta=True),
    replace(DEFAULT, name="+ temperature (fitted inside)", temperature=True),
    replace(DEFAULT, name="- inspect suspects left out of training", exclude_suspects=True),
]


def feature_file(features_dir: Path, data: Path, backbone: str, size: int, view: str = "plain", shift_photos: int | None = None):
    """The cached FeatureSet of one backbone at one size and view (extracted on first use); with
    `shift_photos`, of that seeded subset of the photos only (catdog.data.shift_photos)."""
    from catdog.data import scan
    from catdog.data import shift_photos as subset
    from catdog.features import extract_features, load_features

    path = features_dir / f"{backbone}_{size}{'' if view == 'plain' else '_' + view}.h5"
    if not path.is_file() or not load_features_ok(path):
        samples = [s for s in scan(data)[0] if s.label is not None]
        if shift_photos:
            samples = subset(samples, shift_photos)
        extract_features(samples, path, backbone, image_size=size, view=view)
    return load_features(path)


def load_features_ok(path: Path) -> bool:
    import h5py

    with h5py.File(path, "r") as f:
        return bool(f.attrs.get("complete", False))


def variant_data(v: Variant, features_dir: Path, data: Path, suspects: set[str]):
    import numpy as np

    from catdog.data import listed
    from catdog.training.cv import Data

    parts = [feature_file(features_dir, data, b, s) for s in v.sizes for b in v.backbones]
    names = parts[0].names
    assert all(p.names == names for p in parts), "feature files hold different photos"
    x = np.hstack([p.features for p in parts])
    x_mirror = None
    if v.mirror or v.tta:
        mirrored = [feature_file(features_dir, data, b, s, "mirror") for s in v.sizes for b in v.backbones]
        assert all(p.names == names for p in mirrored)
        x_mirror = np.hstack([p.features for p in mirrored])
    train_mask = np.array([not listed(n, suspects) for n in names]) if v.exclude_suspects else None
    return Data(x, parts[0].labels, {} if x_mirror is None else {"mirror": x_mirror}, train_mask), names


def suspect_names(path: Path | None, data: Path, features_dir: Path) -> tuple[set[str], Path]:
    """`catdog inspect`'s suspects (run it into features_dir/inspect when no file is given)."""
    from catdog.inspect import inspect_data, read_exclude

    if path is None:
        path = features_dir / "inspect" / "suspects.csv"
        if not path.is_file():
            inspect_data(data, features_dir / "inspect")
    return read_exclude(path), path


def main() -> int:
    from catdog.training.cv import Options, bootstrap_interval, estimate, nested_cv, per_photo_log_loss

    parser = argparse.ArgumentParser(prog="python -m bench.choices", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", type=Path, default=SHARED / "data" / "dogs-vs-cats" / "train")
    parser.add_argument("--features-dir", type=Path, default=REPO / "runs" / "study")
    parser.add_argument("--suspects", type=Path, help="suspects.csv from `catdog inspect` (default: run it)")
    parser.add_argument("--only", help="run only the variants whose name contains this text")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    args.features_dir.mkdir(parents=True, exist_ok=True)
    suspects, suspects_file = suspect_names(args.suspects, args.data, args.features_dir)
    variants = [v for v in VARIANTS if not args.only or args.only in v.name or v is DEFAULT]
    rows, losses = [], {}
    for v in variants:
        start = time.perf_counter()
        data, names = variant_data(v, args.features_dir, args.data, suspects)
        options = Options(views=("mirror",) if v.mirror else (), tta=v.tta, temperature=v.temperature)
        result = nested_cv(data, options, k=5, inner_k=5, seed=args.seed)
        e = estimate(data.y, result.p_dog, result.folds, seed=args.seed)
        losses[v.name] = per_photo_log_loss(data.y, result.p_dog)
        rows.append({
            "variant": v.name, "log_loss": e["log_loss"], "lo": e["log_loss_95"][0], "hi": e["log_loss_95"][1],
            "fold_min": min(e["fold_log_loss"]), "fold_max": max(e["fold_log_loss"]), "fold_sd": e["fold_log_loss_sd"],
            "accuracy": e["accuracy"], "chosen_l2": [r.selection.l2 for r in result.records],
            "temperatures": [r.selection.temperature for r in result.records],
            "feature_dim": int(data.x.shape[1]), "n": int(len(data.y)),
            "n_train_excluded": int((~data.train_mask).sum()) if data.train_mask is not None else 0,
            "seconds": round(time.perf_counter() - start, 1), "note": v.note,
        })
        print(f"{v.name}: {e['log_loss']:.4f} [{e['log_loss_95'][0]:.4f}, {e['log_loss_95'][1]:.4f}] "
              f"({rows[-1]['seconds']:.0f} s)", flush=True)
    base = losses[DEFAULT.name]
    for r in rows:
        diff = losses[r["variant"]] - base
        r["delta"] = float(diff.mean())
        r["delta_lo"], r["delta_hi"] = bootstrap_interval(diff, seed=args.seed) if r["variant"] != DEFAULT.name else (0.0, 0.0)
    table(rows, [("variant", "variant", "<44"), ("log_loss", "log loss", ".4f"), ("lo", "95% lo", ".4f"), ("hi", "95% hi", ".4f"),
                 ("fold_min", "fold min", ".4f"), ("fold_max", "fold max", ".4f"), ("accuracy", "accuracy", ".2%"),
                 ("delta", "vs default", "+.4f"), ("delta_lo", "diff lo", "+.4f"), ("delta_hi", "diff hi", "+.4f")])
    save("choices", rows, {
        "photos": str(args.data), "procedure": "nested CV: 5 outer folds, l2 chosen by 5-fold CV inside each (grid "
        f"{list(Options().l2_grid)}), L-BFGS logistic head; bootstrap 2000 resamples of photos",
        "seed": args.seed, "suspects_file": str(suspects_file), "suspects": len(suspects),
        "default": DEFAULT.name,
    })
    return 0


if __name__ == "__main__":
    from bench.__main__ import run_main

    sys.exit(run_main(main))
