"""Other ways to fit `make run`'s head on the same features: `python -m bench.heads`.

Every row starts from one head on the default's data (V1 + V2 at 288, mirror views, the ImageNet
dog-vs-cat prior as the last column: bench.robust's SINGLE_HEAD, `make run`'s head)
and changes one thing in how the linear head is fitted; all are scored by bench.robust.measure on
bench.robust's folds (clean, shifts, the two group fold sets, breeds, held-out spotted cats).
Every variant is still one Dense layer on the same features, so each could ship with no change
to the model's graph:

* a block of columns scaled by s before the L2 fit (the penalty on their weights becomes 1/s²;
  the scale folds into the kernel);
* the prior over other ImageNet classes (wild cats 286-293 on the cat side, wild canids 269-280 on
  the dog side): the prior column replaced;
* the prior from MobileNetV2 at 224, where its ImageNet top was trained (a second extraction);
* late fusion (catdog.training.cv.Options.parts): the mean logit of heads fitted on parts of the
  features (V1 + prior, V2 + prior, all), each with its own l2 chosen by CV;
* standardised columns (the L2 then weighs every feature alike).

Prints a table beside the single head's row, with paired bootstrap intervals against it, and writes
bench/results/heads.json. Features come from bench.choices' cache (--features-dir, shared with
bench.robust).
"""

from __future__ import annotations

import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from bench.__main__ import save, table  # noqa: E402
from bench import robust as R  # noqa: E402

V1_COLUMNS = slice(0, 1024)  # MobileNet V1's pooled features come first in the fused features
PRIOR = slice(-1, None)  # the prior is the head's last column
WILD_CANIDS = tuple(range(269, 281))  # timber wolf ... grey fox
WILD_CATS = tuple(range(286, 294))  # cougar, lynx, leopard, snow leopard, jaguar, lion, tiger, cheetah


def transform(data, f):
    """Data with f applied to every feature matrix (photos, views, shifted views)."""
    from catdog.training.cv import Data

    return Data(f(data.x), data.y, {k: f(v) for k, v in data.views.items()}, data.train_mask,
                {k: (at, f(v)) for k, (at, v) in data.shifted.items()})


def scaled(columns: slice, factor: float):
    def f(x):
        x = x.copy()
        x[:, columns] *= factor
        return x

    return f


def prior_over(dogs, cats):
    """The last column replaced by log P(dogs) - log P(cats) under MobileNetV2's top."""
    from scipy.special import logsumexp

    from catdog.training.pet import imagenet_top

    top, note = imagenet_top(",".join(R.FUSED), "imagenet,imagenet")
    if top is None:
        raise SystemExit(f"bench.heads: {note}")

    def f(x):
        z = top.logits(x[:, :-1])
        x = x.copy()
        x[:, -1] = logsumexp(z[:, list(dogs)], 1) - logsumexp(z[:, list(cats)], 1)
        return x

    return f


def prior_at(size: int, base, features_dir: Path, data: Path):
    """`base` with its prior column computed from MobileNetV2's features at `size` (each view and
    shift from the same view at that size)."""
    import numpy as np

    from bench.choices import feature_file
    from catdog.training.cv import Data
    from catdog.training.pet import imagenet_top

    top, _ = imagenet_top("mobilenet_v2", "imagenet")
    names = feature_file(features_dir, data, "mobilenet_v2", 288).names

    def prior(view: str) -> dict:
        subset = None if view in ("plain", *R.FULL_VIEWS) else R.SHIFT_PHOTOS
        fs = feature_file(features_dir, data, "mobilenet_v2", size, view, subset)
        return dict(zip(fs.names, top.dog_log_odds(fs.features)))

    def replaced(x, by: dict, rows):
        x = x.copy()
        x[:, -1] = np.array([by[names[i]] for i in rows])
        return x

    every = np.arange(len(names))
    return Data(replaced(base.x, prior("plain"), every), base.y,
                {v: replaced(xv, prior(v), every) for v, xv in base.views.items()}, base.train_mask,
                {v: (at, replaced(xv, prior(v), at)) for v, (at, xv) in base.shifted.items()})


