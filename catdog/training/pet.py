"""The third answer: is there a cat or a dog in the photo at all ("pet"), and the threshold below
which catdog says "neither".

    logit(pet) = imagenet_log_odds(f) + w . f + c

f: the pooled features the head already sees. imagenet_log_odds: the log-odds of the 123 pet
classes (118 dog breeds, 5 domestic cats) against the other 877 under the backbone's own ImageNet
top (MobileNetV2's here; ResNet50's where it can be downloaded); 0 for a backbone without a top
(MobileNet V1 offline). w, c: an L2
logistic regression fitted on top of that offset with the training cats and dogs as positives and
photos with neither (../shared/data/not-pets) as negatives. The offset is fixed, not fitted: the
ImageNet top has seen 1.28 M photos of 1,000 kinds of things, the detector only the negatives given,
so a kind of photo missing from them (animals, held out) is still rejected (measured, README).

The threshold keeps KEEP of the training cats and dogs' cross-validated scores; its nested-CV
estimate (threshold chosen inside each outer fold) gives the keep and reject rates `make run` prints.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import keras
import numpy as np

from catdog.contract import PET
from catdog.training.cv import nested_minimum

IMAGENET_DOG_CLASSES = tuple(range(151, 269))  # the 118 dog breeds
IMAGENET_CAT_CLASSES = tuple(range(281, 286))  # tabby, tiger cat, Persian, Siamese, Egyptian cat
IMAGENET_PET_CLASSES = IMAGENET_DOG_CLASSES + IMAGENET_CAT_CLASSES  # in this order in the pet head's Dense
DOG_LOG_ODDS = "dog_log_odds"  # the pet head's second output: the ImageNet top's dog-vs-cat log-odds, (N, 1)
TOP_BRANCHES = ("mobilenet_v2", "resnet50")  # backbones whose Keras top is one Dense "predictions" on GAP
KEEP = 0.997  # quantile of the cats' and dogs' CV scores the threshold keeps (nested CV: >= 99.5 %)
L2 = 1.0  # on standardised features; keep and reject rates were flat from 0.01 to 1 (README)
NEGATIVE_SHARE = 0.25  # the negatives weigh at least this share of the positives in the fit
FOLDS = 5
# views of the training cats and dogs the detector also learns from, where the run has them (`catdog
# run` extracts every shifted view of SHIFT_PHOTOS photos): trained on plain photos alone, it called 6.7 %
# of grayscale cats and dogs neither; with the gray view of 120, 3.5 %, rejecting as many photos with
# neither (`python -m bench neither --shifts`, README)
PET_VIEWS = ("gray",)
# nested CV: every inner fit (the outer training part, FOLDS - 1 shares) still has FOLDS photos with neither
MIN_NEGATIVES = nested_minimum(FOLDS, FOLDS)  # 7 for 5 folds


@dataclass
class ImagenetTop:
    """A backbone's ImageNet classifier on its slice [start, stop) of the pooled features."""

    branch: str
    start: int
    stop: int
    kernel: np.ndarray  # (stop - start, 1000)
    bias: np.ndarray  # (1000,)

    def logits(self, features: np.ndarray) -> np.ndarray:
        """(N, C) pooled features -> (N, 1000) the top's logits (before its softmax)."""
        return np.asarray(features, np.float64)[:, self.start : self.stop] @ self.kernel + self.bias

    def log_odds(self, features: np.ndarray) -> np.ndarray:
        """(N, C) pooled features -> (N,) log P(pet classes) - log P(other classes) under the top."""
        z = self.logits(features)
        pets = np.zeros(z.shape[1], bool)
        pets[list(IMAGENET_PET_CLASSES)] = True
        return _logsumexp(z[:, pets]) - _logsumexp(z[:, ~pets])

    def dog_log_odds(self, features: np.ndarray) -> np.ndarray:
        """(N, C) pooled features -> (N,) log P(dog breeds) - log P(cat classes) under the top: a prior
        learnt from 1.28 M photos of other sources, which the cat/dog head takes as one more feature."""
        z = self.logits(features)
        return _logsumexp(z[:, list(IMAGENET_DOG_CLASSES)]) - _logsumexp(z[:, list(IMAGENET_CAT_CLASSES)])

    def with_dog_log_odds(self, features: np.ndarray) -> np.ndarray:
        """(N, C) pooled features -> (N, C + 1) the head's features: the dog-vs-cat log-odds as the
        last column, in the features' dtype (as the full model's HEAD_FEATURES layer joins them)."""
        return np.hstack([features, self.dog_log_odds(features)[:, None].astype(features.dtype)])


