"""Stage 5, export: one entry, `export(model, fmt, precision, ...)`, one module per format.

Every artefact holds the classifier and the CAM model in one graph, with one input (the raw
photo; preprocessing inside) and three outputs, `probabilities`, `cam` and `pet`. `export_run` writes
several artefacts plus ART_DIR/manifest.json (input contract, labels, sizes, sha256) and labels.txt.
"""

from __future__ import annotations

import hashlib
import json
import os
import secrets
import shutil
import time
from contextlib import nullcontext
from datetime import datetime, timezone
from pathlib import Path

import keras
import numpy as np
from tqdm import tqdm

from catdog.contract import MANIFEST_VERSION, PET_THRESHOLD, ArtDir, RunDir, load_manifest, parse_list, sha256_path
from catdog import __version__
from catdog.cam import cam_model, check_catdog_model
from catdog.data import LABELS, MAX_PIXELS, Sample, iter_batches, sha256_file
from catdog.atomic import replace_dir, write_text
from catdog.errors import CatdogError
from catdog.export.contract import CAM, INPUT_NAME, PROBABILITIES, raw_image_input, size_bytes, tensor_outputs
from catdog.features import input_size
from catdog.export.sensitivity import SENSITIVITY_PHOTOS, Unit, analyse, coreml_fp16_analysis, kept_units, missed_targets, plot, weighted_units
from catdog.training import calibrated_model

from catdog.export.formats import FORMATS, PRECISIONS, TABLE, ExportOptions  # noqa: E402  (the one format table)
CALIBRATION_PHOTOS = 100


def artefact_name(backbone: str, fmt: str, precision: str) -> str:
    return f"catdog_{backbone.replace(',', '+')}_{precision}{TABLE[fmt].suffix}"


def export(
    model: keras.Model,
    fmt: str,
    precision: str,
    out_dir: str | os.PathLike,
    backbone: str,
    calibration: np.ndarray | None = None,
    metadata: dict | None = None,
    keep: list[Unit] = (),
) -> dict:
    """Export a catdog full model to one format and precision; returns its manifest entry.

    model: the full Keras model of a RUN_DIR (raw photo -> probabilities).
    calibration: raw photos (N, S, S, 3) at the model's input size, float 0..255, for int8 (TFLite and ONNX).
    keep: units left in float32 in a reduced precision (mixed precision, `catdog.export.sensitivity`).
    """
    keep = [] if precision == "fp32" else list(keep)
    if fmt not in FORMATS:
        raise CatdogError(f"unknown format {fmt!r}; choose from {', '.join(FORMATS)}")
    if precision not in PRECISIONS:
        raise CatdogError(f"unknown precision {precision!r}; choose from {', '.join(PRECISIONS)}")
    check_catdog_model(model)
    if precision == "int8" and TABLE[fmt].int8_needs_photos and (calibration is None or len(calibration) == 0):
        raise CatdogError(f"{fmt} int8 needs calibration photos; pass --calibration DIR (a folder of real photos)")
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    path = out_dir / artefact_name(backbone, fmt, precision)
    start = time.perf_counter()
    options = ExportOptions(backbone, calibration, dict(metadata or {}), tuple(keep))
    info = TABLE[fmt].writer()(model, precision, path, options)
    return {
        "path": str(path),
        "file": path.name,
        "format": fmt,
        "precision": precision,
        "bytes": size_bytes(path),
        "sha256": sha256_path(path),
        "export_seconds": round(time.perf_counter() - start, 2),
        "kept_float32": [u.name for u in keep],
        **info,
    }


def draw_photos(samples: list[Sample], image_size: int, n: int, seed: int, said: set | None = None,
                max_pixels: int = MAX_PIXELS) -> tuple[np.ndarray, np.ndarray]:
    """Up to `n` photos drawn with a seed, decoded at `image_size`: images (N, S, S, 3) float32
    0..255 and their labels (-1 where unlabelled). Each unusable photo is printed once, and not at
    all where its path is in `said` (a set shared by one export's draws, which it adds to)."""
    rng = np.random.default_rng(seed)
    chosen = [samples[i] for i in sorted(rng.choice(len(samples), min(n, len(samples)), replace=False))]
    batches = list(iter_batches(chosen, batch_size=32, size=image_size, max_pixels=max_pixels))
    said = set() if said is None else said
    for r in (r for b in batches for r in b.rejections if r.path not in said):
        print(r.line())  # a photo the user chose (--calibration DIR) is not dropped unsaid
        said.add(r.path)
    if not sum(len(b.samples) for b in batches):
        raise CatdogError("no usable calibration photo; pass --calibration DIR with real photos")
    labels = [-1 if s.label is None else s.label for b in batches for s in b.samples]
    return np.concatenate([b.images for b in batches]).astype(np.float32), np.array(labels)


