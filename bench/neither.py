"""`python -m bench neither`: how the "neither" answer's P(pet) is computed, compared on a RUN_DIR's
cached features (RUN_DIR/features.h5 and negatives.h5, from `make run`): the ImageNet top alone,
a detector on the features alone, the detector with the ImageNet log-odds as a fitted feature or
as a fixed offset (shipped), and the offset as a max difference instead of log-sum-exp.

Each row: nested 5-fold CV (the detector fitted and the threshold chosen inside each outer fold),
keep rate on the cats and dogs, reject rate on the negatives, and a shift made by hand: the
negatives whose ImageNet top-1 is an animal class are left out of the fit, then scored.
"""

from __future__ import annotations

import numpy as np

from catdog.training import pet as P


def _scores(x, y, offset, train, test, fixed: bool):
    if fixed:
        w, c = P._fit(x[train], y[train], offset[train])
        return x[test] @ w + c + offset[test]
    # the offset as one more (standardised) feature with a fitted weight
    x1 = np.c_[x, offset]
    w, c = P._fit(x1[train], y[train], np.zeros(len(train)))
    return x1[test] @ w + c


def _nested(x, y, offset, keep: float, fixed: bool, seed: int = 0) -> tuple[float, float]:
    from catdog.training.cv import stratified_folds

    outer = stratified_folds(y.astype(int), 5, seed)
    kept = np.zeros(len(y), bool)
    for k in range(5):
        train, test = np.flatnonzero(outer != k), np.flatnonzero(outer == k)
        inner_folds = stratified_folds(y[train].astype(int), 5, seed + 1)
        inner = np.zeros(len(train))
        for j in range(5):
            inner[inner_folds == j] = _scores(x, y, offset, train[inner_folds != j], train[inner_folds == j], fixed)
        t = np.quantile(inner[y[train] == 1], 1 - keep)
        kept[test] = _scores(x, y, offset, train, test, fixed) >= t
    return float(kept[y == 1].mean()), float((~kept[y == 0]).mean())


def _held_out_animals(x, y, offset, animal, keep: float, fixed: bool) -> float:
    rows = np.flatnonzero(~animal)
    everyone = np.arange(len(y))
    scores = _scores(x, y, offset, rows, everyone, fixed)
    t = np.quantile(scores[y == 1], 1 - keep)
    return float(np.mean(scores[animal] < t))


def cmd_neither(args) -> None:
    from pathlib import Path

    from bench.__main__ import save, table
    from catdog.features import load_features

    run = Path(args.run)
    pets, negatives = load_features(run / "features.h5"), load_features(run / "negatives.h5")
    top, note = P.imagenet_top(pets.backbone, pets.weights)
    if top is None:
        raise SystemExit(f"{run}: {note}; this comparison needs a backbone with an ImageNet top")
    xp = pets.features[pets.labels >= 0].astype(np.float64)
    x = np.vstack([xp, negatives.features.astype(np.float64)])
    y = np.r_[np.ones(len(xp)), np.zeros(len(negatives.features))]
    z = x[:, top.start : top.stop] @ top.kernel + top.bias
    is_pet = np.zeros(1000, bool)
    is_pet[list(P.IMAGENET_PET_CLASSES)] = True
    lse = P._logsumexp(z[:, is_pet]) - P._logsumexp(z[:, ~is_pet])
    max_diff = z[:, is_pet].max(1) - z[:, ~is_pet].max(1)
    animal = (y == 0) & (z.argmax(1) < 398)  # ImageNet classes 0-397 are animals
    at = np.log(0.1 / 0.9)  # the first measurement: P(pet classes) >= 0.1 under the top
    rows = [{"p_pet": "ImageNet top alone at P 0.1", "keep_target": None, "keep": float(np.mean(lse[y == 1] >= at)),
             "reject": float(np.mean(lse[y == 0] < at)), "animals_held_out": None}]
    for keep in (0.995, 0.997):
        t = np.quantile(lse[y == 1], 1 - keep)
        rows.append({"p_pet": "ImageNet top alone", "keep_target": keep, "keep": float(np.mean(lse[y == 1] >= t)),
                     "reject": float(np.mean(lse[y == 0] < t)), "animals_held_out": None})
        for name, offset, fixed in (("detector alone", np.zeros(len(y)), True), ("detector + log-odds feature", lse, False),
                                    ("detector + max-difference offset", max_diff, True), ("detector + log-odds offset (shipped)", lse, True)):
            k, r = _nested(x, y, offset, keep, fixed)
            rows.append({"p_pet": name, "keep_target": keep, "keep": k, "reject": r,
                         "animals_held_out": _held_out_animals(x, y, offset, animal, keep, fixed)})
    print(f"{len(xp)} cats and dogs, {len(negatives.features)} negatives ({int(animal.sum())} of them animals by ImageNet top-1); {pets.backbone}")
    table(rows, [("p_pet", "P(pet) from", "<40"), ("keep_target", "target", ".3f"), ("keep", "keep", ".4f"),
                 ("reject", "reject", ".4f"), ("animals_held_out", "animals held out", ".3f")])
    save("neither", rows, {"run": str(run), "backbone": pets.backbone, "n_pets": len(xp), "n_negatives": len(negatives.features)})
