"""The head as an L2 logistic regression on cached features, its settings chosen by
cross-validation, and an honest estimate of its log loss by nested cross-validation.

The head is fitted to convergence (L-BFGS, scikit-learn), never stopped early: its only
settings are the L2 strength and, optionally, a temperature, and both are chosen by CV.
With late fusion (`Options.parts`) the head is the mean logit of one such regression per part
of the columns, each with its own l2 chosen by CV: still one logistic regression on every column.

Penalty: the fit minimises  mean log loss over the training rows + l2 / 2 * ||w||^2,  which is
Keras' L2(l2) on the two-unit Dense kernel of the equivalent softmax head. Because it is
relative to the mean, one `l2` means the same thing on 1,600 and on 2,002 photos, so the value
chosen on CV folds carries over to the refit on every photo.

Nested CV: the photos are split into K outer folds; for each outer fold the settings are chosen
by K-fold CV on the other folds alone, a head is fitted on them, and the outer fold is scored
with it. No photo's score ever comes from a model or a setting chosen with that photo, which
`NestedCV.records` lets the tests check on the split indices.
"""

from __future__ import annotations

import os
import warnings
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field, replace

import numpy as np

from catdog.training import metrics as M
from catdog.training.settings import L2_GRID


@dataclass(frozen=True)
class Logistic:
    """P(dog) = sigmoid(features @ w + b): the head's weights, shapes (C,) and ()."""

    w: np.ndarray
    b: float

    def logit(self, x: np.ndarray) -> np.ndarray:
        return np.asarray(x, np.float64) @ self.w + self.b

    def p_dog(self, x: np.ndarray, temperature: float = 1.0) -> np.ndarray:
        return 1.0 / (1.0 + np.exp(-self.logit(x) / temperature))


def fit_path(x: np.ndarray, y: np.ndarray, l2s) -> dict[float, Logistic]:
    """L2 logistic regressions on rows x (N, C) with labels y (N,) in {0, 1}, one per l2, each
    fitted to convergence (L-BFGS, scikit-learn); returns {l2: Logistic}.

    Fitted from the strongest penalty to the weakest, each starting from the previous solution
    (the optimum moves little between neighbouring l2s: about a third fewer iterations).
    float32 rows: half the memory traffic of float64, 2.3x faster here, same log loss to 1e-5.
    """
    from sklearn.exceptions import ConvergenceWarning
    from sklearn.linear_model import LogisticRegression
    from threadpoolctl import threadpool_limits

    x, y = np.asarray(x, np.float32), np.asarray(y)
    model = LogisticRegression(solver="lbfgs", max_iter=5000, tol=1e-6, warm_start=True)
    fitted = {}
    # One BLAS thread: these are matrix-vector products, and measured here a second OpenBLAS
    # thread on a busy 2-core machine made each fit 7x slower (6.8 s vs 0.9 s).
    with warnings.catch_warnings(), threadpool_limits(1):
        warnings.simplefilter("error", ConvergenceWarning)  # never ship a half-fitted head silently
        for l2 in sorted(l2s, reverse=True):
            model.set_params(C=1.0 / (l2 * len(x)))
            try:
                model.fit(x, y)
            except ConvergenceWarning:
                from catdog.errors import CatdogError

                raise CatdogError(
                    f"the head did not converge in {model.max_iter} L-BFGS iterations at l2 {l2:g}; "
                    "leave the smallest values out of --l2 (a larger l2 converges faster)"
                ) from None
            fitted[l2] = Logistic(model.coef_[0].astype(np.float64), float(model.intercept_[0]))
    return fitted


def fit_logistic(x: np.ndarray, y: np.ndarray, l2: float) -> Logistic:
    """One L2 logistic regression (see `fit_path`), from a cold start."""
    return fit_path(x, y, [l2])[l2]


def _map(fn, items: list, workers: int) -> list:
    """fn over items, on up to `workers` threads (the fits release the GIL in BLAS); in order.

    One BLAS and OpenMP thread for the whole pool: the limit is process-wide, so per-fit limits
    on several threads race (one fit's exit restores two threads under another's running fit,
    whose sums then differ in the last bits: measured, P(dog) by 1e-4 in one nested CV of three)."""
    from threadpoolctl import threadpool_limits

    workers = max(1, min(workers, len(items)))
    if workers == 1:
        return [fn(item) for item in items]
    with threadpool_limits(1), ThreadPoolExecutor(workers) as pool:
        return list(pool.map(fn, items))