def load_calibration(samples: list[Sample], image_size: int, n: int = CALIBRATION_PHOTOS, seed: int = 0, said: set | None = None,
                     max_pixels: int = MAX_PIXELS) -> np.ndarray:
    """Up to `n` photos decoded at `image_size` (float32 0..255), drawn with a seed, for int8 calibration."""
    return draw_photos(samples, image_size, n, seed, said, max_pixels)[0]


def export_run(
    run,
    formats: list[str],
    precisions: list[str],
    out_dir: str | os.PathLike,
    calibration_samples: list[Sample] | None = None,
    progress: bool = True,
    calibrated: bool = False,
    mixed: bool = True,
    keep_float: list[str] | None = None,
    max_pixels: int = MAX_PIXELS,
) -> dict:
    """Export a loaded RUN_DIR (`catdog.training.Run`) to every format x precision; write the manifest.

    calibrated: fold the run's validation temperature into the exported models (a single scale
    of the Dense layer), so their probabilities are the calibrated ones.
    mixed: keep the layers the sensitivity analysis picks in float32 for fp16 and int8 (writes
    sensitivity.json / .png, and uniform fp16/int8 TFLite and ONNX under uniform/ to compare);
    mixed=False rounds every layer. keep_float: these Keras layer names instead of the analysis'.
    max_pixels: a calibration photo over this many pixels is named and left out.
    """
    if keep_float is not None and not mixed:  # said, not dropped: the two choose the float32 layers two ways
        raise CatdogError("--keep-float chooses the float32 layers by hand and --mixed off rounds every layer; give one of them")
    if keep_float is not None and not keep_float:
        raise CatdogError("--keep-float: no layer named; give LAYER,... (the names are in ART_DIR/sensitivity.json), or leave it out")
    if calibrated:
        from catdog.training.summary import check_calibrated

        check_calibrated(run.temperature)  # before any work: a bound temperature made every P 0 or 1
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    backbone = run.metrics["backbone"]
    model_sha = sha256_file(run.path / RunDir.MODEL)
    # int8 photos: for a format that quantises activations, and for the int8 sensitivity analysis,
    # whose choice every format's int8 keeps (it measures the TFLite full-integer model)
    said: set = set()  # unusable calibration photos already named (two draws from one folder)
    analysed_int8 = mixed and keep_float is None
    needs_calibration = "int8" in precisions and (analysed_int8 or any(TABLE[f].int8_needs_photos for f in formats))
    calibration = None
    if needs_calibration:
        if not calibration_samples:
            raise CatdogError("int8 export needs calibration photos; pass --calibration DIR (a folder of real photos)")
        calibration = load_calibration(calibration_samples, input_size(run.model), said=said, max_pixels=max_pixels)
        if len(calibration) < CALIBRATION_PHOTOS:  # one photo's ranges passed parity with a CAM 72 % off, without a word
            print(f"export: note: int8 calibrated on {len(calibration)} photo(s), fewer than the {CALIBRATION_PHOTOS} it draws where it can: "
                  f"its ranges may not cover other photos; give --calibration DIR with {CALIBRATION_PHOTOS} or more")
    temperature = run.temperature if calibrated else 1.0
    model = calibrated_model(run.model, temperature) if calibrated else run.model
    metadata = {"keras_model_sha256": model_sha, "backbone": backbone, "temperature": temperature}
    # Core ML's conversions and the fp32 ONNX export are single-threaded Python: on the second core
    # they run beside the TFLite analysis and exports (about 70 s of the fused model's export here)
    # (only where the analysis runs: for fp32 alone the second process's start-up, ~15 s, is not repaid)
    analysed = mixed and keep_float is None and bool({"fp16", "int8"} & set(precisions))
    beside = analysed and {"coreml", "onnx"} & set(formats) and (os.cpu_count() or 1) > 1
    with Staging(out_dir) as stage, (SideProcess(run.path, temperature, backbone, metadata) if beside else nullcontext()) as side:
        return _export_into(run, model, formats, precisions, out_dir, stage, side, calibration, calibration_samples, progress, mixed, keep_float,
                            analysed, metadata, said, max_pixels)


