"""Scale-out on Ray Data: `catdog features --ray` and `catdog predict --ray`.

The single-process stages (validate and decode, backbone, GAP) as one streaming Ray Data pipeline:

    driver (the catdog process)              cluster
    scan DATA -> samples (names only)        [map_batches(key_rows)             tasks: a stat per photo, where
                                                                                the driver's stats are slow]
    open the h5 cache (resume, refuse)       from_arrow(index, path)            blocks of paths
                                             map_batches(decode_rows)           tasks: validate, decode, squash
    model -> object store, once              map_batches(FeatureActor | KerasActor,
                                                 ActorPoolStrategy(workers))    the model held once per actor
    write h5 rows / collect predictions  <-  iter_batches                       (N, C) features or (N, 3) P(cat, dog, pet)

The driver writes the file itself with catdog.features.cache (same keys, resumable, same refusal of
another backbone), so `catdog train` reads it unchanged, and names rejected files as
catdog.data does. Photos travel as paths: a decode task reads its files where every node sees them
(a shared mount at the same path); decoded S x S x 3 uint8 photos go to the actors, C float32
features (or P(cat), P(dog) and P(pet)) per photo come back.

Resources: an actor holds one CPU (its LiteRT interpreter runs one thread); decode tasks ask for
none, and at most `workers` run at once, so they share the actors' cores the way the single-process
path's decode threads share the cores with its network. Ray is imported only here, inside
functions: it is an optional extra (`pip install -e .[ray]`).
"""

from __future__ import annotations

import logging
import math
import os
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from pathlib import Path

import numpy as np

from catdog.contract import PET, PROBABILITIES, RunDir
from catdog.data import IMAGE_SIZE, MAX_PIXELS, ImageError, Rejection, Sample, decode
from catdog.console import libraries_quiet, terminate_as_interrupt
from catdog.errors import CatdogError

RAY_EXTRA = "pip install -e '.[ray]' (from the catdog checkout; it pins ray[data])"
MAX_INPUT_BLOCKS = 4096  # blocks of paths the driver puts in the object store, at most
# The photos' cache keys (a stat each): the driver times the first KEYS_PROBE; where the rest would
# take it longer than KEYS_ON_RAY_AFTER_S (a network mount: ~0.1-1 ms a stat), Ray tasks take them.
# On a local disk (~3 us a stat) the driver is faster than any pass of tasks (bench ray: 11x).
KEYS_PROBE = 256
KEYS_ON_RAY_AFTER_S = 10.0
KEY_BATCH = 1024  # photos per key task


# ------------------------------------------------------------------ runs on the cluster
def decode_rows(batch: dict, size: int, max_pixels: int) -> dict:
    """Ray task: {"index", "path"} -> {"index", "image" (N, size, size, 3) uint8, "error"}.

    error is the one-line reason catdog.data.decode gives for an unusable file ("" when it
    decoded); such a row keeps a black image so the batch stays one table.
    """
    paths = batch["path"]
    images = np.zeros((len(paths), size, size, 3), np.uint8)
    errors = []
    for i, path in enumerate(paths):
        try:
            images[i] = decode(str(path), size, max_pixels)
            errors.append("")
        except ImageError as exc:
            errors.append(str(exc))
    return {"index": batch["index"], "image": images, "error": np.array(errors, dtype=object)}


def key_rows(batch: dict) -> dict:
    """Ray task: {"index", "path", "name"} -> {"index", "key"}: each file's feature-cache key (name,
    size, mtime, as `Sample.cache_key`), "" for a file gone since the listing (its decode names why)."""
    keys = []
    for path, name in zip(batch["path"], batch["name"]):
        try:
            keys.append(Sample(Path(str(path)), str(name), "", None).cache_key)
        except OSError:
            keys.append("")
    return {"index": batch["index"], "key": np.array(keys, dtype=object)}


class _ModelActor:
    """Ray actor: one model, loaded once; decoded rows -> {"index", "error", "output" (N, width)}.

    Rows with an error get zeros and are not run through the model.
    """

    width: int

    def run(self, images: np.ndarray) -> np.ndarray:  # (n, S, S, 3) uint8 -> (n, width)
        raise NotImplementedError

    def __call__(self, batch: dict) -> dict:
        ok = np.array([not e for e in batch["error"]], bool)
        output = np.zeros((len(ok), self.width), np.float32)
        if ok.any():
            output[ok] = self.run(batch["image"][ok])
        return {"index": batch["index"], "error": batch["error"], "output": output}


def _fetch(model) -> bytes:
    """The model's bytes from their ObjectRef: the driver put them in the object store once."""
    import ray

    return ray.get(model)