def _logsumexp(z: np.ndarray) -> np.ndarray:
    m = z.max(1, keepdims=True)
    return (m + np.log(np.exp(z - m).sum(1, keepdims=True)))[:, 0]


@dataclass
class PetFit:
    """The fitted detector on raw pooled features (standardisation folded in), its threshold on
    P(pet), and what cross-validation measured."""

    w: np.ndarray  # (C,)
    c: float
    threshold: float
    top: ImagenetTop | None
    estimate: dict = field(default_factory=dict)

    def logit(self, features: np.ndarray) -> np.ndarray:
        offset = self.top.log_odds(features) if self.top else 0.0
        return np.asarray(features, np.float64) @ self.w + self.c + offset

    def pet(self, features: np.ndarray) -> np.ndarray:
        return 1.0 / (1.0 + np.exp(-self.logit(features)))


def imagenet_top(backbone: str, weights: str) -> tuple[ImagenetTop | None, str]:
    """The first branch of `backbone` (a name or a fusion "a,b") in TOP_BRANCHES with ImageNet
    weights whose top Keras can load (its cache in $KERAS_HOME/models, else a download); and a note
    saying which, or why none."""
    from catdog.features import backbone_names, get_spec

    start = 0
    notes = []
    for name, wid in zip(backbone_names(backbone), (weights or "").split(",") + [""] * 8):
        spec = get_spec(name)
        if name in TOP_BRANCHES and wid == "imagenet":
            try:
                net = getattr(keras.applications, spec.constructor)(include_top=True, weights="imagenet")
                kernel, bias = net.get_layer("predictions").get_weights()
                return ImagenetTop(name, start, start + spec.feature_dim, kernel.astype(np.float64), bias.astype(np.float64)), (
                    f"ImageNet top of {name}"
                )
            except Exception as exc:  # no cached file and no network: Keras' get_file raises plain Exception
                notes.append(f"{name}'s ImageNet top is not available ({str(exc).splitlines()[0][:80]})")
        start += spec.feature_dim
    return None, "; ".join(notes) or "no backbone with an ImageNet top: the detector alone"


def _fit(x: np.ndarray, y: np.ndarray, offset: np.ndarray, l2: float = L2) -> tuple[np.ndarray, float]:
    """Weighted L2 logistic regression of y on standardised x with a fixed offset: (w, c) on raw x."""
    from scipy.optimize import minimize
    from threadpoolctl import threadpool_limits

    mu, sd = x.mean(0), x.std(0) + 1e-6
    xs = (x - mu) / sd
    n_pos, n_neg = int(y.sum()), int((1 - y).sum())
    weight = np.where(y == 0, max(1.0, NEGATIVE_SHARE * n_pos / max(n_neg, 1)), 1.0)
    weight /= weight.mean()

    def loss(p):
        w, c = p[:-1], p[-1]
        z = xs @ w + c + offset
        value = weight * (np.logaddexp(0, -z) * y + np.logaddexp(0, z) * (1 - y))
        g = weight * (1 / (1 + np.exp(-z)) - y)
        return value.mean() + 0.5 * l2 * w @ w, np.r_[xs.T @ g / len(y) + l2 * w, g.mean()]

    with threadpool_limits(1):  # matrix-vector products: a second BLAS thread only contends (training.cv)
        p = minimize(loss, np.zeros(x.shape[1] + 1), jac=True, method="L-BFGS-B", options={"maxiter": 3000}).x
    w = p[:-1] / sd
    return w, float(p[-1] - w @ mu)


def _scores(x, y, offset, train, test, photo: np.ndarray | None = None) -> np.ndarray:
    """Logits of rows `test` from a detector fitted on the photos `train`; photo: the photo each row
    of x shows (views of a photo train with it), None where every row is a photo of its own."""
    fitted = train if photo is None else np.flatnonzero(np.isin(photo, train))
    w, c = _fit(x[fitted], y[fitted], offset[fitted])
    return x[test] @ w + c + offset[test]


def _oof(x, y, offset, rows: np.ndarray, seed: int, photo: np.ndarray | None = None) -> np.ndarray:
    """Out-of-fold logits of the photos `rows` (FOLDS-fold CV, stratified; `_scores`' photo)."""
    from catdog.training.cv import _map, default_workers, stratified_folds

    folds = stratified_folds(y[rows].astype(int), FOLDS, seed)
    out = np.zeros(len(rows))
    scored = _map(lambda k: _scores(x, y, offset, rows[folds != k], rows[folds == k], photo), list(range(FOLDS)), default_workers())
    for k, scores in enumerate(scored):
        out[folds == k] = scores
    return out