def _export_into(run, model, formats, precisions, out_dir: Path, stage: "Staging", side: "SideProcess | None", calibration, calibration_samples,
                 progress, mixed, keep_float, analysed, metadata, said, max_pixels) -> dict:
    """`export_run` once its photos are drawn: the analysis, then every artefact into `out_dir`.

    Nothing under `out_dir` that an earlier manifest lists is replaced before this export's manifest
    has dropped it: the analysis' Core ML fp32 package and everything the side process makes are
    written under `stage` and moved in as they are listed."""
    backbone, model_sha, temperature = metadata["backbone"], metadata["keras_model_sha256"], metadata["temperature"]
    exported: dict[str, dict] = {}  # artefacts made before the loop below (Core ML fp32, for the analysis), under `stage`
    coreml_analysed = analysed and "coreml" in formats and "fp16" in precisions
    fp32_job = side.coreml("fp32", stage.path, []) if side and "coreml" in formats and (coreml_analysed or "fp32" in precisions) else None
    if side and "onnx" in formats:
        from catdog.export import converted

        converted.promise("onnx_fp32", (converted.model_key(cam_model(model)),), side.onnx_fp32())

    def coreml_fp16(units, images, progress):
        """Core ML's own fp16 analysis, emulated from the fp32 .mlpackage (moved into ART_DIR later
        when it is to be exported anyway); a function returning its result."""
        package = stage.path / artefact_name(backbone, "coreml", "fp32")
        if side:
            return side.coreml_analysis(package, units, images).result  # queued behind the fp32 package
        exported_fp32 = export(model, "coreml", "fp32", stage.path, backbone, calibration, metadata)
        if "fp32" in precisions:
            exported[exported_fp32["file"]] = exported_fp32
        return lambda: coreml_fp16_analysis(package, units, images, progress)

    keep = mixed_precision_plan(
        model, model_sha, precisions, calibration=calibration, samples=calibration_samples, art_dir=out_dir,
        cache_dir=run.path / "cache", mixed=mixed, keep_float=keep_float, progress=progress,
        coreml_fp16=coreml_fp16 if coreml_analysed else None, temperature=temperature, said=said, max_pixels=max_pixels,
    )
    jobs = [(f, p, out_dir) for f in formats for p in precisions]
    # the measured choice is compared with rounding every layer; a hand-picked --keep-float is not
    jobs += [(f, p, out_dir / "uniform") for f in formats for p in precisions if TABLE[f].uniform_twins and keep.get(p) and keep_float is None]
    write_text(out_dir / ArtDir.LABELS, "\n".join(LABELS) + "\n")
    manifest = {
        "manifest_version": MANIFEST_VERSION,
        "catdog_version": __version__,
        "created": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "backbone": backbone,
        "labels": list(LABELS),
        "labels_file": ArtDir.LABELS,
        "input": raw_image_input(1, input_size(run.model)),
        "outputs": tensor_outputs(1, input_size(run.model)),
        # no machine path (the manifest ships inside the apps): the Keras model relative to ART_DIR
        "keras_model": {"path": os.path.relpath(run.path.resolve() / RunDir.MODEL, out_dir.resolve()), "sha256": model_sha},
        "temperature": temperature,
        # P(pet) under which the answer is "neither" (the `pet` output; catdog.contract.verdict)
        PET_THRESHOLD: run.pet_threshold,
        "calibration_photos": 0 if calibration is None else int(len(calibration)),
        # which photos, not only how many: a new --calibration makes the int8 artefacts again
        "calibration_sha256": None if calibration is None else hashlib.sha256(np.ascontiguousarray(calibration).tobytes()).hexdigest(),
        # units kept float32: TFLite and ONNX (and Core ML int8) by the TFLite analysis, Core ML fp16 by its own
        "mixed_precision": {
            **{p: [u.name for u in keep.get(p, [])] for p in precisions if p != "fp32"},
            "coreml": {p: [u.name for u in _kept(keep, "coreml", p)] for p in precisions if p != "fp32"},
        },
    }
    done = _complete_artefacts(out_dir, manifest)
    files = [("uniform/" if folder != out_dir else "") + artefact_name(backbone, fmt, precision) for fmt, precision, folder in jobs]
    pending = {}  # file -> Core ML job running beside this loop (under `stage`)
    if side:
        for (fmt, precision, folder), file in zip(jobs, files):
            if file in done:
                continue
            if fmt == "coreml" and precision == "fp32" and fp32_job and folder == out_dir:
                pending[file] = fp32_job  # written for the analysis: this entry, not an earlier run's
            elif fmt == "coreml":
                pending[file] = side.coreml(precision, stage.path / Path(file).parent, _kept(keep, fmt, precision))
    entries: dict[str, dict] = {f: done[f] for f in files if f in done}

    def write_manifest() -> None:
        # at any instant the manifest lists only complete artefacts (in the jobs' order)
        manifest["artefacts"] = [entries[f] for f in files if f in entries and not f.startswith("uniform/")]
        manifest["uniform_artefacts"] = [entries[f] for f in files if f in entries and f.startswith("uniform/")]
        write_text(out_dir / ArtDir.MANIFEST, json.dumps(manifest, indent=2))

    def finished(file: str, entry: dict, staged: bool = False) -> None:
        if staged:
            stage.move_in(file)
        entry["file"] = file
        entry.pop("path", None)
        entries[file] = entry
        write_manifest()

    write_manifest()  # before any file is replaced: an earlier export's entries for what is made again are gone
    for (fmt, precision, folder), file in tqdm(list(zip(jobs, files)), desc="export", unit="artefact", disable=not progress):
        uniform = folder != out_dir
        if file in pending or file in done:
            continue  # collected below, once this process's own work is done; or complete already
        if file in exported:
            finished(file, exported[file], staged=True)
            continue
        finished(file, export(model, fmt, precision, folder, backbone, calibration, metadata, [] if uniform else _kept(keep, fmt, precision)))
    for file, job in pending.items():
        finished(file, dict(job.result()), staged=True)
    reused = [f for f in files if f in done]
    if reused:  # the table shows their first export's time: say they were not made again
        print(f"export: kept {len(reused)} artefact(s) an earlier export made from this model with these settings, their sha256 "
              f"checked ({_few(reused)}); their 'export s' is that export's; delete them to export them again")
    # not deleted (the user's files, perhaps wanted), but not unsaid: the apps and runtime refuse them
    left = sorted(f for f in _artefact_files(out_dir) if f not in entries)
    if left:
        print(f"export: note: {out_dir} still holds {len(left)} artefact(s) of an earlier export that this manifest does not list "
              f"({_few(left)}); the runtime and apps refuse them; delete them, or export into an empty folder")
    return manifest


