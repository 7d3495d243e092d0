"""Extract backbone features for a list of photos into one resumable h5 file.

File layout (one row per usable photo, rows in sample order once complete):

    features   float32 (N, C)   global-average-pooled last conv block
    labels     int8    (N,)     0 cat, 1 dog, -1 unlabelled
    names      str     (N,)     path relative to the data folder
    ids        str     (N,)     Kaggle id ("12", "cat.12") or name stem
    keys       str     (N,)     cache key: name|size|mtime_ns
    attrs: backbone, weights, image_size, view, rows (committed row count), complete, catdog_version

A file made with `view` other than "plain" holds the features of each photo as seen by that view
of catdog.data.views (mirrored, cropped close, recoloured, ...): extra training rows for the head,
or shifted photos to score it on, one file per view (`view_path`), cached and resumed alike.

Rows are appended one batch at a time and `rows` is written after the data, so a run that is
killed resumes after its last committed batch; a finished file is not recomputed.
"""

from __future__ import annotations

import os
import time
from dataclasses import dataclass, field
from pathlib import Path

import h5py
import numpy as np
from tqdm import tqdm

from catdog import __version__
from catdog.atomic import staged
from catdog.data import IMAGE_SIZE, MAX_PIXELS, PLAIN, Rejection, Sample, check_view, fingerprint, iter_batches, listed, sha256_file
from catdog.contract import RunDir
from catdog.errors import CatdogError
from catdog.features.backbones import build_backbone, check_image_size, feature_model, get_spec, split_weights
from catdog.features.engine import feature_runner

_STR = h5py.string_dtype("utf-8")
_COLUMNS = {"labels": np.int8, "names": _STR, "ids": _STR, "keys": _STR}


@dataclass
class FeatureSet:
    """Features and their photos, as read back from an h5 file."""

    features: np.ndarray
    labels: np.ndarray
    names: list[str]
    ids: list[str]
    backbone: str
    weights: str
    attrs: dict = field(default_factory=dict)
    keys: list[str] = field(default_factory=list)  # each photo's cache key (name|size|mtime): which file it was


@dataclass
class ExtractReport:
    path: Path
    computed: int  # photos run through the backbone in this call
    cached: int  # photos found already in the file
    rejections: list[Rejection]
    seconds: float

    @property
    def images_per_s(self) -> float:
        return self.computed / self.seconds if self.seconds > 0 else 0.0


def weights_id(weights: str | os.PathLike | None) -> str:
    """A stable name for the weights: "imagenet", "random", or "file:<sha256>" (a fusion's
    list of weights, as from `split_weights`, gives these joined by commas)."""
    if isinstance(weights, list):
        return ",".join(weights_id(w) for w in weights)
    if weights in ("imagenet", None):
        return weights or "random"
    path = Path(weights)
    if not path.is_file():
        raise CatdogError(f"{path}: weights file not found; pass the path of an existing .h5 weights file")
    return f"file:{sha256_file(path)}"


def _create(
    path: Path, backbone: str, weights: str, weights_arg: str | None, dim: int, image_size: int, view: str = PLAIN
) -> None:
    with h5py.File(path, "w") as f:
        f.create_dataset("features", shape=(0, dim), maxshape=(None, dim), dtype=np.float32, chunks=(256, dim))
        for name, dtype in _COLUMNS.items():
            f.create_dataset(name, shape=(0,), maxshape=(None,), dtype=dtype, chunks=(1024,))
        f.attrs.update(
            backbone=backbone,
            weights=weights,
            weights_path=weights_arg or "",
            image_size=image_size,
            view=view,
            resize="squash, Pillow bilinear (antialiased)",
            rows=0,
            complete=False,
            catdog_version=__version__,
        )


def _described(backbone: str, weights: str, image_size: int, view: str) -> str:
    return f"{backbone} with {weights} at {image_size}px" + ("" if view == PLAIN else f" (view {view})")