def _threshold(pet_logits: np.ndarray) -> float:
    return float(np.quantile(pet_logits, 1 - KEEP))


def fit_pet(
    pets: np.ndarray, negatives: np.ndarray | None, top: ImagenetTop | None, seed: int = 0,
    views: dict[str, tuple[np.ndarray, np.ndarray]] | None = None,
) -> PetFit:
    """Fit the detector on pooled features of cats and dogs (`pets`) and of photos with neither
    (`negatives`), choose the threshold by CV, and estimate keep and reject rates by nested CV.
    Without negatives, the ImageNet log-odds alone with a threshold from the pets' scores; without
    either, no neither answer (P(pet) = 1, threshold 0).

    views: view name -> (rows of `pets`, (n, C) their features as the view shows them): more cats
    and dogs to learn from (`PET_VIEWS`). A view trains with its photo, so no detector that scores a
    photo has seen any view of it; thresholds come from the plain photos' scores, as without views,
    and the nested CV also gives each view's keep rate."""
    from catdog.training.cv import stratified_folds

    pets = np.asarray(pets, np.float64)
    offset_pets = top.log_odds(pets) if top else np.zeros(len(pets))
    if negatives is None or len(negatives) == 0:
        if top is None:
            return PetFit(np.zeros(pets.shape[1]), 30.0, 0.0, None, {"method": "none: no ImageNet top and no negatives"})
        t = _threshold(offset_pets)
        keep = float(np.mean(offset_pets >= t))
        return PetFit(np.zeros(pets.shape[1]), 0.0, float(1 / (1 + np.exp(-t))), top, {
            "method": f"the ImageNet top's pet log-odds alone (no negatives); threshold keeps {KEEP:.1%} of the training cats and dogs",
            "keep": keep, "reject": None, "n_pets": len(pets), "n_negatives": 0,
        })
    negatives = np.asarray(negatives, np.float64)
    views = {v: (np.asarray(r, int), np.asarray(f, np.float64)) for v, (r, f) in (views or {}).items() if len(r)}
    n = len(pets) + len(negatives)  # the photos; the views' rows follow them in x
    rest = [negatives, *(f for _, f in views.values())]
    x = np.vstack([pets, *rest])
    photo = np.r_[np.arange(n), *(r for r, _ in views.values())].astype(int)
    y = np.r_[np.ones(len(pets)), np.zeros(len(negatives)), np.ones(len(photo) - n)]
    offset = np.r_[offset_pets, *(top.log_odds(a) if top else np.zeros(len(a)) for a in rest)]
    # nested CV: each outer fold scored by a detector and a threshold chosen without it
    outer = stratified_folds(y[:n].astype(int), FOLDS, seed)
    nested, kept, fold_t = np.zeros(len(y)), np.zeros(len(y), bool), np.zeros(len(y))
    for k in range(FOLDS):
        train, test = np.flatnonzero(outer != k), np.flatnonzero(outer[photo] == k)
        inner = _oof(x, y, offset, train, seed + 1, photo)
        t = _threshold(inner[y[train] == 1])
        nested[test] = _scores(x, y, offset, train, test, photo)
        kept[test] = nested[test] >= t
        fold_t[test] = t
    # the shipped detector: every photo and view; its threshold from every photo's out-of-fold score
    oof = _oof(x, y, offset, np.arange(n), seed + 1, photo)
    t = _threshold(oof[y[:n] == 1])
    w, c = _fit(x, y, offset)
    view_rates, at = {}, n
    for view, (rows, _) in views.items():
        view_rates[view] = {"n_photos": int(len(rows)), "keep": float(kept[at : at + len(rows)].mean())}
        at += len(rows)
    nested, kept, fold_t, y = nested[:n], kept[:n], fold_t[:n], y[:n]
    return PetFit(w, c, float(1 / (1 + np.exp(-t))), top, {
        "method": (
            f"nested {FOLDS}-fold CV over {len(pets)} cats and dogs and {len(negatives)} photos with neither: in each outer "
            f"fold the detector is fitted and the threshold chosen (keeping {KEEP:.1%} of inner out-of-fold scores) without it"
            + "".join(f"; it also learns from the {v} view of {r['n_photos']} of the cats and dogs" for v, r in view_rates.items())
        ),
        "keep": float(kept[y == 1].mean()),
        "reject": float((~kept[y == 0]).mean()),
        "n_pets": int(len(pets)),
        "n_negatives": int(len(negatives)),
        "views": view_rates,  # view -> photos the detector also learnt from, and the nested keep rate of those views
        "nested_pet": [float(1 / (1 + np.exp(-v))) for v in nested],  # pets first, then the negatives
        "nested_kept": [bool(k) for k in kept],
        "nested_threshold": [float(1 / (1 + np.exp(-v))) for v in fold_t],  # each photo's outer fold's threshold on P(pet)
    })


