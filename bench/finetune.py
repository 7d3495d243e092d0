"""Would fine-tuning MobileNetV2's last block help `make run`'s head? `python -m bench.finetune`.

`catdog finetune` trains whole photos through the backbone (11 minutes for one fit at 288 here),
too slow for a nested CV of it. The last block is cheap, though: MobileNetV2's `block_16` and
`Conv_1` (catdog.training.finetune.top_blocks(backbone, 2)) run on a 9 x 9 grid at 288. So each
photo's `block_15_add` activations (9 x 9 x 160, plain and mirrored) are extracted once and
cached in --features-dir, and the last block is trained on them, BatchNorm frozen as `catdog
finetune` does — about 10 s an epoch on 1,600 photos and their mirror images.

In each outer fold (the 5 stratified folds of `make run`'s nested CV, and bench.robust's fold
that holds out all 373 spotted cats):

* frozen: `make run`'s head procedure on the features as they are — V1 + V2 at 288, the ImageNet
  dog-vs-cat prior, mirror views as training rows; l2 chosen by 5-fold CV on the fold's training
  photos, the head fitted on them, the held-out photos scored;
* each tuned row: the last block trained on the fold's training photos against a frozen head
  (the one that fold's selection fitted, or one fitted at a stronger l2 so the photos still have
  a loss to learn from), the pooled V2 features and the prior computed again through the tuned
  block for every photo, then the same head procedure on them (l2 chosen again). One row
  early-stops as `catdog finetune` does: a seeded 20 % of the training photos is held back, and
  the epoch with the lowest loss on it is kept, the untuned block counting as epoch 0.

The tuning settings are fixed per row, not chosen inside the fold, so the rows are at best
optimistic for tuning. l2 is chosen by clean CV alone (the tuned block has no shifted views).
Columns: clean log loss of the 2,002 photos (each scored by the fold that held it out), accuracy,
the paired bootstrap 95 % interval against frozen, and the held-out spotted cats' log loss.
Prints a table and writes bench/results/finetune.json.
"""

from __future__ import annotations

import sys
import time
from dataclasses import dataclass
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from bench.__main__ import save, table  # noqa: E402
from bench import robust as R  # noqa: E402
from bench.choices import feature_file  # noqa: E402

SIZE = 288
CUT = "block_15_add"  # the last block trains on this layer's activations (MobileNetV2 at 288: 9 x 9 x 160)
HELD_BACK = 0.2  # early stopping's share of the outer training photos, as catdog finetune
BATCH = 32


@dataclass(frozen=True)
class Tuning:
    name: str
    lr: float = 0.0  # 0: not tuned (the frozen row)
    epochs: int = 0
    target_l2: float | None = None  # the frozen head the block learns against: None, the selected one
    early_stop: bool = False


ROWS = [
    Tuning("frozen (`make run`'s head, l2 by clean CV)"),
    Tuning("tuned 1 epoch, lr 1e-5, against the selected head", 1e-5, 1),
    Tuning("tuned 3 epochs, lr 1e-4, against the selected head", 1e-4, 3),
    Tuning("tuned 2 epochs, lr 3e-5, against a head at l2 0.1", 3e-5, 2, target_l2=0.1),
    Tuning("tuned up to 6 epochs, lr 1e-5, early-stopped on 20 % (catdog finetune's recipe)", 1e-5, 6, early_stop=True),
]