def _few(files: list[str], shown: int = 3) -> str:
    """The first `shown` names, and how many more."""
    return ", ".join(files[:shown]) + (f" and {len(files) - shown} more" if len(files) > shown else "")


_SUFFIXES = {TABLE[f].suffix for f in TABLE}  # an artefact file's, by the format table


def _artefact_files(out_dir: Path) -> list[str]:
    """The files in `out_dir` and its uniform/ folder named as an export names its artefacts
    (the format table's suffixes), relative to `out_dir`."""
    return [str(p.relative_to(out_dir)) for folder in (out_dir, out_dir / "uniform") if folder.is_dir()
            for p in folder.iterdir() if p.suffix in _SUFFIXES and not p.name.startswith(".")]  # .NAME.tmp-*: half-written


class Staging:
    """A hidden folder in ART_DIR (same file system: a rename moves a package in) for artefacts made
    before their manifest entry may be written; removed when the export ends, however it ends (and,
    where a kill -9 left one, by the next export into that ART_DIR: the name holds the export's pid).
    Entering also removes the half-written artefact files (`.NAME.tmp-*.tflite`, catdog.atomic's
    names) a kill -9 left in ART_DIR: only an export writes files of those suffixes there."""

    def __init__(self, out_dir: Path):
        self.out_dir = out_dir
        self.path = out_dir / f".staging-{os.getpid()}-{secrets.token_hex(4)}"

    def __enter__(self) -> "Staging":
        for left in self.out_dir.glob(".staging-*-*"):
            pid = left.name.split("-")[1]
            if pid.isdigit() and not _alive(int(pid)):
                shutil.rmtree(left, ignore_errors=True)
        for folder in (self.out_dir, self.out_dir / "uniform"):
            for left in folder.glob(".*.tmp-*") if folder.is_dir() else ():
                if left.suffix in _SUFFIXES:
                    shutil.rmtree(left, ignore_errors=True) if left.is_dir() else left.unlink(missing_ok=True)
        return self

    def __exit__(self, *exc) -> None:
        shutil.rmtree(self.path, ignore_errors=True)

    def move_in(self, file: str) -> None:
        """Put the staged `file` (relative to ART_DIR) in its place, replacing what is there."""
        (self.out_dir / file).parent.mkdir(parents=True, exist_ok=True)
        replace_dir(self.path / file, self.out_dir / file)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except OSError:
        return True  # someone else's process
    return True