def file_view(attrs) -> str:
    """The view a feature file holds (files of catdog 0.x before views said only `mirror`)."""
    return str(attrs.get("view") or ("mirror" if attrs.get("mirror") else PLAIN))


def view_path(features_path: str | os.PathLike, view: str) -> Path:
    """Where the features of `view` live beside FEATURES.h5: FEATURES.h5 itself for PLAIN, else
    views/VIEW.h5 in the same folder (negatives.h5's views: views/negatives.VIEW.h5)."""
    path = Path(features_path)
    if view == PLAIN:
        return path
    prefix = "" if path.stem == "features" else f"{path.stem}."
    return path.parent / "views" / f"{prefix}{check_view(view)}.h5"


def finished(path: str | os.PathLike) -> bool:
    """Whether `path` is a feature file whose extraction finished (an interrupted one is resumed by
    running `catdog features` again); False for a missing or unreadable file."""
    try:
        with h5py.File(path, "r") as f:
            return bool(f.attrs.get("complete", False))
    except (OSError, KeyError):
        return False


def _open_for_resume(path: Path, backbone: str, weights: str, image_size: int, view: str = PLAIN) -> set[str]:
    """Keys already committed in `path`, which is rewritten (atomically) to hold exactly them.

    HDF5 is not crash-safe: a kill mid-batch can leave the structures past the committed rows
    inconsistent, so that the next write into them fails ("len not positive after adjustment for
    EOA", seen once in CI). The committed rows were flushed before `rows` counted them; a fresh
    file of just those rows is sound.

    Only a file catdog wrote is moved aside as broken: one that is not HDF5, or HDF5 without catdog's
    features (a Keras weights file), or one another process holds open, is refused in one line (each
    was renamed *.broken and replaced)."""
    _check_ours(path)
    try:
        with h5py.File(path, "a") as f:
            if "rows" not in f.attrs or "backbone" not in f.attrs:  # killed while an older catdog created it
                if (len(f) or len(f.attrs)) and "features" not in f and "backbone" not in f.attrs:  # someone else's contents
                    raise CatdogError(f"{path}: an HDF5 file without catdog's features (not written by `catdog features`); "
                                      "give --out a new .h5 path, or delete the file")
                raise KeyError("rows")
            held = (
                f.attrs.get("backbone"),
                f.attrs.get("weights"),
                int(f.attrs.get("image_size", IMAGE_SIZE)),
                file_view(f.attrs),
            )
            rows = int(f.attrs["rows"])
            other = held != (backbone, weights, image_size, view)
            if other and rows:
                raise CatdogError(
                    f"{path}: holds {held[0]} features with weights {held[1]} at {held[2]}px"
                    + ("" if held[3] == PLAIN else f" (view {held[3]})")
                    + f", not {_described(backbone, weights, image_size, view)}; choose another --out or delete the file"
                )
            attrs = dict(f.attrs)
            data = {name: f[name][:rows] for name in ("features", *_COLUMNS)}
    except (OSError, KeyError) as exc:
        if "lock" in str(exc).lower():  # HDF5's file lock: a notebook or another catdog has it open
            raise CatdogError(f"{path}: in use by another process (HDF5 could not lock it); close it there, or give --out another path") from None
        broken = path.with_suffix(path.suffix + ".broken")
        n = 1
        while broken.exists():  # an earlier incident's file is kept too
            broken, n = path.with_suffix(f"{path.suffix}.broken.{n}"), n + 1
        os.replace(path, broken)
        print(f"features: {path} was unreadable (killed mid-write?); moved it to {broken} and starting afresh")
        return set()
    if other:  # nothing committed under other settings (a first try that failed, e.g. weights not found): start afresh
        path.unlink()
        return set()
    # outside the try: a failed write (a full disk) must not pass the readable file off as broken
    _rewrite(path, attrs, data, {**{k: v for k, v in attrs.items() if k != "rows"}, "complete": False})
    return set(k.decode() if isinstance(k, bytes) else k for k in data["keys"])


HDF5_SIGNATURE = b"\x89HDF\r\n\x1a\n"