def activations(features_dir: Path, data: Path, view: str):
    """(N, 9, 9, 160) float32 `CUT` activations of MobileNetV2 at SIZE of every labelled photo as
    `view` shows it, in the feature files' order; cached as .npy in features_dir."""
    import numpy as np

    from catdog.atomic import open_atomic

    path = features_dir / f"mobilenet_v2_{SIZE}_{CUT}_{view}.npy"
    try:  # an unreadable file (another version's) is made again
        return np.load(path)
    except (OSError, ValueError):
        pass
    import keras
    from tqdm import tqdm

    from catdog.data import iter_batches, scan
    from catdog.features import build_backbone, get_spec

    samples = [s for s in scan(data)[0] if s.label is not None]
    backbone = build_backbone("mobilenet_v2", "imagenet", SIZE)
    cut = keras.Model(backbone.input, backbone.get_layer(CUT).output)
    assert get_spec("mobilenet_v2").preprocess_mode == "tf"  # -1..1, as below
    parts, names = [], []
    with tqdm(total=len(samples), desc=f"{CUT} {view}", unit="photo") as bar:
        for batch in iter_batches(samples, BATCH, SIZE, view=view):
            parts.append(cut.predict_on_batch(batch.images.astype("float32") / 127.5 - 1))
            names += [s.name for s in batch.samples]
            bar.update(len(batch.samples) + len(batch.rejections))
    expected = list(feature_file(features_dir, data, "mobilenet_v2", SIZE, view).names)
    assert names == expected, "the activations' photos are not the feature files' photos"
    out = np.concatenate(parts).astype(np.float32)
    with open_atomic(path, "wb") as fh:
        np.save(fh, out)
    return out


class Study:
    """The features, activations and folds every row shares, and the head procedure."""

    def __init__(self, features_dir: Path, data: Path, seed: int):
        import numpy as np

        from catdog.training.cv import Options, stratified_folds
        from catdog.training.pet import imagenet_top

        self.v1 = {v: feature_file(features_dir, data, "mobilenet", SIZE, v).features for v in ("plain", "mirror")}
        v2 = {v: feature_file(features_dir, data, "mobilenet_v2", SIZE, v) for v in ("plain", "mirror")}
        self.v2 = {v: f.features for v, f in v2.items()}
        self.y = np.asarray(v2["plain"].labels)
        self.act = {v: activations(features_dir, data, v) for v in ("plain", "mirror")}
        # the fused features' top: V2's columns follow V1's 1024 (ImagenetTop.start)
        self.top, note = imagenet_top(",".join(R.FUSED), ",".join(["imagenet"] * len(R.FUSED)))
        if self.top is None:
            raise SystemExit(f"bench.finetune: {note}")
        assert self.top.start == self.v1["plain"].shape[1], "the prior must read V2's columns"
        self.options = Options(views=("mirror",))  # make run's head: mirror rows; l2 by clean CV here
        self.frozen = self.data(self.v2)  # the features as they are, which every row starts from
        kind, _ = R.imagenet_kinds(features_dir, data)
        spotted_of, self.spotted = R.spotted_folds(kind, self.y, seed)
        clean = stratified_folds(self.y, 5, seed)
        # (name, train, test, inner seed): nested_cv's outer folds, then the spotted cats' fold
        self.folds = [(str(f), np.flatnonzero(clean != f), np.flatnonzero(clean == f), seed + 1 + f) for f in range(5)]
        self.folds.append(("spotted", np.flatnonzero(spotted_of != 0), np.flatnonzero(spotted_of == 0), seed + 1))

    def data(self, v2: dict):
        """catdog.training.cv.Data of V1 + these V2 features + the prior, with the mirror view."""
        import numpy as np

        from catdog.training.cv import Data

        x = {v: self.top.with_dog_log_odds(np.hstack([self.v1[v], v2[v]]).astype(np.float32)) for v in ("plain", "mirror")}
        return Data(x["plain"], self.y, {"mirror": x["mirror"]})

    def head(self, data, train, inner_seed: int):
        """`make run`'s selection and fit on photos `train`: (head, chosen l2)."""
        from catdog.training.cv import fit, select

        selection = select(data, train, self.options, 5, inner_seed)
        return fit(data, train, self.options, selection.l2), selection.l2


def tail_model():
    """(backbone's last block on (9, 9, 160) -> pooled (1280,), the layers it trains): a fresh
    ImageNet MobileNetV2's layers after CUT, BatchNorm frozen (catdog.training.finetune)."""
    import keras

    from catdog.features import build_backbone
    from catdog.training.finetune import _block_of, top_blocks

    backbone = build_backbone("mobilenet_v2", "imagenet", SIZE)
    blocks = top_blocks(backbone, 2)  # Conv_1, block_16: everything after CUT
    tail = keras.Model(backbone.get_layer(CUT).output, keras.layers.GlobalAveragePooling2D()(backbone.output))
    for layer in tail.layers:
        layer.trainable = _block_of(layer.name) in blocks and not isinstance(layer, keras.layers.BatchNormalization)
    return tail