class SideProcess:
    """Export work on one RUN_DIR's model in a second process (spawned: TensorFlow does not survive
    a fork), which loads the model itself; each call queues a job and returns its future. One
    worker: the jobs run in the order they are queued. Leaving its `with` block on an error or
    Ctrl-C stops the worker at once (its queued jobs are dropped, its running one killed)."""

    def __init__(self, run_path: Path, temperature: float, backbone: str, metadata: dict):
        import multiprocessing
        from concurrent.futures import ProcessPoolExecutor
        from multiprocessing import resource_tracker

        from catdog.console import child_process, unfiltered_fd2

        with unfiltered_fd2():  # the tracker outlives this command: it must not hold the stderr filter's pipe
            resource_tracker.ensure_running()

        # the initializer lives in a light module: it quietens the libraries before a job imports them
        self._pool = ProcessPoolExecutor(
            1, mp_context=multiprocessing.get_context("spawn"), initializer=child_process, initargs=(os.getpid(),)
        )
        self._model = (str(run_path), temperature)
        self._backbone, self._metadata = backbone, metadata

    def coreml(self, precision: str, folder: Path, keep: list[Unit]):
        """The Core ML artefact at `precision` (`export`'s manifest entry)."""
        return self._pool.submit(_side_coreml, self._model, self._backbone, self._metadata, precision, str(folder), list(keep))

    def coreml_analysis(self, package: Path, units: list[Unit], images: np.ndarray):
        """`coreml_fp16_analysis` of the fp32 package (queue it behind that package's job), on one
        thread: the other core runs this process's TFLite analysis."""
        return self._pool.submit(coreml_fp16_analysis, package, list(units), images, None, 1)

    def onnx_fp32(self):
        """The CAM model's fp32 ONNX bytes (`catdog.export.onnx.fp32_onnx`)."""
        return self._pool.submit(_side_onnx_fp32, self._model)

    def __enter__(self) -> "SideProcess":
        return self

    def __exit__(self, exc_type, *exc) -> None:
        if exc_type is None:
            self._pool.shutdown(wait=True, cancel_futures=True)
            return
        # an error or Ctrl-C here: the worker's running job (a Core ML conversion, the analysis) is
        # not waited for. ProcessPoolExecutor has no kill before Python 3.14 (kill_workers), hence _processes.
        for worker in list((getattr(self._pool, "_processes", None) or {}).values()):
            worker.kill()
            worker.join(10)
        self._pool.shutdown(wait=True, cancel_futures=True)  # at once now; its queues closed (no "leaked semaphore")


def _side_model(run_path: str, temperature: float):
    """The run's full model in the side process, loaded once."""
    global _SIDE_MODEL
    if _SIDE_MODEL is None:
        from catdog.training import load_run

        loaded = load_run(run_path).model
        _SIDE_MODEL = calibrated_model(loaded, temperature) if temperature != 1.0 else loaded
    return _SIDE_MODEL


def _side_coreml(model: tuple, backbone: str, metadata: dict, precision: str, folder: str, keep) -> dict:
    return export(_side_model(*model), "coreml", precision, folder, backbone, None, metadata, keep)


def _side_onnx_fp32(model: tuple) -> bytes:
    from catdog.export.onnx import fp32_onnx

    return fp32_onnx(cam_model(_side_model(*model)))


_SIDE_MODEL = None