def _check_ours(path: Path) -> None:
    """Refuse, in one line, an existing --out that cannot be a feature file: not HDF5 (a notes.txt,
    a CSV). An empty file is left to the caller (a kill before HDF5 wrote its header)."""
    try:
        with open(path, "rb") as f:
            head = f.read(len(HDF5_SIGNATURE))
    except OSError as exc:
        raise CatdogError(f"{path}: cannot read it ({exc.strerror}); check its permissions, or give --out another path") from None
    if head and head != HDF5_SIGNATURE:
        raise CatdogError(f"{path}: exists and is not a feature file (not HDF5); give --out a new .h5 path, or delete the file")


def _append(path: Path, features: np.ndarray, samples: list[Sample], keys: list[str]) -> None:
    with h5py.File(path, "a") as f:
        rows = int(f.attrs["rows"])
        new = rows + len(samples)
        columns = {
            "features": features.astype(np.float32),
            "labels": np.array([-1 if s.label is None else s.label for s in samples], np.int8),
            "names": [s.name for s in samples],
            "ids": [s.id for s in samples],
            "keys": keys,
        }
        for name, values in columns.items():
            f[name].resize(new, axis=0)
            f[name][rows:new] = values
        f.flush()
        f.attrs["rows"] = new  # committed only after the data is written


def _finalize(path: Path, samples: list[Sample], keys: list[str], extra: dict) -> None:
    """Keep exactly the current samples' rows, in sample order, and mark the file complete (with
    the `extra` attributes, in the same atomic rewrite)."""
    with h5py.File(path, "r") as f:
        stored = [k.decode() if isinstance(k, bytes) else k for k in f["keys"][:]]
        attrs = dict(f.attrs)
        data = {name: f[name][:] for name in ("features", *_COLUMNS)}
    index = {k: i for i, k in enumerate(stored)}
    rows = [index[k] for k in keys if k in index]
    kept = [stored[i].rsplit("|", 2) for i in rows]
    extra = {"complete": True, "data_fingerprint": fingerprint([(name, int(size)) for name, size, _ in kept]), **extra}
    _rewrite(path, attrs, {name: values[rows] for name, values in data.items()}, extra)


def _rewrite(path: Path, attrs: dict, data: dict, extra: dict | None = None) -> None:
    """Replace `path` atomically by a fresh file of `data`'s rows (every column, same length) with
    `attrs`' identity (backbone, weights, size, view) and `extra` attributes."""
    with staged(path) as tmp:
        _create(
            tmp, attrs["backbone"], attrs["weights"], attrs.get("weights_path"), data["features"].shape[1],
            int(attrs["image_size"]), file_view(attrs),
        )
        with h5py.File(tmp, "a") as f:
            for name, values in data.items():
                f[name].resize(len(values), axis=0)
                f[name][:] = values
            f.attrs["rows"] = len(data["features"])
            f.attrs.update(extra or {})


@dataclass
class CacheTarget:
    """A feature file opened for extraction: which of `samples` it holds and which are left to do.

    Made by `open_cache` (which refuses a file of another backbone, weights, size or view) and
    closed by `close_cache`; rows go in between with `append_rows`, in any order, one batch at a time.
    """

    path: Path
    backbone: str  # the spec's name ("mobilenet_v2", or "a,b" for a fusion)
    weights_key: str  # weights_id of the weights
    image_size: int
    view: str
    samples: list[Sample]
    keys: list[str]  # samples' cache keys, same order
    todo: list[tuple[Sample, str]]  # (sample, key) not yet in the file, in sample order

    @property
    def cached(self) -> int:
        return len(self.samples) - len(self.todo)