def tuned_model(tail, top, head):
    """(activations, V1 features) -> P(dog): the tail, the prior from the fused features through
    `make run`'s own pet head (catdog.training.pet.pet_head, frozen), and the frozen `head` on
    [V1, V2, prior], as `make run`'s model joins them."""
    import keras
    import numpy as np

    from catdog.training.pet import PetFit, pet_head, pet_outputs

    act, v1 = keras.Input(tail.input.shape[1:]), keras.Input((head.w.shape[0] - tail.output.shape[-1] - 1,))
    pooled = keras.layers.Concatenate()([v1, tail(act)])
    n = int(pooled.shape[-1])
    prior_head = pet_head(n, PetFit(np.zeros(n), 0.0, 0.5, top), dog_prior=True)
    prior_head.trainable = False
    _, prior = pet_outputs(prior_head, pooled)
    dense = keras.layers.Dense(1, activation="sigmoid", trainable=False)
    p_dog = dense(keras.layers.Concatenate()([pooled, prior]))
    dense.set_weights([head.w[:, None].astype(np.float32), np.array([head.b], np.float32)])
    return keras.Model([act, v1], p_dog)


def tune(study: Study, tuning: Tuning, train, inner_seed: int, selected_head) -> tuple[object, dict]:
    """The tail tuned on photos `train` as `tuning` says: (tail, what happened)."""
    import keras
    import numpy as np

    keras.utils.set_random_seed(inner_seed)
    fit_on, held = train, None
    if tuning.early_stop:
        from catdog.training.cv import stratified_folds

        back = stratified_folds(study.y[train], round(1 / HELD_BACK), inner_seed) == 0
        fit_on, held = train[~back], train[back]
    base = study.frozen
    if tuning.target_l2 is not None:
        from catdog.training.cv import fit

        head = fit(base, fit_on, study.options, tuning.target_l2)
    elif tuning.early_stop:  # the head the photos it tunes on would select
        head = study.head(base, fit_on, inner_seed)[0]
    else:
        head = selected_head
    tail = tail_model()
    model = tuned_model(tail, study.top, head)
    some = fit_on[:256]  # untuned, the graph must be the head on the cached features
    untuned = model.predict([study.act["plain"][some], study.v1["plain"][some]], batch_size=128, verbose=0)[:, 0]
    assert np.abs(untuned - head.p_dog(base.x[some])).max() < 1e-4, "the tuned model is not the head on its features"
    model.compile(keras.optimizers.Adam(tuning.lr), "binary_crossentropy")

    def rows(idx):
        return ([np.concatenate([study.act[v][idx] for v in ("plain", "mirror")]),
                 np.concatenate([study.v1[v][idx] for v in ("plain", "mirror")])],
                np.tile(study.y[idx], 2).astype(np.float32))

    x, y = rows(fit_on)
    if held is None:
        model.fit(x, y, batch_size=BATCH, epochs=tuning.epochs, shuffle=True, verbose=0)
        return tail, {}
    xh, yh = rows(held)
    losses = [model.evaluate(xh, yh, batch_size=128, verbose=0)]  # epoch 0: the untuned block
    best_weights = tail.get_weights()
    for _ in range(tuning.epochs):
        model.fit(x, y, batch_size=BATCH, epochs=1, shuffle=True, verbose=0)
        losses.append(model.evaluate(xh, yh, batch_size=128, verbose=0))
        if losses[-1] < min(losses[:-1]):
            best_weights = tail.get_weights()
    tail.set_weights(best_weights)
    return tail, {"best_epoch": int(np.argmin(losses)), "held_back_loss": [round(float(v), 5) for v in losses]}