def variants(base, features_dir: Path, data: Path) -> dict:
    """name -> (Data, Options fields): the features each variant's head is fitted on, and what
    the procedure changes."""
    from catdog.training.pet import IMAGENET_CAT_CLASSES as CATS, IMAGENET_DOG_CLASSES as DOGS
    from catdog.training.train import head_parts

    n = base.x.shape[1]
    v1_prior, v2_prior, every = head_parts(",".join(R.FUSED), n, prior=True)
    mu, sd = base.x.mean(0), base.x.std(0) + 1e-6  # every photo's: a scale, not a fit
    return {
        R.SINGLE_HEAD: (base, {}),
        "V1 columns x 0.5 (4x the penalty on their weights)": (transform(base, scaled(V1_COLUMNS, 0.5)), {}),
        "V1 columns x 0.25 (16x)": (transform(base, scaled(V1_COLUMNS, 0.25)), {}),
        "prior x 3 (a ninth of the penalty on its weight)": (transform(base, scaled(PRIOR, 3.0)), {}),
        "prior x 0.3 (11x)": (transform(base, scaled(PRIOR, 0.3)), {}),
        "prior: + wild cats on the cat side": (transform(base, prior_over(DOGS, CATS + WILD_CATS)), {}),
        "prior: + wild canids on the dog side": (transform(base, prior_over(DOGS + WILD_CANIDS, CATS)), {}),
        "prior from MobileNetV2 at 224": (prior_at(224, base, features_dir, data), {}),
        "late fusion: V1 + prior, V2 + prior (mean logit)": (base, {"parts": (v1_prior, v2_prior)}),
        "late fusion: V1 + prior, V2 + prior, all (mean logit)": (base, {"parts": (v1_prior, v2_prior, every)}),
        "standardised columns": (transform(base, lambda x: (x - mu) / sd), {"l2_grid": STANDARDISED_GRID}),
    }


# standardised columns need a penalty about 10x larger than raw pooled features (measured: the
# default grid's largest, 3e-2, would be chosen at its edge)
STANDARDISED_GRID = (3e-3, 1e-2, 3e-2, 1e-1, 3e-1)


def main() -> int:
    from catdog.data import SHIFTS
    from catdog.training.cv import Options

    args = R.study_arguments("python -m bench.heads", __doc__, "run only the variants whose name contains this text (and the default)")
    chosen = next(c for c in R.CANDIDATES if c.name == R.SINGLE_HEAD)
    base = R.candidate_data(chosen, args.features_dir, args.data)
    folds = R.fold_sets(args.features_dir, args.data, args.seed)
    rows, per_photo = [], {}
    for name, (data, changes) in variants(base, args.features_dir, args.data).items():
        if args.only and args.only not in name and name != R.SINGLE_HEAD:
            continue
        start = time.perf_counter()
        row, per_photo[name] = R.measure(data, Options(views=chosen.views, robust=chosen.robust, **changes), folds, args.seed)
        rows.append({"candidate": name, **row, "seconds": round(time.perf_counter() - start, 1)})
        print(f"{name}: clean {row['clean']:.4f}, mean shifted {row['mean_shifted']:.4f}, spotted cats {row['spotted_cats']:.4f} "
              f"({rows[-1]['seconds']:.0f} s)", flush=True)
    R.paired(rows, per_photo, R.SINGLE_HEAD, args.seed, "vs_default")
    table(rows, [("candidate", "variant", "<56"), ("clean", "clean", ".4f"), ("accuracy", "acc", ".2%"),
                 ("shifts", "shifts", ".4f"), ("lowres", "lowres", ".4f"), ("groups V1 + V2", "groups V1+V2", ".4f"),
                 ("groups V2", "groups V2", ".4f"), ("breeds", "breeds", ".4f"), ("spotted_cats", "spotted cats", ".4f"),
                 ("mean_shifted", "mean shifted", ".4f"), ("vs_default", "vs default", "+.4f"), ("score", "score", ".4f")])
    save("heads", rows, {
        "photos": str(args.data), "seed": args.seed, "reference": R.SINGLE_HEAD, "shifts": list(SHIFTS),
        "procedure": "bench.robust.measure on bench.robust's folds (5 x 5 nested CV); late fusion: "
        "catdog.training.cv.Options.parts",
    })
    return 0


if __name__ == "__main__":
    from bench.__main__ import run_main

    sys.exit(run_main(main))
