"""`python -m bench neither`: how the "neither" answer's P(pet) is computed, compared on a RUN_DIR's
cached features (RUN_DIR/features.h5 and negatives.h5, from `make run`): the ImageNet top alone,
a detector on the features alone, the detector with the ImageNet log-odds as a fitted feature or
as a fixed offset (shipped), and the offset as a max difference instead of log-sum-exp.

Each row: nested 5-fold CV (the detector fitted and the threshold chosen inside each outer fold),
keep rate on the cats and dogs, reject rate on the negatives, and a shift made by hand: the
negatives whose ImageNet top-1 is an animal class are left out of the fit, then scored.

`--shifts`: the shipped design's keep and reject rates under each shift of catdog.data.SHIFTS, on
bench.robust's feature cache (`--features-dir`) and the run's folder of negatives (`shift_rows`);
and how many of the spotted cats it keeps when it never saw one, as they are and as close-up crops
(`spotted_keep`).
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


def _view_features(features_dir, folder, backbones, size: int, view: str, labelled: bool):
    """(names, features) of one view of the photos in `folder`, every backbone side by side: the
    labelled photos via bench.choices.feature_file (shifts on its seeded subset), or every photo of
    a folder of negatives (cached in features_dir as negatives_BACKBONE_SIZE_VIEW.h5)."""
    from bench.robust import SHIFT_PHOTOS, FULL_VIEWS
    from bench.choices import feature_file
    from catdog.data import scan
    from catdog.features import extract_features, load_features

    parts = []
    for b in backbones:
        if labelled:
            parts.append(feature_file(features_dir, folder, b, size, view, None if view in ("plain", *FULL_VIEWS) else SHIFT_PHOTOS))
            continue
        path = features_dir / f"negatives_{b}_{size}_{view}.h5"
        if not path.is_file():
            extract_features(scan(folder)[0], path, b, image_size=size, view=view, progress=False)
        parts.append(load_features(path))
    assert all(p.names == parts[0].names for p in parts), "feature files hold different photos"
    return list(parts[0].names), np.hstack([p.features for p in parts]).astype(np.float64)


def shift_rows(top, backbones, size: int, data, negatives_dir, features_dir, keep: float = P.KEEP, seed: int = 0) -> list[dict]:
    """Out-of-fold keep and reject rates of the shipped detector under each shift (catdog.data.SHIFTS)
    of the cats and dogs and of the photos with neither: nested 5-fold CV over photos, each outer
    fold's detector and threshold (from the inner folds' plain cats and dogs, as shipped) fitted
    without the photo or any view of it. Four designs: trained on the plain photos alone (before);
    with the PET_VIEWS views of SHIFT_PHOTOS of the cats and dogs, a seeded draw from the shifted
    ones (shipped: `catdog run` extracts the shifted views of that many photos); that and every
    shifted view of the negatives as more negatives; and every view of every training photo, cats,
    dogs and negatives alike."""
    from catdog.data import SHIFTS
    from catdog.training.cv import stratified_folds
    from catdog.training.settings import SHIFT_PHOTOS

    names, xp = _view_features(features_dir, data, backbones, size, "plain", True)
    _, xn = _view_features(features_dir, negatives_dir, backbones, size, "plain", False)
    row = {n: i for i, n in enumerate(names)}
    n_p = len(xp)
    photo = {"plain": (np.arange(n_p + len(xn)), np.vstack([xp, xn]))}
    for view in SHIFTS:
        pet_names, pet_x = _view_features(features_dir, data, backbones, size, view, True)
        _, neg_x = _view_features(features_dir, negatives_dir, backbones, size, view, False)
        photo[view] = (np.r_[[row[n] for n in pet_names], n_p + np.arange(len(xn))], np.vstack([pet_x, neg_x]))
    y = np.r_[np.ones(n_p), np.zeros(len(xn))]
    offset = {v: top.log_odds(x) for v, (_, x) in photo.items()}
    outer = stratified_folds(y.astype(int), 5, seed)

    shifted_pets = np.unique(photo["gray"][0][photo["gray"][0] < n_p])
    shipped_subset = np.random.default_rng(seed).permutation(shifted_pets)[:SHIFT_PHOTOS]

    def fit(train_mask, views, subset, negative_views):
        """The detector on the photos of train_mask, plus the cats' and dogs' `views` (of the photos
        in `subset` alone, where it is given) and the negatives' `negative_views`."""
        def learnt(v, idx):
            pets = idx < n_p
            chosen = pets & (subset is None or np.isin(idx, subset))
            return (v == "plain") | ((v in views) & chosen) | ((v in negative_views) & ~pets)
        parts = [(idx, x, offset[v], train_mask[idx] & learnt(v, idx)) for v, (idx, x) in photo.items()]
        x = np.vstack([x[m] for _, x, _, m in parts])
        yy = np.concatenate([y[idx[m]] for idx, _, _, m in parts])
        return P._fit(x, yy, np.concatenate([o[m] for _, _, o, m in parts]))

    rows = []
    shipped = f"+ {', '.join(P.PET_VIEWS)} view of {len(shipped_subset)} cats and dogs"
    designs = (  # (name, the cats' and dogs' views, of which of them (None: all), the negatives' views)
        ("plain photos (before)", (), None, ()),
        (f"{shipped} (shipped)", P.PET_VIEWS, shipped_subset, ()),
        (f"{shipped}, every view of the negatives", P.PET_VIEWS, shipped_subset, tuple(SHIFTS)),
        ("+ every view of every photo", tuple(SHIFTS), None, tuple(SHIFTS)),
    )
    for design, views, subset, negative_views in designs:
        kept = {v: np.zeros(len(idx), bool) for v, (idx, _) in photo.items()}
        for k in range(5):
            train = np.flatnonzero(outer != k)
            inner = stratified_folds(y[train].astype(int), 5, seed + 1)
            inner_scores = []
            for j in range(5):
                w, c = fit(np.isin(np.arange(len(y)), train[inner != j]), views, subset, negative_views)
                held = train[(inner == j) & (y[train] == 1)]
                inner_scores.append(xp[held] @ w + c + offset["plain"][held])
            t = np.quantile(np.concatenate(inner_scores), 1 - keep)
            w, c = fit(outer != k, views, subset, negative_views)
            for v, (idx, x) in photo.items():
                test = outer[idx] == k
                kept[v][test] = x[test] @ w + c + offset[v][test] >= t
        for what, cls in (("cats and dogs kept", 1), ("photos with neither rejected", 0)):
            r = {"design": design, "rate": what}
            for v, (idx, _) in photo.items():
                mine = y[idx] == cls
                r[v] = float(kept[v][mine].mean() if cls else (~kept[v][mine]).mean())
                r[f"n_{v}"] = int(mine.sum())
            rows.append(r)
    return rows