class FeatureActor(_ModelActor):
    """The feature model as a LiteRT flatbuffer (what catdog.features.engine runs), one thread."""

    def __init__(self, model, width: int, threads: int = 1):
        from ai_edge_litert.interpreter import Interpreter

        interpreter = Interpreter(model_content=_fetch(model), num_threads=threads)
        self._runner = interpreter.get_signature_runner("serving_default")
        self.width = width

    def run(self, images: np.ndarray) -> np.ndarray:
        return next(iter(self._runner(image=np.ascontiguousarray(images, np.float32)).values()))


class KerasActor(_ModelActor):
    """A Keras model from its .keras bytes: the feature model (engine keras: its one output) or a
    RUN_DIR's full model for predictions (`outputs`: the names of its outputs whose columns make
    each row, e.g. probabilities (2) then pet (1); tta: each the mean with the photo's mirror
    image's, as `catdog.training.predict_images` computes them)."""

    def __init__(self, model, width: int, tta: bool = False, outputs: tuple[str, ...] = ()):
        import keras

        from catdog.training import predict_outputs  # also registers catdog's layers for loading

        with tempfile.TemporaryDirectory() as tmp:
            path = Path(tmp) / RunDir.MODEL
            path.write_bytes(_fetch(model))
            self._model = keras.models.load_model(path)
        self._predict = predict_outputs
        self._tta, self._outputs, self.width = tta, tuple(outputs), width

    def run(self, images: np.ndarray) -> np.ndarray:
        x = images.astype(np.float32)
        if not self._outputs:
            return np.asarray(self._model.predict_on_batch(x))
        out = self._predict(self._model, x, self._tta)
        return np.hstack([out[k].reshape(len(x), -1) for k in self._outputs])


# ------------------------------------------------------------------ the driver
def _import_ray():
    try:
        import ray
        import ray.data  # noqa: F401
    except ImportError:
        raise CatdogError(f"--ray needs Ray Data, an optional extra: {RAY_EXTRA}") from None
    return ray


def _check_reachable(address: str | None, timeout: float = 5.0) -> None:
    """A head's HOST:PORT must answer a TCP connection: with nothing listening there, ray.init
    retries for minutes and prints its C++ client's warnings. "auto", "local", None and ray://
    addresses are Ray's own to resolve."""
    import socket

    if not address or address in ("auto", "local") or "://" in address or ":" not in address:
        return
    host, _, port = address.rpartition(":")
    host = host.strip("[]")  # [::1]:6379
    try:
        socket.create_connection((host, int(port)), timeout=timeout).close()
    except (OSError, ValueError) as exc:
        reason = exc.strerror if isinstance(exc, OSError) and exc.strerror else str(exc) or type(exc).__name__
        raise CatdogError(
            f"--ray {address}: nothing answers there ({reason}); start the cluster's head (ray start --head) "
            "and give its HOST:PORT, or no ADDRESS for a local instance"
        ) from None


@contextmanager
def ray_session(address: str | None = None):
    """Ray, connected: the instance already started in this process if any; else a new local
    one (address None or "local"); else the cluster at `address` ("auto", or the head's
    HOST:PORT). Shut down afterwards only if started here."""
    ray = _import_ray()
    _check_reachable(address)
    # Workers unpickle this module's functions by value, so they do not import catdog.features
    # (whose package pulls in Keras and TensorFlow: 8 s and 0.7 GB per worker here).
    ray.cloudpickle.register_pickle_by_value(sys.modules[__name__])
    if ray.is_initialized():
        yield ray
        return
    try:
        # Quiet (no --verbose): Ray's own notices off and the workers' output (LiteRT's start-up
        # lines) not forwarded; a worker's error still reaches the driver as its exception.
        quiet = libraries_quiet()
        ray.init(
            address=address or "local", include_dashboard=False, log_to_driver=not quiet,
            logging_level=logging.ERROR if quiet else logging.WARNING,
        )
    except (ConnectionError, RuntimeError, ValueError) as exc:
        raise CatdogError(
            f"--ray {address}: cannot start or join Ray ({str(exc).splitlines()[0][:200]}); give the head node's HOST:PORT "
            "or auto (where the cluster uses token authentication, with RAY_AUTH_MODE=token and its RAY_AUTH_TOKEN set), or no ADDRESS for a local instance"
        ) from None
    terminate_as_interrupt()  # ray.init's own SIGTERM handler aborts the driver with a crash dump
    try:
        yield ray
    finally:
        ray.shutdown()


def pool_size(ray, workers: int | None) -> int:
    """Actors in the pool: `workers`, default every CPU of the cluster; at most that many."""
    cpus = int(ray.cluster_resources().get("CPU", 0))
    if workers is None:
        return max(1, cpus)
    if not 1 <= workers <= max(1, cpus):
        raise CatdogError(f"--workers {workers}: the Ray cluster has {cpus} CPU(s); give 1 to {max(1, cpus)}")
    return workers


