"""Would more photos help the head? `python -m bench.curve`.

A learning curve of `catdog run`'s training procedure on the shared photos: in each of the 5
outer folds, a seeded fraction of the training photos (stratified by class) chooses l2 by 5-fold
CV (catdog.training.cv.select) and fits the head (cv.fit); the outer fold, every photo of it, is
scored. The scored photos are the same at every fraction, so the columns compare. Two fold sets:
clean (stratified outer folds, as `make run`'s estimate) and spotted cats (bench.robust's: the
cats MobileNetV2's ImageNet top calls "Egyptian cat", all held out in one fold, the kind of cat
issue 26's other source got wrong). Each fraction below 1 is drawn DRAWS times.

What it answers: the slope of log loss against log2(training photos). If doubling the photos
moves the held-out log loss little, more labelled photos of the same source — or pseudo-labels
of the 500 unlabelled Kaggle test photos, which are at best as good as labelled ones — cannot
move it much either, and the limit is the features.

Prints a table and writes bench/results/curve.json. Features come from bench.choices' cache
(--features-dir, shared with bench.robust).
"""

from __future__ import annotations

import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from bench.__main__ import save, table  # noqa: E402
from bench import robust as R  # noqa: E402
from bench.choices import feature_file  # noqa: E402

FRACTIONS = (0.25, 0.5, 0.75, 1.0)
DRAWS = 5  # subsamples of each fraction below 1
EXTRA_PHOTOS = 500  # the unlabelled Kaggle test photos in ../shared, if they were labelled
WORST = 10  # photos whose share of the clean log loss is reported (every photo trained on)


def subsample(train, labels, fraction: float, rng):
    """A stratified, seeded `fraction` of the photos `train` (sorted)."""
    import numpy as np

    if fraction >= 1:
        return train
    keep = [rng.choice(train[labels[train] == c], int(round(fraction * np.sum(labels[train] == c))), replace=False)
            for c in np.unique(labels[train])]
    return np.sort(np.concatenate(keep))


def held_out_p_dog(data, options, fold_of, fraction: float, seed: int, draw: int):
    """(N,) P(dog) of every photo from the head of its outer fold, trained on `fraction` of that
    fold's training photos, and the mean number of training photos."""
    import numpy as np

    from catdog.training.cv import default_workers, fit, select

    rng = np.random.default_rng([seed, draw, int(fraction * 1000)])
    p, sizes = np.zeros(len(data.y)), []
    for f in range(int(fold_of.max()) + 1):
        train = subsample(np.flatnonzero(fold_of != f), data.y, fraction, rng)
        test = np.flatnonzero(fold_of == f)
        selection = select(data, train, options, 5, seed + 1 + f, default_workers())  # inner folds side by side
        p[test] = data.p_dog(fit(data, train, options, selection.head_l2), test)
        sizes.append(len(train))
    return p, float(np.mean(sizes))


def curve(c: R.Candidate, folds: R.Folds, features_dir: Path, photos: Path, seed: int) -> list[dict]:
    """One row per fraction: clean and spotted-cats log loss (mean over draws, and their range)."""
    import numpy as np

    from catdog.training import metrics as M
    from catdog.training.cv import per_photo_log_loss, stratified_folds

    data = R.candidate_data(c, features_dir, photos)
    options = c.options(data.x.shape[1])
    sets = {"clean": (stratified_folds(data.y, 5, seed), np.ones(len(data.y), bool)),
            "spotted_cats": (folds.spotted, folds.spotted_cats)}
    rows = []
    for fraction in FRACTIONS:
        row = {"candidate": c.name, "fraction": fraction, "photos": len(data.y)}
        for name, (fold_of, scored) in sets.items():
            losses = []
            for draw in range(DRAWS if fraction < 1 else 1):
                p, size = held_out_p_dog(data, options, fold_of, fraction, seed, draw)
                losses.append(M.log_loss(data.y[scored], p[scored]))
            row[name], row[f"{name}_range"] = float(np.mean(losses)), [min(losses), max(losses)]
            row[f"{name}_training_photos"] = size
            if name == "clean" and fraction >= 1:  # where the loss is: the worst photos' share of it
                loss = per_photo_log_loss(data.y, p)
                worst = np.argsort(-loss)[:WORST]
                names = feature_file(features_dir, photos, c.backbones[0], c.size).names
                row["worst"] = [{"photo": names[i], "log_loss": float(loss[i]), "p_dog": float(p[i])} for i in worst]
                row["worst_share"] = float(loss[worst].sum() / loss.sum())
        rows.append(row)
        print(f"{c.name}, {fraction:.0%} of the training photos ({row['clean_training_photos']:.0f}): clean "
              f"{row['clean']:.4f}, spotted cats {row['spotted_cats']:.4f}", flush=True)
    return rows


