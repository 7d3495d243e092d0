"""Squash, centre crop or letterbox? `python -m bench.resize`.

catdog squashes the whole photo to S x S (catdog.data.ingest.resize: aspect ratio not kept; the
shared photos' median aspect is 4:3, so most animals are seen 25 % narrower than they are). The
README gave a reason (a centre crop loses off-centre heads and tails) but no measurement. Every
row here is `make run`'s default (V1 + V2 at 288, mirror rows, the ImageNet dog-vs-cat prior, l2
by clean and shifted CV) with one resize policy applied to every photo and every view before the
network, in training and in scoring alike:

* squash: the whole photo resized to S x S (as shipped);
* centre: the central square (side = the shorter side), then resized: aspect kept, the ends of
  the longer side cropped (ImageNet's evaluation crop, without its 87.5 % zoom);
* pad: the whole photo centred on a mid-gray square (side = the longer side), then resized:
  aspect kept, nothing cropped, fewer pixels on the animal (gray 128 is 0 after MobileNet's
  preprocessing, what the convolutions' own zero padding shows).

Columns as bench.robust's (clean, the shifts, group folds, breeds, held-out spotted cats) plus
bench.proxies' spotted close-ups (the 373 spotted cats held out, 8 close-up crops each), and each
policy against squash photo by photo with paired bootstrap 95 % intervals (negative: better than
squash). A policy would replace squash only if its clean interval lay below 0 and spotted
close-ups did not get worse.

Features: squash's are bench.robust's cache (--features-dir); each other policy's are extracted
into --features-dir/resize_POLICY on first use (about 6 minutes a policy here; the whole study
takes 4 minutes once cached). Prints a table and writes bench/results/resize.json.
"""

from __future__ import annotations

import sys
import time
from contextlib import contextmanager
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from bench.__main__ import save, table  # noqa: E402
from bench import proxies as P  # noqa: E402
from bench import robust as R  # noqa: E402

GRAY = (128, 128, 128)


def centre_square(im):
    """The central square of `im` (side: its shorter side)."""
    w, h = im.size
    side = min(w, h)
    left, top = (w - side) // 2, (h - side) // 2
    return im.crop((left, top, left + side, top + side))


def padded_square(im):
    """`im` centred on a GRAY square (side: its longer side)."""
    from PIL import Image

    w, h = im.size
    side = max(w, h)
    canvas = Image.new("RGB", (side, side), GRAY)
    canvas.paste(im, ((side - w) // 2, (side - h) // 2))
    return canvas


# name -> (what it does; the photo -> square function applied before the resize to S x S, None: squash)
POLICIES = {
    "squash": ("the whole photo resized to S x S, aspect not kept (as shipped)", None),
    "centre": ("the central square, then resized: aspect kept, the longer side's ends cropped", centre_square),
    "pad": ("the whole photo on a mid-gray square, then resized: aspect kept, nothing cropped", padded_square),
}


@contextmanager
def resize_policy(square):
    """Every photo decoded for features (plain and every view) goes through `square` before the
    squash to S x S; None leaves catdog's squash as it is."""
    from catdog.data import batches, ingest

    squash = ingest.resize
    if square is not None:
        def resize(im, size=ingest.IMAGE_SIZE):
            return squash(square(im), size)
        ingest.resize = batches.resize = resize  # decode() looks `resize` up in ingest; batches imported the name
    try:
        yield
    finally:
        ingest.resize = batches.resize = squash


def spotted_closeups(c: R.Candidate, data_c, options, features_dir: Path, data: Path, folds: R.Folds, seed: int):
    """Per spotted cat, its mean log loss over P.CROPS close-up crops, scored by the head the real
    selection fits without any spotted cat (bench.proxies' check 1, for one candidate)."""
    import numpy as np

    from catdog.training.cv import per_photo_log_loss

    head = P.spotted_head(data_c, options, folds, seed)[1]
    y = folds.labels[folds.spotted_cats]
    return np.mean([per_photo_log_loss(y, head.p_dog(x)) for x in P.candidate_crops(c, P.spotted_crops(features_dir, data, folds.spotted_cats))], 0)


def main() -> int:
    from catdog.training.cv import bootstrap_interval

    args = R.study_arguments("python -m bench.resize", __doc__, "run only these policies, separated by '|' (squash always)")
    folds = R.fold_sets(args.features_dir, args.data, args.seed)
    chosen = next(c for c in R.CANDIDATES if c.name == R.CHOSEN)
    wanted = [w for w in (args.only or "").split("|") if w]
    rows, per_photo, closeups = [], {}, {}
    for name, (what, square) in POLICIES.items():
        if wanted and name != "squash" and name not in wanted:
            continue
        start = time.perf_counter()
        features_dir = args.features_dir if square is None else args.features_dir / f"resize_{name}"
        features_dir.mkdir(exist_ok=True)
        with resize_policy(square):
            data_c = R.candidate_data(chosen, features_dir, args.data)
            options = chosen.options(data_c.x.shape[1])
            row, per_photo[name] = R.measure(data_c, options, folds, args.seed)
            closeups[name] = spotted_closeups(chosen, data_c, options, features_dir, args.data, folds, args.seed)
        row = {"candidate": name, "policy": what, **row, "spotted_closeups": float(closeups[name].mean()),
               "seconds": round(time.perf_counter() - start, 1)}
        rows.append(row)
        print(f"{name}: clean {row['clean']:.4f}, mean shifted {row['mean_shifted']:.4f}, spotted close-ups "
              f"{row['spotted_closeups']:.4f} ({row['seconds']:.0f} s)", flush=True)
    R.paired(rows, per_photo, "squash", args.seed, "vs_squash")
    for r in rows:
        diff = closeups[r["candidate"]] - closeups["squash"]
        r["vs_squash_closeups"] = float(diff.mean())
        r["vs_squash_closeups_95"] = [0.0, 0.0] if r["candidate"] == "squash" else list(bootstrap_interval(diff, seed=args.seed))
        for key in ("clean", "groups", "closeups"):
            lo, hi = r[f"vs_squash_{key}_95"]
            mean = r.get(f"vs_squash_{key}")  # none for groups: R.paired keeps its interval alone
            r[f"{key}_text"] = ("" if mean is None else f"{mean:+.4f} ") + f"({lo:+.4f} .. {hi:+.4f})"
    from catdog.data import SHIFTS

    table(rows, [("candidate", "policy", "<8"), ("clean", "clean", ".4f"), ("accuracy", "acc", ".2%"),
                 *((s, s, ".4f") for s in SHIFTS), ("shifts", "shifts", ".4f"), ("groups", "groups", ".4f"),
                 ("breeds", "breeds", ".4f"), ("spotted_cats", "spotted cats", ".4f"),
                 ("spotted_closeups", "close-ups", ".4f"), ("score", "score", ".4f")])
    print("\nagainst squash, photo by photo (paired bootstrap 95 %; negative: better than squash):")
    table(rows, [("candidate", "policy", "<8"), ("clean_text", "clean", ">28"), ("groups_text", "groups", ">22"),
                 ("closeups_text", "spotted close-ups", ">28")])
    save("resize", rows, {"photos": str(args.data), "seed": args.seed, "candidate": R.CHOSEN, "crops": P.CROPS,
                          "policies": {k: v[0] for k, v in POLICIES.items()}})
    return 0


if __name__ == "__main__":
    from bench.__main__ import run_main

    sys.exit(run_main(main))