def _quiet_data(ray) -> None:
    """Ray Data without its own progress bars (the caller's bar counts photos) and INFO lines."""
    from ray.util.debug import log_once

    ray.data.DataContext.get_current().enable_progress_bars = False
    log_once("ray_data_progress_manager_disabled")  # its notice that the bars are off is not needed either
    logging.getLogger("ray.data").setLevel(logging.ERROR if libraries_quiet() else logging.WARNING)


def _path_blocks(samples: list[Sample], rows: int, names: bool = False) -> list:
    """The photos as Arrow tables {"index", "path"[, "name"]} (about 60 bytes a photo), in at most
    MAX_INPUT_BLOCKS blocks of at least `rows` rows: what the driver puts in the object store."""
    import pyarrow as pa  # Ray Data's own dependency

    columns = {"index": np.arange(len(samples), dtype=np.int64), "path": [str(s.path) for s in samples]}
    if names:
        columns["name"] = [s.name for s in samples]
    table = pa.table(columns)
    rows = max(rows, math.ceil(len(samples) / MAX_INPUT_BLOCKS))
    return [table.slice(i, rows) for i in range(0, len(samples), rows)]


def cache_keys(ray, samples: list[Sample], workers: int) -> list[str]:
    """Every photo's `Sample.cache_key` (one `stat` each), computed by up to `workers` Ray tasks
    where the photos are mounted, in sample order: the listing's per-file share, done in parallel."""
    _quiet_data(ray)
    rows = max(1, min(KEY_BATCH, math.ceil(len(samples) / workers)))  # every task busy on a small list too
    dataset = ray.data.from_arrow(_path_blocks(samples, rows, names=True)).map_batches(
        key_rows, batch_size=rows, batch_format="numpy", num_cpus=0, compute=ray.data.TaskPoolStrategy(size=workers),
    )
    keys = [""] * len(samples)
    for block in dataset.iter_batches(batch_size=None, batch_format="numpy"):
        for i, key in zip(block["index"], block["key"]):
            keys[int(i)] = str(key)
    return keys


def listing_keys(samples: list[Sample], start_ray, workers: int | None) -> list[str]:
    """The samples' cache keys, stat'ed by the driver or, where that would take longer than
    KEYS_ON_RAY_AFTER_S (measured on the first KEYS_PROBE), by Ray tasks; start_ray() gives Ray."""
    start = time.perf_counter()
    head = [s.cache_key for s in samples[:KEYS_PROBE]]
    per_file = (time.perf_counter() - start) / max(1, len(head))
    rest = samples[len(head):]
    if per_file * len(rest) <= KEYS_ON_RAY_AFTER_S:
        return head + [s.cache_key for s in rest]
    ray = start_ray()
    return head + cache_keys(ray, rest, pool_size(ray, workers))


def stream(
    ray,
    samples: list[Sample],
    actor: type,
    actor_kwargs: dict,
    workers: int,
    batch_size: int = 32,
    size: int = IMAGE_SIZE,
    max_pixels: int = MAX_PIXELS,
) -> Iterator[dict]:
    """Run `samples` through decode tasks and an actor pool of `workers` `actor`s; yield result
    blocks {"index" (into samples), "error", "output"} as they finish, in no particular order."""
    _quiet_data(ray)
    data = ray.data
    dataset = data.from_arrow(_path_blocks(samples, batch_size))
    dataset = dataset.map_batches(
        decode_rows, batch_size=batch_size, batch_format="numpy", fn_kwargs={"size": size, "max_pixels": max_pixels},
        num_cpus=0, compute=data.TaskPoolStrategy(size=workers),
    )
    dataset = dataset.map_batches(
        actor, batch_size=batch_size, batch_format="numpy", fn_constructor_kwargs=actor_kwargs,
        compute=data.ActorPoolStrategy(size=workers), num_cpus=1,
    )
    yield from dataset.iter_batches(batch_size=None, batch_format="numpy")


def _collect(blocks: Iterator[dict], samples: list[Sample], bar) -> Iterator[tuple[list[int], np.ndarray, list[Rejection]]]:
    """Per result block: the indices of the photos that decoded, their outputs, and the rejections
    (each printed as it is found, as the single-process path does)."""
    from tqdm import tqdm

    for block in blocks:
        index = [int(i) for i in block["index"]]
        ok = [j for j, e in enumerate(block["error"]) if not e]
        rejections = [Rejection(samples[index[j]].path, str(e)) for j, e in enumerate(block["error"]) if e]
        for r in rejections:
            tqdm.write(r.line())
        bar.update(len(index))
        yield [index[j] for j in ok], np.asarray(block["output"])[ok], rejections


