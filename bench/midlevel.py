"""Would mid-level features help the head? `python -m bench.midlevel` (about 10 minutes).

`make run`'s head sees the last conv block of each backbone, pooled. Earlier blocks see smaller
parts of the photo (fur texture, eyes, ears) and are said to transfer better to photos of another
kind; a layer of stride 32 (9 x 9 at 288) could join the CAM as it is, one of stride 16 after a
2 x 2 average pool. Each row adds one layer's pooled activations to `make run`'s features (V1 + V2
at 288, the ImageNet dog-vs-cat prior; mirror rows; l2 by clean and shifted CV) and is scored by
bench.robust.measure on bench.robust's kinds of fold: clean, the shifts, the two group fold sets,
held-out breeds and held-out spotted cats, as they are and as bench.proxies' 8 close-up crops of
each (the proxies that ranked the backbones as the unseen other source did), with paired
bootstrap intervals against `make run`'s head.

It reads a RUN_DIR of `make run` (--run: its features.h5 and views/, whose shifted photos it
uses, 120 by default) and extracts the layers for the same photos, views and crops once
(--features-dir, shared with bench.proxies' crops; LiteRT as `catdog features`). Prints a table and writes
bench/results/midlevel.json.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from dataclasses import replace
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
SHARED = Path(os.environ.get("CATDOG_SHARED", REPO.parent / "shared"))

from bench.__main__ import save, table  # noqa: E402
from bench import robust as R  # noqa: E402

# (backbone, layer, its activations' stride at the input, channels): the pooled activations of each
LAYERS = (
    ("mobilenet_v2", "block_12_add", 16, 96),
    ("mobilenet_v2", "block_13_expand_relu", 16, 576),
    ("mobilenet_v2", "block_15_add", 32, 160),
    ("mobilenet_v2", "block_16_project_BN", 32, 320),
    ("mobilenet", "conv_pw_11_relu", 16, 512),
)
SIZE = 288
REFERENCE = "make run's head"


def layer_model():
    """Raw photo (SIZE, SIZE, 3) -> the LAYERS' global average pools, concatenated in order."""
    import keras

    from catdog.features.backbones import BackbonePreprocessing, build_backbone, get_spec, image_input

    image = image_input(SIZE)
    x = BackbonePreprocessing(get_spec("mobilenet_v2").preprocess_mode, name="preprocess")(image)  # V1 and V2 alike
    pooled = []
    for backbone in dict.fromkeys(b for b, *_ in LAYERS):
        net = build_backbone(backbone, "imagenet", SIZE, layer_name=backbone)
        outputs = keras.Model(net.input, [net.get_layer(layer).output for b, layer, *_ in LAYERS if b == backbone])(x)
        pooled += [keras.layers.GlobalAveragePooling2D()(o) for o in (outputs if isinstance(outputs, list) else [outputs])]
    return keras.Model(image, keras.layers.Concatenate()(pooled))


def run_features(run: Path):
    """view -> (photo names, features) of the RUN_DIR's features.h5 ("plain") and views/*.h5."""
    from catdog.features import load_features

    files = {"plain": run / "features.h5", **{p.stem: p for p in sorted((run / "views").glob("*.h5"))}}
    return {view: load_features(path) for view, path in files.items()}


def layer_features(jobs: dict, cache: Path) -> dict:
    """key -> (N, sum of the layers' channels): for each job (samples, view), the layers' pooled
    activations of those photos as that view sees them, in order (cached under the key)."""
    import zipfile

    import numpy as np

    from catdog.atomic import open_atomic
    from catdog.data.batches import iter_batches
    from catdog.features.engine import LiteRTFeatures

    cache.mkdir(parents=True, exist_ok=True)
    runner, out = None, {}
    for key, (samples, view) in jobs.items():
        names = [s.name for s in samples]
        path = cache / f"midlevel_{SIZE}_{key}.npz"
        try:  # a file another version (or a kill, before writes were atomic) left unreadable is made again
            with np.load(path) as saved:
                if list(saved["names"]) == names and saved["features"].shape[1] == sum(c for *_, c in LAYERS):
                    out[key] = saved["features"]
                    continue
        except (OSError, ValueError, KeyError, zipfile.BadZipFile):
            pass
        runner = runner or LiteRTFeatures(layer_model(), "bench_midlevel", "imagenet|" + repr(LAYERS))  # LiteRT cache keyed by the layers
        rows = []
        for batch in iter_batches(samples, size=SIZE, view=view):
            assert not batch.rejections, batch.rejections
            rows.append(runner(batch.images))
        out[key] = np.vstack(rows)
        with open_atomic(path, "wb") as f:
            np.savez(f, names=np.array(names), features=out[key])
        print(f"{key}: {len(names)} photos", flush=True)
    return out