def default_workers() -> int:
    return os.cpu_count() or 1


@dataclass(frozen=True)
class Data:
    """The labelled photos' features, their augmented views' and their shifted views'.

    views: view name -> (N, C), the features of every photo as seen by that view (same rows, same
    order; catdog.data.views): extra training rows, and the mirror image for TTA.
    shifted: shift name -> (photo indices (M,), features (M, C)): some photos as seen by that shift,
    scored only while those photos are held out.
    train_mask: photos that may train a head (False for excluded suspects, which are still scored).
    """

    x: np.ndarray  # (N, C)
    y: np.ndarray  # (N,) 0 cat, 1 dog
    views: dict = field(default_factory=dict)
    train_mask: np.ndarray | None = None  # (N,) bool or None (all)
    shifted: dict = field(default_factory=dict)

    def rows(self, idx: np.ndarray, views: tuple[str, ...] = ()) -> tuple[np.ndarray, np.ndarray]:
        """Training rows of photos `idx` (less any not allowed to train): the photos, then each of
        `views` of them."""
        if self.train_mask is not None:
            idx = idx[self.train_mask[idx]]
        xs = [self.x[idx], *(self.views[v][idx] for v in views)]
        return np.vstack(xs), np.tile(self.y[idx], len(xs))

    def columns(self, cols: np.ndarray) -> "Data":
        """The same photos, views and shifts with only the columns `cols`."""
        return Data(self.x[:, cols], self.y, {k: v[:, cols] for k, v in self.views.items()}, self.train_mask,
                    {k: (at, v[:, cols]) for k, (at, v) in self.shifted.items()})

    def p_dog(self, head: Logistic, idx: np.ndarray, tta: bool = False, temperature: float = 1.0) -> np.ndarray:
        """P(dog) of photos `idx`; tta: the mean with their mirror images'."""
        p = head.p_dog(self.x[idx], temperature)
        if tta and "mirror" in self.views:
            p = (p + head.p_dog(self.views["mirror"][idx], temperature)) / 2
        return p

    def shifted_p_dog(self, head: Logistic, idx: np.ndarray, temperature: float = 1.0) -> dict:
        """shift -> (photos, P(dog)) of those of `idx` that have that shifted view."""
        out = {}
        for name, (photos, x) in self.shifted.items():
            held = np.isin(photos, idx)
            out[name] = (photos[held], head.p_dog(x[held], temperature))
        return out


@dataclass(frozen=True)
class Options:
    """What the selection may use: the L2 grid, augmented views as training rows, TTA, a
    temperature, and whether l2 is chosen on the shifted views too."""

    l2_grid: tuple[float, ...] = L2_GRID
    views: tuple[str, ...] = ()  # train on each photo and these views of it
    tta: bool = False  # score each photo as the mean with its mirror image
    temperature: bool = False  # fit a temperature on the CV predictions and apply it
    robust: bool = False  # choose l2 by the mean of the clean and the shifted CV log loss
    # late fusion: the head is the mean logit of one head per part (the columns of its (start,
    # stop) ranges), each with its own l2 chosen by CV; the last part's selection is the one
    # reported (make it every column). (): one head on every column
    parts: tuple[tuple[tuple[int, int], ...], ...] = ()


def stratified_folds(labels: np.ndarray, k: int, seed: int) -> np.ndarray:
    """Seeded fold number (0..k-1) for each photo, keeping the class ratio in every fold."""
    from catdog.errors import CatdogError

    if k < 2:
        raise CatdogError(f"--cv {k}: needs at least 2 folds (e.g. 5)")
    if np.bincount(np.asarray(labels)).min() < k:
        raise CatdogError(f"--cv {k}: a class has fewer than {k} photos; use fewer folds or more photos")
    rng = np.random.default_rng(seed)
    folds = np.zeros(len(labels), int)
    for cls in np.unique(labels):
        idx = rng.permutation(np.flatnonzero(labels == cls))
        folds[idx] = np.arange(len(idx)) % k
    return folds