def _in_sample_order(rejections: list[Rejection], samples: list[Sample]) -> list[Rejection]:
    position = {s.path: i for i, s in enumerate(samples)}
    return sorted(rejections, key=lambda r: position[r.path])


def _keras_bytes(model) -> bytes:
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / RunDir.MODEL
        model.save(path)
        return path.read_bytes()


def extract_features_ray(
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
    address: str | None = None,
    workers: int | None = None,
):
    """`catdog.features.extract_features` on Ray: the same file and the same report.

    address: None or "local" starts a local Ray instance, else the cluster to join (a Ray
    already initialised in this process is used as it is). workers: actors holding the model,
    default every CPU of the cluster. seconds in the report run from the pipeline's start
    (actors' start-up included) to the last row written, not connecting nor building the model.
    """
    from tqdm import tqdm

    from catdog.features.backbones import build_backbone, feature_model
    from catdog.features.cache import ExtractReport, append_rows, close_cache, open_cache
    from catdog.features.engine import ENGINES, LiteRTFeatures

    _import_ray()  # before anything is written: without the extra, one line saying how to install it
    if engine not in ENGINES:
        raise CatdogError(f"unknown engine {engine!r}; choose one of {', '.join(ENGINES)}")
    rejections: list[Rejection] = []
    computed, seconds = 0, 0.0
    with ExitStack() as session:
        ray = None

        def start_ray():
            nonlocal ray
            ray = ray or session.enter_context(ray_session(address))
            return ray

        keys = listing_keys(samples, start_ray, workers)
        target = open_cache(samples, out_path, backbone, weights, image_size, keys=keys)
        if target.todo:  # a finished file starts no Ray at all
            todo = [s for s, _ in target.todo]
            todo_keys = [k for _, k in target.todo]
            model = feature_model(target.backbone, build_backbone(target.backbone, weights, target.image_size))
            width = int(model.output.shape[-1])
            if engine == "litert":  # the flatbuffer catdog.features.engine converts once and caches on disk
                actor, content = FeatureActor, LiteRTFeatures(model, target.backbone, target.weights_key, threads=1).path.read_bytes()
            else:
                actor, content = KerasActor, _keras_bytes(model)
            size = pool_size(start_ray(), workers)
            start = time.perf_counter()
            kwargs = {"model": ray.put(content), "width": width}
            bar = tqdm(total=len(todo), unit="img", desc=f"features {target.backbone} on Ray ({size} workers)",
                       disable=not progress, dynamic_ncols=True)
            blocks = stream(ray, todo, actor, kwargs, size, batch_size, target.image_size, max_pixels)
            for index, features, rejected in _collect(blocks, todo, bar):
                rejections.extend(rejected)
                if index:
                    append_rows(target, features, [todo[i] for i in index], [todo_keys[i] for i in index])
                    computed += len(index)
            bar.close()
            seconds = time.perf_counter() - start
    close_cache(target, excluded)
    return ExtractReport(target.path, computed, target.cached, _in_sample_order(rejections, samples), seconds)


def predict_images_ray(
    model,
    samples: list[Sample],
    batch_size: int = 32,
    max_pixels: int = MAX_PIXELS,
    progress: bool = True,
    tta: bool = False,
    address: str | None = None,
    workers: int | None = None,
):
    """`catdog.training.predict_images` on Ray: the full Keras model goes to each actor through
    the object store (as .keras bytes); predictions in input order, as there."""
    from tqdm import tqdm

    from catdog.features.backbones import input_size
    from catdog.training import Predictions

    _import_ray()
    content = _keras_bytes(model)
    outputs = np.zeros((len(samples), 3), np.float32)  # P(cat), P(dog), P(pet)
    decoded = np.zeros(len(samples), bool)
    rejections: list[Rejection] = []
    with ray_session(address) as ray:
        size = pool_size(ray, workers)
        kwargs = {"model": ray.put(content), "width": 3, "tta": tta, "outputs": (PROBABILITIES, PET)}
        bar = tqdm(total=len(samples), unit="img", desc=f"predict on Ray ({size} workers)", disable=not progress,
                   dynamic_ncols=True)
        blocks = stream(ray, samples, KerasActor, kwargs, size, batch_size, input_size(model), max_pixels)
        for index, output, rejected in _collect(blocks, samples, bar):
            rejections.extend(rejected)
            outputs[index] = output
            decoded[index] = True
        bar.close()
    kept = [s for s, ok in zip(samples, decoded) if ok]
    return Predictions(kept, outputs[decoded, :2], _in_sample_order(rejections, samples), outputs[decoded, 2])