def main() -> int:
    import numpy as np

    from bench import proxies as P
    from catdog.data import scan
    from catdog.training.cv import Data, Options, bootstrap_interval, per_photo_log_loss
    from catdog.training.pet import imagenet_top

    parser = argparse.ArgumentParser(prog="python -m bench.midlevel", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--run", type=Path, default=REPO / "runs" / "mobilenet+mobilenet_v2_288")
    parser.add_argument("--data", type=Path, default=SHARED / "data" / "dogs-vs-cats" / "train")
    parser.add_argument("--features-dir", type=Path, default=REPO / "runs" / "study")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()

    sets = run_features(args.run)
    plain = sets["plain"]
    if plain.backbone != "mobilenet,mobilenet_v2" or plain.attrs.get("image_size") != SIZE or "mirror" not in sets:
        raise SystemExit(f"bench.midlevel: {args.run} is not a RUN_DIR of `make run` (V1 + V2 at {SIZE} with views/); run `make run`")
    by_name = {s.name: s for s in scan(args.data)[0]}
    mid = layer_features({view: ([by_name[n] for n in fs.names], view) for view, fs in sets.items()}, args.features_dir)
    top, note = imagenet_top(plain.backbone, plain.weights)
    if top is None:
        raise SystemExit(f"bench.midlevel: {note}")
    y = plain.labels
    row = {n: i for i, n in enumerate(plain.names)}
    at = {v: np.array([row[n] for n in fs.names]) for v, fs in sets.items()}
    subset = at["rotate"]  # the run's shifted photos

    edges = np.cumsum([0, *(c for *_, c in LAYERS)])
    assert mid["plain"].shape[1] == edges[-1], "the cached layers are not LAYERS"

    def with_layer(x, layers, k: int | None):
        """x with the k-th layer's columns of `layers` after it (k None: x as it is)."""
        return x if k is None else np.hstack([x, layers[:, edges[k] : edges[k + 1]].astype(x.dtype)])

    def data_with(k: int | None) -> Data:
        def features(view):
            return with_layer(top.with_dog_log_odds(sets[view].features), mid[view], k)

        shifted = {}
        for view in sets:
            if view != "plain":
                keep = np.isin(at[view], subset)
                shifted[view] = (at[view][keep], features(view)[keep])
        return Data(features("plain"), y, {"mirror": features("mirror")}, shifted=shifted)

    # bench.robust's fold sets, from the run's own features (V2's columns follow V1's 1,024)
    x = plain.features
    folds = R.folds_of({"V1 + V2": x, "V2": x[:, 1024:]}, R.pet_kinds(top, x, y), y, args.seed)
    spotted_cats = folds.spotted_cats

    options = Options(views=("mirror",), robust=True)  # make run's head: mirror rows, l2 by clean and shifted CV

    # bench.proxies' spotted close-ups: CROPS close-up crops of each held-out spotted cat
    photos = [plain.names[i] for i in np.flatnonzero(spotted_cats)]
    crop_base = [top.with_dog_log_odds(np.hstack([P.crop_features(args.features_dir, args.data, b, photos, c) for b in R.FUSED]))
                 for c in range(P.CROPS)]
    crop_mid = layer_features({f"closeup_spotted_{c}": ([replace(by_name[n], name=f"{n}#crop{c}") for n in photos], "closeup")
                               for c in range(P.CROPS)}, args.features_dir)

    def closeup_losses(k: int | None, data: Data) -> np.ndarray:
        """(spotted cats,) mean log loss over the crops, by the head fitted without the spotted cats."""
        _, head = P.spotted_head(data, options, folds, args.seed)
        xs = [with_layer(xc, crop_mid[f"closeup_spotted_{c}"], k) for c, xc in enumerate(crop_base)]
        return np.mean([per_photo_log_loss(y[spotted_cats], head.p_dog(xc)) for xc in xs], 0)

    rows, per_photo, closeups = [], {}, {}
    for k, name in [(None, REFERENCE), *((i, f"+ {b} {layer} (stride {s})") for i, (b, layer, s, _) in enumerate(LAYERS))]:
        start = time.perf_counter()
        data = data_with(k)
        r, per_photo[name] = R.measure(data, options, folds, args.seed)
        closeups[name] = closeup_losses(k, data)
        rows.append({"candidate": name, "columns": data.x.shape[1], **r, "spotted_closeups": float(closeups[name].mean()),
                     "seconds": round(time.perf_counter() - start, 1)})
        print(f"{name}: clean {r['clean']:.4f}, spotted cats {r['spotted_cats']:.4f}, close-ups {rows[-1]['spotted_closeups']:.4f} "
              f"({rows[-1]['seconds']:.0f} s)", flush=True)
    R.paired(rows, per_photo, REFERENCE, args.seed, "vs_default")
    for r in rows:
        diff = closeups[r["candidate"]] - closeups[REFERENCE]
        r["closeups_95"] = "({:+.4f} … {:+.4f})".format(*(bootstrap_interval(diff, seed=args.seed) if diff.any() else (0.0, 0.0)))
        r["clean_95"] = "({:+.4f} … {:+.4f})".format(*r["vs_default_clean_95"])
        r["groups_95"] = "({:+.4f} … {:+.4f})".format(*r["vs_default_groups_95"])
    table(rows, [("candidate", "features", "<52"), ("columns", "columns", "d"), ("clean", "clean", ".4f"), ("shifts", "shifts", ".4f"),
                 ("groups V1 + V2", "groups V1+V2", ".4f"), ("groups V2", "groups V2", ".4f"), ("breeds", "breeds", ".4f"),
                 ("spotted_cats", "spotted cats", ".4f"), ("spotted_closeups", "close-ups", ".4f"), ("mean_shifted", "mean shifted", ".4f"), ("score", "score", ".4f"),
                 ("clean_95", "clean vs head (95 %)", "<24"), ("groups_95", "groups vs head (95 %)", "<24"),
                 ("closeups_95", "close-ups vs head (95 %)", "<24")])
    save("midlevel", rows, {"run": str(args.run), "seed": args.seed, "layers": [list(t) for t in LAYERS], "shift_photos": int(len(subset)),
                            "procedure": "bench.robust.measure (5 x 5 nested CV) on the run's features plus one layer's pooled activations"})
    return 0


if __name__ == "__main__":
    from bench.__main__ import run_main

    sys.exit(run_main(main))