def nested_minimum(k: int, inner_k: int) -> int:
    """The fewest photos of a class nested CV can run on: every outer fold's training part (all but
    about 1/k of them) must still hold `inner_k` of the class for the inner folds."""
    n = max(k, inner_k)
    while n - -(-n // k) < inner_k:  # n minus the largest outer test part, ceil(n / k)
        n += 1
    return n


def check_nested(labels: np.ndarray, k: int, inner_k: int) -> None:
    """A one-line CatdogError, before any training, where a class has too few photos for nested
    CV with k outer and inner_k inner folds (`stratified_folds` alone would fail inside a fold)."""
    from catdog.contract import LABELS
    from catdog.errors import CatdogError

    if k < 2:
        raise CatdogError(f"--cv {k}: needs at least 2 folds (e.g. 5)")
    counts = np.bincount(np.asarray(labels), minlength=len(LABELS))
    need = nested_minimum(k, inner_k)
    if counts.min() < need:
        fewest = int(counts.argmin())
        fits = [f for f in range(2, k) if nested_minimum(f, f) <= counts.min()]
        remedy = f"use --cv {fits[-1]} or add photos" if fits else f"add photos (--cv 2 needs {nested_minimum(2, 2)} of each)"
        have = f"there is 1 {LABELS[fewest]}" if counts[fewest] == 1 else f"there are {counts[fewest]} {LABELS[fewest]}s"
        raise CatdogError(f"--cv {k}: nested cross-validation needs at least {need} photos of each class, and {have}; {remedy}")


@dataclass
class Selection:
    """The settings K-fold CV chose on the photos `idx`, and what every candidate scored."""

    l2: float
    temperature: float  # 1.0 unless Options.temperature
    cv_log_loss: dict  # l2 -> pooled out-of-fold log loss (before any temperature): what chose l2
    log_loss: float  # the chosen setting's out-of-fold log loss (after its temperature)
    oof_p_dog: np.ndarray  # out-of-fold P(dog) of `idx` at the chosen l2, before any temperature
    folds: list[tuple[np.ndarray, np.ndarray]]  # (train, score) indices into the full data
    clean_log_loss: dict = field(default_factory=dict)  # l2 -> out-of-fold log loss of the photos as they are
    shifted_log_loss: dict = field(default_factory=dict)  # l2 -> mean over shifts of their out-of-fold log loss
    part_l2: tuple[float, ...] = ()  # late fusion (Options.parts): each part's l2; the fields above are the last part's,
    # but oof_p_dog and log_loss the mean logit's

    @property
    def head_l2(self) -> float | tuple[float, ...]:
        """What `fit` takes: the l2, or each part's."""
        return self.part_l2 or self.l2


def select(data: Data, idx: np.ndarray, options: Options, k: int, seed: int, workers: int = 1) -> Selection:
    """Choose l2 (and the temperature) by K-fold CV on the photos `idx` alone: by the out-of-fold
    log loss, or with `options.robust` by its mean with the shifted views' (held-out photos only).
    With `options.parts`, each part's l2 on its own columns (the same folds)."""
    if options.parts:
        return _select_parts(data, idx, options, k, seed, workers)
    folds_of = stratified_folds(data.y[idx], k, seed)
    folds = [(idx[folds_of != f], idx[folds_of == f]) for f in range(k)]
    oof = {l2: np.zeros(len(idx)) for l2 in options.l2_grid}
    shifted = {l2: {name: ([], []) for name in data.shifted} for l2 in options.l2_grid}
    position = {photo: i for i, photo in enumerate(idx)}
    paths = _map(lambda fold: fit_path(*data.rows(fold[0], options.views), options.l2_grid), folds, workers)
    for (_, va), path in zip(folds, paths):
        at = np.array([position[p] for p in va])
        for l2, head in path.items():
            oof[l2][at] = data.p_dog(head, va, options.tta)
            for name, (photos, p) in data.shifted_p_dog(head, va).items():
                shifted[l2][name][0].append(data.y[photos])
                shifted[l2][name][1].append(p)
    y = data.y[idx]
    clean = {l2: M.log_loss(y, p) for l2, p in oof.items()}
    shifted_loss = {
        l2: float(np.mean([M.log_loss(np.concatenate(ys), np.concatenate(ps)) for ys, ps in by_shift.values() if len(np.concatenate(ys))]))
        for l2, by_shift in shifted.items()
    } if data.shifted else {}
    scores = {l2: (clean[l2] + shifted_loss[l2]) / 2 for l2 in clean} if options.robust and shifted_loss else clean
    best = min(options.l2_grid, key=lambda l2: (scores[l2], -l2))  # a tie goes to the stronger penalty
    temperature, loss = 1.0, clean[best]
    if options.temperature:
        probs = M.cat_dog(oof[best])
        temperature = M.fit_temperature(probs, y)
        loss = M.log_loss(y, M.apply_temperature(probs, temperature))
    return Selection(best, temperature, scores, loss, oof[best], folds, clean, shifted_loss)


def part_columns(part: tuple[tuple[int, int], ...]) -> np.ndarray:
    """A part's column indices from its (start, stop) ranges."""
    return np.concatenate([np.arange(start, stop) for start, stop in part])


def _select_parts(data: Data, idx: np.ndarray, options: Options, k: int, seed: int, workers: int) -> Selection:
    one = replace(options, parts=(), temperature=False)
    parts = [select(data.columns(part_columns(part)), idx, one, k, seed, workers) for part in options.parts]
    # the same folds, so the same photos in the same order: the mean of their logits
    z = np.mean([M.logit(M.cat_dog(s.oof_p_dog)) for s in parts], 0)
    oof = 1 / (1 + np.exp(-z))
    y = data.y[idx]
    temperature, loss = 1.0, M.log_loss(y, oof)
    if options.temperature:
        probs = M.cat_dog(oof)
        temperature = M.fit_temperature(probs, y)
        loss = M.log_loss(y, M.apply_temperature(probs, temperature))
    return replace(parts[-1], temperature=temperature, log_loss=loss, oof_p_dog=oof, part_l2=tuple(s.l2 for s in parts))


def fit(data: Data, idx: np.ndarray, options: Options, l2: float | tuple[float, ...]) -> Logistic:
    """The head fitted on photos `idx` (and their views where asked) at `l2`; with
    `options.parts`, the mean logit of one head per part (at each part's l2, or all at one), which
    is itself one logistic regression on every column (each part's weights divided by the number
    of parts, summed where parts share a column)."""
    x, y = data.rows(idx, options.views)
    if not options.parts:
        return fit_logistic(x, y, l2)
    l2s = l2 if isinstance(l2, tuple) else (l2,) * len(options.parts)
    w, b = np.zeros(x.shape[1]), 0.0
    for part, part_l2 in zip(options.parts, l2s):
        cols = part_columns(part)
        head = fit_logistic(x[:, cols], y, part_l2)
        w[cols] += head.w / len(options.parts)
        b += head.b / len(options.parts)
    return Logistic(w, b)


@dataclass
class OuterFold:
    """One outer fold of the nested CV: what trained, what was scored, and what was chosen."""

    train: np.ndarray  # photos the settings were chosen on and the head fitted on
    test: np.ndarray  # photos scored by that head
    selection: Selection  # its inner CV (selection.folds index only `train`)
    p_dog: np.ndarray | None = None  # the scores of `test`
    shifted: dict = field(default_factory=dict)  # shift -> (photos of `test`, their P(dog) under that shift)


@dataclass
class NestedCV:
    p_dog: np.ndarray  # (N,) each photo's P(dog) from the head of the outer fold that held it out
    folds: np.ndarray  # (N,) the outer fold of each photo
    records: list[OuterFold] = field(default_factory=list)


def nested_cv(
    data: Data,
    options: Options,
    k: int = 5,
    inner_k: int = 5,
    seed: int = 0,
    on_fold=None,
    folds: np.ndarray | None = None,
    workers: int | None = None,
) -> NestedCV:
    """Out-of-fold predictions of the whole procedure (select, then fit), for every photo.

    folds: the outer fold of each photo (default: `stratified_folds(y, k, seed)`).
    on_fold: called after each outer fold (a progress bar's update).
    workers: outer folds run side by side on this many threads (default: one per CPU);
    each fold's result does not depend on it."""
    n = len(data.y)
    folds = stratified_folds(data.y, k, seed) if folds is None else np.asarray(folds)

    def outer(f: int) -> OuterFold:
        train, test = np.flatnonzero(folds != f), np.flatnonzero(folds == f)
        selection = select(data, train, options, inner_k, seed + 1 + f)
        record = OuterFold(train, test, selection)
        head = fit(data, train, options, selection.head_l2)
        record.p_dog = data.p_dog(head, test, options.tta, selection.temperature)
        record.shifted = data.shifted_p_dog(head, test, selection.temperature)
        if on_fold:
            on_fold()
        return record

    records = _map(outer, list(range(int(folds.max()) + 1)), workers or default_workers())
    p_dog = np.zeros(n)
    for record in records:
        p_dog[record.test] = record.p_dog
    return NestedCV(p_dog, folds, records)


def group_folds(x: np.ndarray, y: np.ndarray, k: int = 5, seed: int = 0) -> np.ndarray:
    """Fold number (0..k-1) of each photo made by clustering, not by chance: within each class,
    k-means (k clusters) on the L2-normalised features, and fold f takes the f-th largest cluster
    of every class. Each fold is a kind of photo (as the backbone sees it) that the other folds
    hold little of: a held-out fold measures photos unlike the training ones, as another source is.
    """
    from sklearn.cluster import KMeans
    from threadpoolctl import threadpool_limits

    x = np.asarray(x, np.float64)
    folds = np.zeros(len(y), int)
    for cls in np.unique(y):
        idx = np.flatnonzero(y == cls)
        unit = x[idx] / np.maximum(np.linalg.norm(x[idx], axis=1, keepdims=True), 1e-12)
        with threadpool_limits(1):
            clusters = KMeans(k, n_init=4, random_state=seed).fit_predict(unit)
        by_size = np.argsort(-np.bincount(clusters, minlength=k), kind="stable")
        folds[idx] = np.argsort(by_size)[clusters]
    return folds


def fold_predictions(data: Data, options: Options, folds: np.ndarray, l2: float | tuple[float, ...], workers: int | None = None) -> np.ndarray:
    """Each photo's P(dog) from a head fitted at `l2` (`fit`) on the other folds (one fit per fold)."""
    def one(f: int) -> np.ndarray:
        return data.p_dog(fit(data, np.flatnonzero(folds != f), options, l2), np.flatnonzero(folds == f), options.tta)

    p_dog = np.zeros(len(data.y))
    for f, p in zip(range(int(folds.max()) + 1), _map(one, list(range(int(folds.max()) + 1)), workers or default_workers())):
        p_dog[folds == f] = p
    return p_dog


def shifted_scores(data: Data, nested: NestedCV) -> dict:
    """shift -> (labels, P(dog)) of every photo with that shifted view, each scored by the nested
    CV's head of the outer fold that held the photo out."""
    out = {}
    for name in data.shifted:
        photos = np.concatenate([r.shifted[name][0] for r in nested.records])
        p = np.concatenate([r.shifted[name][1] for r in nested.records])
        out[name] = (data.y[photos], p)
    return out


def bootstrap_interval(values: np.ndarray, n_boot: int = 2000, seed: int = 0, level: float = 0.95) -> tuple[float, float]:
    """Percentile interval of the mean of `values` (one per photo) over photos resampled with replacement."""
    values = np.asarray(values, np.float64)
    rng = np.random.default_rng(seed)
    means = np.array([values[rng.integers(0, len(values), len(values))].mean() for _ in range(n_boot)])
    alpha = (1 - level) / 2
    return float(np.quantile(means, alpha)), float(np.quantile(means, 1 - alpha))


def per_photo_log_loss(labels: np.ndarray, p_dog: np.ndarray, eps: float = 1e-15) -> np.ndarray:
    p = np.clip(np.asarray(p_dog, np.float64), eps, 1 - eps)
    y = np.asarray(labels, np.float64)
    return -(y * np.log(p) + (1 - y) * np.log(1 - p))


def estimate(labels: np.ndarray, p_dog: np.ndarray, folds: np.ndarray, n_boot: int = 2000, seed: int = 0) -> dict:
    """Log loss and accuracy of out-of-fold predictions with a bootstrap 95 % interval over
    photos, and the per-fold log losses with their spread."""
    labels = np.asarray(labels)
    losses = per_photo_log_loss(labels, p_dog)
    correct = ((np.asarray(p_dog) >= 0.5) == (labels == 1)).astype(np.float64)
    per_fold = [float(losses[folds == f].mean()) for f in np.unique(folds)]
    return {
        **M.summary(labels, p_dog),
        "log_loss_95": list(bootstrap_interval(losses, n_boot, seed)),
        "accuracy_95": list(bootstrap_interval(correct, n_boot, seed)),
        "fold_log_loss": per_fold,
        "fold_log_loss_sd": float(np.std(per_fold, ddof=1)) if len(per_fold) > 1 else 0.0,
        "bootstrap_resamples": n_boot,
    }