def per_doubling(rows: list[dict], key: str) -> float:
    """Least-squares slope of log loss against log2(training photos): the change per doubling."""
    import numpy as np

    n = np.log2([r[f"{key}_training_photos"] for r in rows])
    return float(np.polyfit(n, [r[key] for r in rows], 1)[0])


def main() -> int:
    import numpy as np

    args = R.study_arguments("python -m bench.curve", __doc__)
    start = time.perf_counter()
    folds = R.fold_sets(args.features_dir, args.data, args.seed)
    chosen = next(c for c in R.CANDIDATES if c.name == R.CHOSEN)
    rows, slopes = [], []
    for c in (chosen, R.V2):
        mine = curve(c, folds, args.features_dir, args.data, args.seed)
        rows += mine
        slope = {"candidate": c.name, **{f"{k}_per_doubling": per_doubling(mine, k) for k in ("clean", "spotted_cats")}}
        # what EXTRA_PHOTOS more labelled photos would buy on the curve's slope (the refit on every photo)
        photos = mine[-1]["photos"]
        more = np.log2((photos + EXTRA_PHOTOS) / photos)
        slope.update({f"{k}_with_{EXTRA_PHOTOS}_more": slope[f"{k}_per_doubling"] * more for k in ("clean", "spotted_cats")})
        slopes.append(slope)
    for r in rows:
        for k in ("clean", "spotted_cats"):
            r[f"{k}_text"] = f"{r[k]:.4f} ({r[k + '_range'][0]:.4f} .. {r[k + '_range'][1]:.4f})"
    print(f"\nheld-out log loss against the share of each outer fold's training photos "
          f"(mean over {DRAWS} draws, their range):")
    table(rows, [("candidate", "candidate", "<64"), ("fraction", "share", ".0%"), ("clean_training_photos", "photos", ".0f"),
                 ("clean_text", "clean", ">26"), ("spotted_cats_text", "spotted cats", ">26")])
    print("\nper doubling of the training photos (least squares on log2 photos), and on that slope "
          f"{EXTRA_PHOTOS} more labelled photos:")
    table(slopes, [("candidate", "candidate", "<64"), ("clean_per_doubling", "clean/doubling", "+.4f"),
                   ("spotted_cats_per_doubling", "spotted/doubling", "+.4f"),
                   (f"clean_with_{EXTRA_PHOTOS}_more", f"clean +{EXTRA_PHOTOS}", "+.4f"),
                   (f"spotted_cats_with_{EXTRA_PHOTOS}_more", f"spotted +{EXTRA_PHOTOS}", "+.4f")])
    for r in rows:
        if "worst" in r:
            print(f"{r['candidate']}: the worst {WORST} photos carry {r['worst_share']:.0%} of the clean log loss: "
                  + ", ".join(f"{w['photo']} ({w['log_loss']:.2f})" for w in r["worst"]))
    save("curve", rows, {"per_doubling": slopes, "photos": str(args.data), "seed": args.seed, "draws": DRAWS,
                         "seconds": round(time.perf_counter() - start, 1),
                         "procedure": "per outer fold: a stratified fraction of its training photos chooses l2 by 5-fold CV "
                         "and fits the head; every photo of the outer fold scored"})
    return 0


if __name__ == "__main__":
    from bench.__main__ import run_main

    sys.exit(run_main(main))
