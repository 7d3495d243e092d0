"""Do the held-out proxies track the unseen other source? `python -m bench.proxies`.

Issue 26's other source (close-up portraits; its mistakes cats with spotted or ticked coats) was
measured on three backbones and two heads; bench.robust chooses the default on proxies made from
the shared photos. Three checks of those proxies against what the other source measured, and
a fourth, of a classic trick:

1. **Spotted cats as close-ups**: the cats MobileNetV2's ImageNet top calls "Egyptian cat" all
   held out (bench.robust's spotted fold set; every other photo trains the head by the real
   selection procedure, catdog.training.cv.select then fit), each scored as CROPS close-up crops
   (catdog.data.views' closeup, 40-70 % of the area, reseeded per crop): a nearer stand-in for
   close-up portraits of spotted breeds than the photos as they are. Every 288 candidate of
   bench.robust, with a paired bootstrap interval against `make run`'s default; and `make run`'s
   single head against late fusion at each fixed l2 (is a difference the l2 choice's?).
2. **The earlier head**: the one head difference the other source measured on the same features
   (MobileNetV2 at 288: the dropout + early-stopped head 0.0320 against the L2 head with l2 by CV
   0.0389). The earlier head is rebuilt as it was (catdog.training.train.build_head: dropout 0.5,
   Keras L2 3e-3; Adam 1e-3, batch 128, early stopping on a stratified 20 % of the training photos,
   patience 20, best weights) and scored on every proxy column beside the L2 head's
   (bench.robust.measure). If the proxies tracked the other source it would win there. Its
   held-out logits are compared with the L2 head's (the slope through 0 of one on the other): is it
   simply less sure?
3. **Temperature**: `make run`'s default with its logit divided by T (T > 1: less sure) on every
   column, close-ups included: does a temperature chosen on shifted or held-out-kind photos help
   the proxies that track the other source?
4. **Clipping**: `make run`'s default with P(dog) clipped to [eps, 1 - eps] (the Dogs vs. Cats
   Kaggle trick: it bounds a confident mistake's loss at -log(eps) and costs up to eps on every
   sure photo) on the same columns: do the proxies' confident mistakes outweigh that cost?

Prints the tables and writes bench/results/proxies.json. Features come from bench.choices' cache
(--features-dir, shared with bench.robust; the crops are extracted there on first use).
"""

from __future__ import annotations

import sys
import time
from dataclasses import replace
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from bench.__main__ import save, table  # noqa: E402
from bench import robust as R  # noqa: E402

CROPS = 8  # close-up crops of each spotted cat (the crop's draw moves a held-out cat's loss as much as the head does)
# what the other source measured (issue 26), for the tables
OTHER_SOURCE = {"V2, 288, photos only, l2 by clean CV": 0.0389, "V1, 288, photos only, l2 by clean CV": 0.0576,
                "V1 + V2, 288, photos only, l2 by clean CV (the default before issue 26)": 0.0490}
EARLIER_HEAD = "V2, 288, photos only, the earlier head (dropout 0.5, early stopping)"
EARLIER_HEAD_OTHER_SOURCE = 0.0320
FIXED_L2 = (1e-3, 3e-3, 1e-2)  # the values CV chooses for these heads
TEMPERATURES = (0.8, 1.0, 1.2, 1.4, 1.7)
CLIPS = (0.0, 1e-4, 1e-3, 3e-3, 1e-2)  # Kaggle's trick for log loss: P(dog) kept within [eps, 1 - eps]


def cached(held_out):
    """held_out (bench.robust.measure's) computed once per fold set."""
    done = {}

    def once(fold_of=None):
        key = None if fold_of is None else fold_of.tobytes()
        if key not in done:
            done[key] = held_out(fold_of)
        return done[key]
    return once


def tempered(p_dog, temperature: float):
    from catdog.training.metrics import apply_temperature, cat_dog

    return apply_temperature(cat_dog(p_dog), temperature)


def crop_features(features_dir: Path, data: Path, backbone: str, photos: list[str], k: int):
    """(len(photos), C) features of the k-th close-up crop of each photo at 288 (the view's seed is
    drawn from the sample's name: a suffix per crop reseeds it)."""
    import numpy as np

    from bench.choices import load_features_ok
    from catdog.data import scan
    from catdog.features import extract_features, load_features

    path = features_dir / f"{backbone}_288_closeup_spotted_{k}.h5"
    if not path.is_file() or not load_features_ok(path):
        by_name = {s.name: s for s in scan(data)[0]}
        samples = [replace(by_name[n], name=f"{n}#crop{k}") for n in photos]
        extract_features(samples, path, backbone, image_size=288, view="closeup")
    fs = load_features(path)
    row = {n: i for i, n in enumerate(fs.names)}
    return fs.features[np.array([row[f"{n}#crop{k}"] for n in photos])]