def spotted_keep(top, backbones, size: int, data, negatives_dir, features_dir, seed: int = 0) -> dict:
    """The shipped detector (catdog.training.pet.fit_pet, with the gray view of a seeded SHIFT_PHOTOS
    of the cats and dogs) fitted without the cats MobileNetV2's ImageNet top calls "Egyptian cat"
    (spotted and ticked coats: bench.robust's spotted cats, issue 26's other source's kind of cat),
    its threshold chosen as shipped; the share of those cats it keeps, as they are and as each of
    bench.proxies' close-up crops (close-up portraits of a kind of cat it never saw)."""
    from bench import robust as R
    from bench.proxies import CROPS, spotted_crops
    from catdog.training.settings import SHIFT_PHOTOS

    names, xp = _view_features(features_dir, data, backbones, size, "plain", True)
    _, xn = _view_features(features_dir, negatives_dir, backbones, size, "plain", False)
    gray_names, xg = _view_features(features_dir, data, backbones, size, "gray", True)
    kind, y = R.imagenet_kinds(features_dir, data)
    spotted = (kind == R.EGYPTIAN_CAT) & (y == 0)
    others = np.flatnonzero(~spotted)
    row_of = {names[i]: r for r, i in enumerate(others)}  # a photo's row among the others
    gray = np.flatnonzero([n in row_of for n in gray_names])
    gray = np.random.default_rng(seed).permutation(gray)[:SHIFT_PHOTOS]
    fit = P.fit_pet(xp[others], xn, top, seed, views={"gray": (np.array([row_of[gray_names[i]] for i in gray]), xg[gray])})
    by_backbone = spotted_crops(features_dir, data, spotted, backbones)
    crops = [np.hstack([by_backbone[b][k] for b in backbones]) for k in range(CROPS)]
    kept = [float(np.mean(fit.pet(x) >= fit.threshold)) for x in crops]
    return {"n_spotted": int(spotted.sum()), "threshold": fit.threshold, "keep_others_nested": fit.estimate["keep"],
            "reject_nested": fit.estimate["reject"], "kept_as_they_are": float(np.mean(fit.pet(xp[spotted]) >= fit.threshold)),
            "kept_closeups": kept, "lowest_pet_closeups": float(min(fit.pet(x).min() for x in crops))}


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
    extra = {}
    if args.shifts:
        from bench.robust import SHIFT_PHOTOS
        from catdog.data import SHIFTS

        size = int(pets.attrs["image_size"])
        shifted = shift_rows(top, pets.backbone.split(","), size, Path(args.data), Path(str(negatives.attrs["data_dir"])),
                             Path(args.features_dir))
        print(f"\nUnder shifts (nested 5-fold CV over photos; {pets.backbone} at {size}; the shifts' cats and dogs: "
              f"{SHIFT_PHOTOS} of them, as bench.robust; every negative):")
        table(shifted, [("design", "detector trained on", "<66"), ("rate", "rate", "<30"), ("plain", "plain", ".2%"),
                        *((v, v, ".2%") for v in SHIFTS)])
        extra["shifts"] = shifted
        held = spotted_keep(top, pets.backbone.split(","), size, Path(args.data), Path(str(negatives.attrs["data_dir"])),
                            Path(args.features_dir))
        print(f"\nThe {held['n_spotted']} spotted cats held out (the detector fitted without them, threshold P(pet) "
              f"{held['threshold']:.3f}): kept {held['kept_as_they_are']:.2%} as they are; as close-up crops "
              + ", ".join(f"{k:.2%}" for k in held["kept_closeups"]) + f" (lowest P(pet) {held['lowest_pet_closeups']:.3f})")
        extra["spotted_cats_held_out"] = held
    save("neither", rows, {"run": str(run), "backbone": pets.backbone, "n_pets": len(xp), "n_negatives": len(negatives.features), **extra})