def main() -> int:
    import numpy as np

    from catdog.training import metrics as M
    from catdog.training.cv import bootstrap_interval, per_photo_log_loss

    args = R.study_arguments("python -m bench.finetune", __doc__)
    study = Study(args.features_dir, args.data, args.seed)
    base = study.frozen
    y = study.y
    p = {t.name: np.zeros(len(y)) for t in ROWS}
    spotted_p = {t.name: None for t in ROWS}
    details = {t.name: [] for t in ROWS}
    seconds = {t.name: 0.0 for t in ROWS}
    for name, train, test, inner_seed in study.folds:
        start = time.perf_counter()
        head, l2 = study.head(base, train, inner_seed)
        frozen = ROWS[0].name
        scored = head.p_dog(base.x[test])
        seconds[frozen] += time.perf_counter() - start
        results = {frozen: (scored, {"l2": l2})}
        for tuning in ROWS[1:]:
            start = time.perf_counter()
            tail, info = tune(study, tuning, train, inner_seed, head)
            v2 = {v: tail.predict(study.act[v], batch_size=128, verbose=0).astype(np.float32) for v in ("plain", "mirror")}
            tuned = study.data(v2)
            tuned_head, tuned_l2 = study.head(tuned, train, inner_seed)
            results[tuning.name] = (tuned_head.p_dog(tuned.x[test]), {"l2": tuned_l2, **info})
            seconds[tuning.name] += time.perf_counter() - start
        for row, (scores, info) in results.items():
            details[row].append({"fold": name, **info})
            if name == "spotted":
                spotted_p[row] = scores[study.spotted[test]]
            else:
                p[row][test] = scores
        print(f"fold {name}: " + ", ".join(f"{r[:24]} {M.log_loss(y[test], s):.4f}" for r, (s, _) in results.items()), flush=True)
    frozen_loss = per_photo_log_loss(y, p[ROWS[0].name])
    spotted_y = y[study.spotted]
    rows = []
    for t in ROWS:
        diff = per_photo_log_loss(y, p[t.name]) - frozen_loss
        rows.append({
            "row": t.name, "lr": t.lr, "epochs": t.epochs, "target_l2": t.target_l2, "early_stop": t.early_stop,
            "clean": M.log_loss(y, p[t.name]), "accuracy": M.summary(y, p[t.name])["accuracy"],
            "vs_frozen": float(diff.mean()),
            "vs_frozen_95": [0.0, 0.0] if t is ROWS[0] else list(bootstrap_interval(diff, seed=args.seed)),
            "spotted_cats": M.log_loss(spotted_y, spotted_p[t.name]),
            "folds": details[t.name], "seconds": round(seconds[t.name], 1),
        })
        lo, hi = rows[-1]["vs_frozen_95"]
        rows[-1]["vs_frozen_text"] = "" if t is ROWS[0] else f"{rows[-1]['vs_frozen']:+.4f} ({lo:+.4f} .. {hi:+.4f})"
        rows[-1]["l2s"] = " ".join(f"{d['l2']:g}" for d in details[t.name][:5])
    print()
    table(rows, [("row", "row", "<80"), ("clean", "clean", ".4f"), ("accuracy", "acc", ".2%"),
                 ("vs_frozen_text", "clean vs frozen (95 %)", ">30"), ("spotted_cats", "spotted cats", ".4f"),
                 ("l2s", "l2 per fold", ">32"), ("seconds", "seconds", ".0f")])
    save("finetune", rows, {
        "photos": str(args.data), "seed": args.seed, "size": SIZE, "cut": CUT, "tuned": "MobileNetV2 block_16 and Conv_1",
        "procedure": "per outer fold (5 stratified, and the spotted cats' fold): tune the last block on the training photos' "
        "cached activations (plain and mirror) against a frozen head, recompute the V2 features and the prior, choose l2 "
        "by 5-fold CV and fit the head on the training photos, score the held-out photos",
    })
    return 0


if __name__ == "__main__":
    from bench.__main__ import run_main

    sys.exit(run_main(main))