def spotted_crops(features_dir: Path, data: Path, spotted_cats, backbones=R.FUSED) -> dict:
    """backbone -> CROPS arrays (spotted cats, C): the close-up crops' features of every photo of
    the mask `spotted_cats` (R.Folds.spotted_cats: in the feature files' order), for each of
    `backbones`."""
    import numpy as np

    from bench.choices import feature_file

    names = feature_file(features_dir, data, "mobilenet_v2", 288).names
    photos = [names[i] for i in np.flatnonzero(spotted_cats)]
    return {b: [crop_features(features_dir, data, b, photos, k) for k in range(CROPS)] for b in backbones}


def candidate_crops(c: R.Candidate, crops: dict) -> list:
    """Each crop's rows as candidate `c` sees them: its backbones' columns side by side, and the
    ImageNet dog-vs-cat prior where it has one."""
    import numpy as np

    from catdog.training.pet import imagenet_top

    top = imagenet_top(",".join(c.backbones), ",".join(["imagenet"] * len(c.backbones)))[0] if c.prior else None
    xs = [np.hstack([crops[b][k] for b in c.backbones]) for k in range(CROPS)]
    return [top.with_dog_log_odds(x) if top else x for x in xs]


def spotted_head(data_c, options, folds: R.Folds, seed: int):
    """(selection, head): the real selection procedure and fit on every photo but the spotted cats,
    as nested_cv's outer fold 0 of the spotted fold set does."""
    import numpy as np

    from catdog.training.cv import fit, select

    train = np.flatnonzero(folds.spotted != 0)
    chosen = select(data_c, train, options, 5, seed + 1)
    return chosen, fit(data_c, train, options, chosen.head_l2)


def spotted_closeups(features_dir: Path, data: Path, folds: R.Folds, seed: int) -> tuple[list[dict], list[dict], list]:
    """Check 1: each 288 candidate's head fitted without the spotted cats, their close-ups scored;
    the single head against late fusion at fixed l2s; and the default's P(dog) of each crop (for
    check 3)."""
    import numpy as np

    from catdog.training.cv import bootstrap_interval, fit, per_photo_log_loss

    spotted = np.flatnonzero(folds.spotted_cats)
    train = np.flatnonzero(folds.spotted != 0)
    crops = spotted_crops(features_dir, data, folds.spotted_cats)
    y = folds.labels[spotted]
    rows, per_photo, fixed = [], {}, {}
    for c in [c for c in R.CANDIDATES if c.size == 288]:
        data_c = R.candidate_data(c, features_dir, data)
        options = c.options(data_c.x.shape[1])
        xs = candidate_crops(c, crops)

        def crop_losses(head):
            return [per_photo_log_loss(y, head.p_dog(x)) for x in xs]  # one (spotted,) array per crop

        chosen, head = spotted_head(data_c, options, folds, seed)
        if c.name in (R.CHOSEN, R.LATE_FUSION):
            fixed[c.name] = {l2: float(np.mean(crop_losses(fit(data_c, train, options, l2)))) for l2 in FIXED_L2}
        losses = crop_losses(head)
        if c.name == R.CHOSEN:
            chosen_crops = [head.p_dog(x) for x in xs]
        per_photo[c.name] = np.mean(losses, 0)
        rows.append({"candidate": c.name, "spotted_closeups": float(per_photo[c.name].mean()),
                     "wrong_per_crop": float(np.mean([(loss > np.log(2)).sum() for loss in losses])),
                     "plain": float(per_photo_log_loss(y, head.p_dog(data_c.x[spotted])).mean()),
                     "other_source": OTHER_SOURCE.get(c.name), "l2": chosen.head_l2})
        print(f"{c.name}: spotted close-ups {rows[-1]['spotted_closeups']:.4f}", flush=True)
    base = per_photo[R.CHOSEN]
    for r in rows:
        diff = per_photo[r["candidate"]] - base
        r["vs_default"] = float(diff.mean())
        r["vs_default_95"] = [0.0, 0.0] if r["candidate"] == R.CHOSEN else list(bootstrap_interval(diff, seed=seed))
    return rows, [{"l2": l2, "single_head": fixed[R.CHOSEN][l2], "late_fusion": fixed[R.LATE_FUSION][l2]} for l2 in FIXED_L2], chosen_crops