@keras.saving.register_keras_serializable(package="catdog")
class FeatureSlice(keras.layers.Layer):
    """(N, C) -> (N, stop - start): one backbone's part of a fusion's pooled features."""

    def __init__(self, start: int, stop: int, **kwargs):
        super().__init__(**kwargs)
        self.start, self.stop = int(start), int(stop)

    def call(self, x):
        return x[:, self.start : self.stop]

    def compute_output_shape(self, input_shape):
        return (input_shape[0], self.stop - self.start)

    def get_config(self):
        return {**super().get_config(), "start": self.start, "stop": self.stop}


@keras.saving.register_keras_serializable(package="catdog")
class LogOdds(keras.layers.Layer):
    """[(N, A), (N, B)] logits -> (N, 1): log sum exp of the first group minus that of the second,
    i.e. log P(first group) - log P(second group) under their joint softmax. Written with max, exp,
    sum and log (no IsFinite guard, unlike tf.reduce_logsumexp) so every converter takes it."""

    def call(self, inputs):
        def logsumexp(z):
            m = keras.ops.max(z, axis=-1, keepdims=True)
            return m + keras.ops.log(keras.ops.sum(keras.ops.exp(z - m), axis=-1, keepdims=True))

        a, b = inputs
        return logsumexp(a) - logsumexp(b)

    def compute_output_shape(self, input_shapes):
        return (input_shapes[0][0], 1)


def pet_head(feature_dim: int, fit: PetFit, dog_prior: bool = False) -> keras.Model:
    """(C,) pooled features -> (1,) P(pet), named "pet_head"; its output layer is named PET.

    dog_prior (needs `fit.top`): outputs {PET: (1,), DOG_LOG_ODDS: (1,)} instead, the second the
    top's dog-vs-cat log-odds from the same pet-class logits (`ImagenetTop.dog_log_odds`)."""
    features = keras.Input(shape=(feature_dim,), name="pooled_features")
    dog_log_odds = None
    detector = keras.layers.Dense(1, name="pet_detector")
    logit = detector(features)
    detector.set_weights([fit.w.reshape(-1, 1).astype(np.float32), np.array([fit.c], np.float32)])
    if fit.top is not None:
        top = fit.top
        part = FeatureSlice(top.start, top.stop, name="imagenet_features")(features)
        is_pet = np.zeros(top.kernel.shape[1], bool)
        is_pet[list(IMAGENET_PET_CLASSES)] = True
        groups = []
        for name, columns in (("imagenet_pets", is_pet), ("imagenet_others", ~is_pet)):
            dense = keras.layers.Dense(int(columns.sum()), name=name)
            groups.append(dense(part))
            dense.set_weights([top.kernel[:, columns].astype(np.float32), top.bias[columns].astype(np.float32)])
        logit = keras.layers.Add(name="pet_logit")([logit, LogOdds(name="imagenet_pet_log_odds")(groups)])
        if dog_prior:
            n_dogs = len(IMAGENET_DOG_CLASSES)
            dogs = FeatureSlice(0, n_dogs, name="imagenet_dogs")(groups[0])
            cats = FeatureSlice(n_dogs, len(IMAGENET_PET_CLASSES), name="imagenet_cats")(groups[0])
            dog_log_odds = LogOdds(name=DOG_LOG_ODDS)([dogs, cats])
    pet = keras.layers.Activation("sigmoid", name=PET)(logit)
    if dog_log_odds is not None:
        return keras.Model(features, {PET: pet, DOG_LOG_ODDS: dog_log_odds}, name="pet_head")
    return keras.Model(features, pet, name="pet_head")


def pet_outputs(pet_head_layer, pooled) -> tuple:
    """(P(pet), the dog-vs-cat log-odds or None) of a pet head called on `pooled` (the second only
    where the head has it: a backbone with an ImageNet top, trained since the prior was added)."""
    out = pet_head_layer(pooled)
    return (out[PET], out[DOG_LOG_ODDS]) if isinstance(out, dict) else (out, None)