def _complete_artefacts(out_dir: Path, header: dict) -> dict[str, dict]:
    """file -> manifest entry of the artefacts an earlier (perhaps killed) export left complete:
    same Keras model (by sha256: a copied or moved ART_DIR reaches it by another relative path),
    settings and kept layers, and a file whose sha256 still matches. A manifest.json this cannot
    read (hand-edited, not catdog's) keeps nothing: the export starts afresh (it was a traceback)."""
    path = out_dir / ArtDir.MANIFEST
    try:
        old = json.loads(path.read_text())
        same = ("temperature", "calibration_photos", "calibration_sha256", "backbone", "input")
        if old["keras_model"]["sha256"] != header["keras_model"]["sha256"] or any(old.get(k) != header[k] for k in same):
            return {}
        done = {}
        for entry in old.get("artefacts", []) + old.get("uniform_artefacts", []):
            plan = header["mixed_precision"].get("coreml", {}) if entry["format"] == "coreml" else header["mixed_precision"]
            planned = [] if entry["precision"] == "fp32" or entry["file"].startswith("uniform/") else plan.get(entry["precision"])
            artefact = out_dir / entry["file"]
            if entry.get("kept_float32", []) == planned and artefact.exists() and sha256_path(artefact) == entry["sha256"]:
                done[entry["file"]] = entry
        return done
    except (OSError, ValueError, KeyError, TypeError, AttributeError):  # ValueError: bad JSON or text
        return {}


def _kept(keep: dict[str, list[Unit]], fmt: str, precision: str) -> list[Unit]:
    """The units `fmt` keeps float32 at `precision` (Core ML fp16 has its own choice)."""
    if precision == "fp32":
        return []
    if fmt == "coreml" and precision == "fp16" and "coreml_fp16" in keep:
        return keep["coreml_fp16"]
    return keep.get(precision, [])


def mixed_precision_plan(
    model,
    model_sha: str,
    precisions: list[str],
    *,
    calibration: np.ndarray | None,
    samples: list[Sample] | None,
    art_dir: Path,
    cache_dir: Path,
    mixed: bool = True,
    keep_float: list[str] | None = None,
    progress: bool = True,
    coreml_fp16=None,
    temperature: float = 1.0,
    said: set | None = None,
    max_pixels: int = MAX_PIXELS,
) -> dict[str, list[Unit]]:
    """precision ("fp16", "int8", and "coreml_fp16" for Core ML's own) -> units kept float32. Runs
    (or reuses, cached in RUN_DIR/cache) the sensitivity analysis and writes ART_DIR/sensitivity.json
    and sensitivity.png. coreml_fp16: starts Core ML's own fp16 analysis (`analyse`'s hook)."""
    reduced = [p for p in precisions if p != "fp32"]
    if not reduced or not mixed:
        return {}
    net = cam_model(model)
    units = {u.name: u for u in weighted_units(net)}
    if keep_float is not None:
        unknown = [n for n in keep_float if n not in units]
        if unknown:
            raise CatdogError(
                f"--keep-float: no weighted layer named {', '.join(unknown)}; the names are in ART_DIR/sensitivity.json "
                f"(e.g. {', '.join(list(units)[:3])})"
            )
        return {p: [units[n] for n in keep_float] for p in reduced}
    if not samples:
        raise CatdogError("mixed precision needs training photos to measure layer sensitivity; pass --calibration DIR or --mixed off")
    labelled = [s for s in samples if s.label is not None] or samples
    images, labels = draw_photos(labelled, input_size(model), SENSITIVITY_PHOTOS, seed=1, said=said, max_pixels=max_pixels)
    analysis = analyse(net, model_sha, images, labels, reduced, calibration, cache_dir=cache_dir, progress=progress, coreml_fp16=coreml_fp16,
                       temperature=temperature)
    write_text(art_dir / ArtDir.SENSITIVITY, json.dumps(analysis, indent=1))
    plot(analysis, art_dir / ArtDir.SENSITIVITY_PNG)
    for line in missed_targets(analysis):
        tqdm.write(line)
    plan = {p: kept_units(analysis, p) for p in reduced}
    if "coreml_fp16" in analysis["precisions"]:
        plan["coreml_fp16"] = kept_units(analysis, "fp16", "coreml")
    return plan


from catdog.export.coreml import image_preprocessing  # noqa: E402  (parity checks Core ML's ImageType against it)
from catdog.export.sensitivity import matches  # noqa: E402

__all__ = [
    "ExportOptions",
    "Unit",
    "image_preprocessing",
    "matches",
    "weighted_units",
    "CAM",
    "FORMATS",
    "INPUT_NAME",
    "PRECISIONS",
    "PROBABILITIES",
    "artefact_name",
    "export",
    "export_run",
    "load_calibration",
    "load_manifest",
    "parse_list",
]