def earlier_head_columns(features_dir: Path, data: Path, folds: R.Folds, seed: int, l2_head_clean) -> dict:
    """Check 2: bench.robust's columns (and the spotted close-ups) of the earlier head on V2 at 288,
    and the scale of its held-out logits against the L2 head's (`l2_head_clean`: its held-out
    P(dog) of every photo under the same stratified folds)."""
    import keras
    import numpy as np

    from catdog.training import metrics as M
    from catdog.training.cv import NestedCV, OuterFold, stratified_folds
    from catdog.training.train import HeadConfig, build_head, stratified_split

    d = R.candidate_data(R.V2, features_dir, data)
    y = d.y

    def fitted(train: np.ndarray, fold_seed: int):
        rest, val = stratified_split(y[train], 0.2, fold_seed)
        keras.utils.set_random_seed(fold_seed)
        head = build_head(d.x.shape[1], HeadConfig(dropout=0.5), l2=3e-3)
        head.compile(optimizer=keras.optimizers.Adam(1e-3), loss="sparse_categorical_crossentropy")
        stop = keras.callbacks.EarlyStopping(monitor="val_loss", patience=20, restore_best_weights=True)
        head.fit(d.x[train[rest]], y[train[rest]], validation_data=(d.x[train[val]], y[train[val]]), epochs=400,
                 batch_size=128, shuffle=True, verbose=0, callbacks=[stop])
        return lambda x: np.asarray(head(x, training=False))[:, 1].astype(np.float64)  # no predict(): one trace per model

    def held_out(fold_of: np.ndarray | None = None) -> NestedCV:
        """Each photo and shifted view scored by the earlier head of the outer fold that held it out."""
        fold_of = stratified_folds(y, 5, seed) if fold_of is None else fold_of
        records = []
        for f in range(int(fold_of.max()) + 1):
            train, test = np.flatnonzero(fold_of != f), np.flatnonzero(fold_of == f)
            head = fitted(train, seed + 1 + f)
            shifted = {name: (at[np.isin(at, test)], head(xv[np.isin(at, test)])) for name, (at, xv) in d.shifted.items()}
            records.append(OuterFold(train, test, None, head(d.x[test]), shifted))
        p = np.zeros(len(y))
        for r in records:
            p[r.test] = r.p_dog
        return NestedCV(p, fold_of, records)

    held_out = cached(held_out)
    row, _ = R.measure(d, None, folds, seed, held_out)
    row = {"candidate": EARLIER_HEAD, **row}
    mine, l2_head = M.logit(M.cat_dog(held_out().p_dog)), M.logit(M.cat_dog(l2_head_clean))
    row["logit_scale"] = float((mine * l2_head).sum() / (l2_head * l2_head).sum())  # least squares through 0: mine ~ scale x the L2 head's
    row["mean_abs_logit"], row["l2_head_mean_abs_logit"] = float(np.abs(mine).mean()), float(np.abs(l2_head).mean())
    spotted = np.flatnonzero(folds.spotted_cats)
    head = fitted(np.flatnonzero(folds.spotted != 0), seed + 1)  # the spotted fold set's fold 0 head again
    row["spotted_closeups"] = float(np.mean([M.log_loss(y[spotted], head(x))
                                             for x in spotted_crops(features_dir, data, folds.spotted_cats)["mobilenet_v2"]]))
    row["other_source"] = EARLIER_HEAD_OTHER_SOURCE
    return row


def clipped(p_dog, eps: float):
    import numpy as np

    return np.clip(p_dog, eps, 1 - eps)


def adjusted_columns(d, nested, folds: R.Folds, seed: int, chosen_crops: list, key: str, values, adjust) -> list[dict]:
    """Checks 3 and 4: every column of `make run`'s default (its data `d`, its nested CV `nested`,
    cached: run once per fold set for every check) with each held-out P(dog) changed by
    adjust(p_dog, value) for each of `values`, and its spotted close-ups; each row's value under
    `key`."""
    import numpy as np

    from catdog.training.cv import NestedCV, per_photo_log_loss

    y = folds.labels[folds.spotted_cats]
    rows = []
    for v in values:
        def held_out(fold_of=None, v=v):
            cv = nested(fold_of)
            records = [replace(r, p_dog=adjust(r.p_dog, v), shifted={k: (at, adjust(p, v)) for k, (at, p) in r.shifted.items()})
                       for r in cv.records]
            return NestedCV(adjust(cv.p_dog, v), cv.folds, records)

        row, _ = R.measure(d, None, folds, seed, held_out)
        row["spotted_closeups"] = float(np.mean([per_photo_log_loss(y, adjust(p, v)).mean() for p in chosen_crops]))
        rows.append({key: v, **row})
        print(f"{key} {v:g}: clean {row['clean']:.4f}, spotted close-ups {row['spotted_closeups']:.4f}", flush=True)
    return rows