def open_cache(
    samples: list[Sample],
    out_path: str | os.PathLike,
    backbone: str = "mobilenet_v2",
    weights: str | os.PathLike | None = "imagenet",
    image_size: int = IMAGE_SIZE,
    view: str = PLAIN,
    keys: list[str] | None = None,
) -> CacheTarget:
    """Create `out_path`, or reopen it to resume; CatdogError if it holds other features.

    keys: the samples' `cache_key`s where the caller has them (catdog.features.distributed takes
    them on Ray); by default each sample's file is stat'ed here."""
    spec = get_spec(backbone)
    image_size = check_image_size(image_size)
    out_path = Path(out_path)
    out_path.parent.mkdir(parents=True, exist_ok=True)
    per_backbone = split_weights(spec.name, weights)
    wid = weights_id(per_backbone)
    paths = ["" if w in ("imagenet", None) else str(Path(w).resolve()) for w in per_backbone]
    weights_arg = ",".join(paths) if any(paths) else None
    keys = [s.cache_key for s in samples] if keys is None else list(keys)
    if len(keys) != len(samples):
        raise ValueError(f"{len(keys)} keys for {len(samples)} samples")
    view = check_view(view)
    done = _open_for_resume(out_path, spec.name, wid, image_size, view) if out_path.exists() else set()
    if not out_path.exists():
        with staged(out_path) as tmp:  # a kill never leaves a file without its attributes under out_path
            _create(tmp, spec.name, wid, weights_arg, spec.feature_dim, image_size, view)
    todo = [(s, k) for s, k in zip(samples, keys) if k not in done]
    held = {k.rsplit("|", 1)[0] for k in done}  # name|size of the rows the file holds
    touched = sum(1 for _, k in todo if k.rsplit("|", 1)[0] in held)
    if touched:  # a copied dataset (new mtimes) was recomputed whole without a word on why
        print(f"features: note: {touched} photo(s) have the name and size of cached ones but another modification time "
              "(copied or edited since?): their features are computed again")
    return CacheTarget(out_path, spec.name, wid, image_size, view, samples, keys, todo)


def append_rows(target: CacheTarget, features: np.ndarray, samples: list[Sample], keys: list[str]) -> None:
    """Commit one batch: (N, C) features of `samples` (with their cache `keys`)."""
    _append(target.path, np.asarray(features), samples, keys)


def close_cache(target: CacheTarget, excluded: int = 0) -> None:
    """Keep exactly the target's samples, in sample order; mark the file complete."""
    extra = {}
    if target.samples:
        first = target.samples[0]
        extra["data_dir"] = str(Path(str(first.path)[: -len(first.name)]).resolve())  # for calibration, parity
        extra["excluded"] = excluded  # photos the caller left out (catdog inspect's suspects)
    _finalize(target.path, target.samples, target.keys, extra)


_RUNNERS: dict = {}


def _runner(name: str, weights, weights_key: str, size: int, engine: str):
    """The feature model as `engine` runs it, built once per process for each backbone, weights,
    size and engine: `catdog run` extracts several views with the same one (about 3 s a build)."""
    key = (name, weights_key, size, engine)
    if key not in _RUNNERS:
        _RUNNERS.clear()  # one at a time: a fused backbone's model holds ~100 MB
        _RUNNERS[key] = feature_runner(feature_model(name, build_backbone(name, weights, size)), name, weights_key, engine)
    return _RUNNERS[key]