def main() -> int:
    args = R.study_arguments("python -m bench.proxies", __doc__)
    start = time.perf_counter()
    folds = R.fold_sets(args.features_dir, args.data, args.seed)
    closeups, fixed, chosen_crops = spotted_closeups(args.features_dir, args.data, folds, args.seed)
    print(f"\nheld-out spotted cats ({int(folds.spotted_cats.sum())}), {CROPS} close-up crops of each; "
          "vs default: paired bootstrap 95 % interval (negative: better than make run's default)")
    for r in closeups:
        r["vs_default_text"] = f"{r['vs_default']:+.4f} ({r['vs_default_95'][0]:+.4f} .. {r['vs_default_95'][1]:+.4f})"
    table(closeups, [("candidate", "candidate", "<72"), ("plain", "as they are", ".4f"), ("spotted_closeups", "close-ups", ".4f"),
                     ("wrong_per_crop", "wrong/crop", ".1f"), ("vs_default_text", "vs default", ">30"),
                     ("other_source", "other source", ".4f")])
    print(f"\nspotted close-ups at a fixed l2 (every part of late fusion at it): {R.CHOSEN} against {R.LATE_FUSION}")
    table(fixed, [("l2", "l2", "g"), ("single_head", "single head", ".4f"), ("late_fusion", "late fusion", ".4f")])

    v2_data = R.candidate_data(R.V2, args.features_dir, args.data)
    v2_held_out = cached(R.nested(v2_data, R.V2.options(0), args.seed))
    v2 = R.measure(v2_data, None, folds, args.seed, v2_held_out)[0]
    v2 = {"candidate": R.V2.name, **v2, "other_source": OTHER_SOURCE[R.V2.name],
          "spotted_closeups": next(r["spotted_closeups"] for r in closeups if r["candidate"] == R.V2.name)}
    earlier = earlier_head_columns(args.features_dir, args.data, folds, args.seed, v2_held_out().p_dog)
    print("\nthe head difference the other source measured, on every proxy (MobileNetV2 at 288, photos only):")
    table([v2, earlier], [("candidate", "head", "<66"), ("clean", "clean", ".4f"), ("shifts", "shifts", ".4f"),
                          ("groups", "groups", ".4f"), ("breeds", "breeds", ".4f"), ("spotted_cats", "spotted cats", ".4f"),
                          ("spotted_closeups", "close-ups", ".4f"), ("other_source", "other source", ".4f")])
    print(f"the earlier head's held-out logit = {earlier['logit_scale']:.2f} x the L2 head's (least squares; mean |logit| "
          f"{earlier['mean_abs_logit']:.2f} against {earlier['l2_head_mean_abs_logit']:.2f})")

    columns = [("clean", "clean", ".4f"), ("shifts", "shifts", ".4f"), ("groups", "groups", ".4f"), ("breeds", "breeds", ".4f"),
               ("spotted_cats", "spotted cats", ".4f"), ("spotted_closeups", "close-ups", ".4f"),
               ("mean_shifted", "mean shifted", ".4f"), ("score", "score", ".4f")]
    chosen = next(c for c in R.CANDIDATES if c.name == R.CHOSEN)
    d = R.candidate_data(chosen, args.features_dir, args.data)
    nested = cached(R.nested(d, chosen.options(d.x.shape[1]), args.seed))
    temperatures = adjusted_columns(d, nested, folds, args.seed, chosen_crops, "temperature", TEMPERATURES, tempered)
    print(f"\n{R.CHOSEN}, its held-out logits divided by T:")
    table(temperatures, [("temperature", "T", "g"), *columns])
    clips = adjusted_columns(d, nested, folds, args.seed, chosen_crops, "clip", CLIPS, clipped)
    print(f"\n{R.CHOSEN}, its held-out P(dog) clipped to [eps, 1 - eps]:")
    table(clips, [("clip", "eps", "g"), *columns])
    save("proxies", {"spotted_closeups": closeups, "fixed_l2": fixed, "earlier_head": [v2, earlier], "temperature": temperatures,
                     "clip": clips}, {
        "photos": str(args.data), "seed": args.seed, "crops": CROPS, "seconds": round(time.perf_counter() - start, 1),
        "other_source": "issue 26's measurements on 598 photos of another source (this repository never sees them)",
    })
    return 0


if __name__ == "__main__":
    from bench.__main__ import run_main

    sys.exit(run_main(main))