def extract_features(
    samples: list[Sample],
    out_path: str | os.PathLike,
    backbone: str = "mobilenet_v2",
    weights: str | os.PathLike | None = "imagenet",
    batch_size: int = 32,
    max_pixels: int = MAX_PIXELS,
    progress: bool = True,
    excluded: int = 0,
    engine: str = "litert",
    image_size: int = IMAGE_SIZE,
    view: str = PLAIN,
    echo: bool = True,
) -> ExtractReport:
    """Compute (or resume) the features of `samples` into `out_path` and return what was done.

    Photos that fail to decode are returned as rejections (and are not written). The finished
    file holds one row per usable sample, in sample order. engine: "litert" (XNNPACK kernels,
    about 2.4x faster on CPU here) or "keras" (TensorFlow); see catdog.features.engine.
    view: store the features of each photo as seen by that view instead (see the module docstring).
    echo=False: a rejected photo is not printed (a view of photos whose rejections were).
    catdog.features.distributed runs the same stages on Ray.
    """
    target = open_cache(samples, out_path, backbone, weights, image_size, view)
    rejections: list[Rejection] = []
    computed = 0
    seconds = 0.0
    if target.todo:
        name, size = target.backbone, target.image_size
        model = _runner(name, weights, target.weights_key, size, engine)
        start = time.perf_counter()  # throughput: decode + network + writes, not model loading
        key_of = dict((s.name, k) for s, k in target.todo)
        desc = f"features {name}" + ("" if view == PLAIN else f" {view}")
        bar = tqdm(total=len(target.todo), unit="img", desc=desc, disable=not progress, dynamic_ncols=True)
        todo = [s for s, _ in target.todo]
        for batch in iter_batches(todo, batch_size=batch_size, size=size, max_pixels=max_pixels, view=view):
            for r in batch.rejections if echo else ():
                tqdm.write(r.line())
            rejections.extend(batch.rejections)
            if len(batch.samples):
                feats = model(np.ascontiguousarray(batch.images, np.float32))
                append_rows(target, feats, batch.samples, [key_of[s.name] for s in batch.samples])
                computed += len(batch.samples)
            bar.update(len(batch.samples) + len(batch.rejections))
        bar.close()
        seconds = time.perf_counter() - start
    close_cache(target, excluded)
    return ExtractReport(target.path, computed, target.cached, rejections, seconds)


def without(feature_set: FeatureSet, names: set[str]) -> tuple[FeatureSet, int]:
    """The feature set minus the photos named in `names` (relative names or file names)."""
    keep = np.array([not listed(n, names) for n in feature_set.names], bool)
    dropped = int((~keep).sum())
    attrs = {**feature_set.attrs, "excluded": int(feature_set.attrs.get("excluded", 0)) + dropped}
    return (
        FeatureSet(
            feature_set.features[keep],
            feature_set.labels[keep],
            [n for n, k in zip(feature_set.names, keep) if k],
            [i for i, k in zip(feature_set.ids, keep) if k],
            feature_set.backbone,
            feature_set.weights,
            attrs,
            [k for k, kept in zip(feature_set.keys, keep) if kept],
        ),
        dropped,
    )


def load_features(path: str | os.PathLike) -> FeatureSet:
    """Read a complete feature file written by `extract_features`."""
    path = Path(path)
    if path.is_dir() and (path / RunDir.FEATURES).is_file():  # a RUN_DIR: it said to extract the run's folder as photos
        raise CatdogError(f"{path}: a folder, not a feature file; give the feature file it holds, {path / RunDir.FEATURES}")
    if path.is_dir():  # a folder of photos where its features belong
        raise CatdogError(f"{path}: a folder, not a feature file; extract its features first (`catdog features {path} --out FILE.h5`) "
                          "and give FILE.h5")
    if not path.is_file():
        raise CatdogError(f"{path}: feature file not found; run `catdog features DATA --out {path}` first")
    try:
        with h5py.File(path, "r") as f:
            if "backbone" not in f.attrs or "features" not in f:  # another program's h5 file
                raise CatdogError(f"{path}: not a catdog feature file (no backbone attribute, no features); make one with `catdog features`")
            if not f.attrs.get("complete", False):
                raise CatdogError(f"{path}: feature extraction did not finish; run `catdog features` again to resume it")
            decode = lambda xs: [x.decode() if isinstance(x, bytes) else x for x in xs]  # noqa: E731
            return FeatureSet(
                features=f["features"][:],
                labels=f["labels"][:].astype(np.int64),
                names=decode(f["names"][:]),
                ids=decode(f["ids"][:]),
                backbone=str(f.attrs["backbone"]),
                weights=str(f.attrs["weights"]),
                attrs={k: (v.item() if hasattr(v, "item") else v) for k, v in f.attrs.items()},
                keys=decode(f["keys"][:]) if "keys" in f else [],
            )
    except (OSError, KeyError) as exc:
        raise CatdogError(f"{path}: not a catdog feature file ({exc}); make one with `catdog features`") from None
