"""catdog benchmarks, run on demand (not in CI).

    python -m bench all      [--run RUN_DIR] [--art ART_DIR]
    python -m bench roofline | features | head | export | latency | interpreter | accuracy | phone
    python -m bench unsure [--art ART_DIR] [--compare ART_DIR ...]   (fp16 on photos the model is unsure of; bench/unsure.py; not part of `all`)
    python -m bench.choices  (which settings help: nested CV of each variant; not part of `all`)
    python -m bench fuzz [--examples N] [--seed S] | soak [--requests N --concurrency C]   (bench/faults.py; not part of `all`)
    python -m bench ray [--images 1000]   (Ray Data against the single-process path; bench/ray.py; not part of `all`)

Each part prints a table and writes bench/results/<part>.json. RUN_DIR defaults to
runs/mobilenet+mobilenet_v2_288 (from `make run`), ART_DIR to RUN_DIR/artefacts. Timings in one part are
taken side by side in one process, so their ratios are comparable; absolute numbers are this
machine's.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import tempfile
import time
from pathlib import Path

from catdog.atomic import write_text
from catdog.cli import _whole as whole  # the CLI's own check: a count under 1 is refused as it is read

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
REPO = Path(__file__).resolve().parents[1]
RESULTS = REPO / "bench" / "results"
SHARED = Path(os.environ.get("CATDOG_SHARED", REPO.parent / "shared"))


def run_main(main, *args) -> int:
    """`main(*args)`'s exit status; a CatdogError (no run yet, a folder missing) is one line, as in
    catdog's CLI, not a traceback."""
    from catdog.errors import CatdogError

    try:
        return main(*args) or 0
    except CatdogError as exc:
        print(f"bench: error: {exc}", file=sys.stderr)
        return 2


def timing_photo(size: int):
    """The photo every latency row times (../shared's reference 720p cat), decoded at `size`."""
    from catdog.data import decode
    from catdog.errors import CatdogError

    path = SHARED / "data" / "reference" / "coral_cat_720p.jpg"
    if not path.is_file():
        raise CatdogError(f"{path}: not found; put ../shared beside the repository or set CATDOG_SHARED to its folder")
    return decode(path, size)


def save(name: str, rows, extra: dict | None = None) -> None:
    import tensorflow as tf

    RESULTS.mkdir(parents=True, exist_ok=True)
    doc = {
        "machine": {"cpus": os.cpu_count(), "platform": platform.platform(), "tensorflow": tf.__version__},
        **(extra or {}),
        "rows": rows,
    }
    write_text(RESULTS / f"{name}.json", json.dumps(doc, indent=2))
    print(f"written {RESULTS / (name + '.json')}\n")


def table(rows: list[dict], columns: list[tuple[str, str, str]]) -> None:
    """columns: (key, header, format). Each column is as wide as its widest cell (a runtime's or a
    file's name ran past a fixed 10 and pushed the rest of its row out of line); text is
    left-aligned, numbers right-aligned; a missing value is "-"."""
    cells = [[format(r[key], fmt) if r.get(key) is not None else "-" for key, _, fmt in columns] for r in rows]
    left = [all(isinstance(r.get(key), str) or r.get(key) is None for r in rows) for key, _, _ in columns]
    widths = [max([len(header)] + [len(row[i]) for row in cells]) for i, (_, header, _) in enumerate(columns)]

    def line(values: list[str]) -> str:
        return "  ".join(f"{v:{'<' if l else '>'}{w}}" for v, l, w in zip(values, left, widths)).rstrip()

    print(line([header for _, header, _ in columns]))
    for row in cells:
        print(line(row))


# ---------------------------------------------------------------- roofline
def model_flops(model) -> float:
    """Multiply-adds x 2 per image of the conv, depthwise and dense layers (the bulk of the work)."""
    import keras

    flops = 0
    for layer in _walk(model):
        if isinstance(layer, keras.layers.DepthwiseConv2D):
            _, h, w, c = layer.output.shape
            k = layer.kernel_size[0] * layer.kernel_size[1]
            flops += 2 * h * w * c * k
        elif isinstance(layer, keras.layers.Conv2D):
            _, h, w, cout = layer.output.shape
            cin = layer.input.shape[-1]
            flops += 2 * h * w * cout * cin * layer.kernel_size[0] * layer.kernel_size[1]
        elif isinstance(layer, keras.layers.Dense):
            flops += 2 * layer.input.shape[-1] * layer.units
    return float(flops)


def _walk(model):
    for layer in model.layers:
        if hasattr(layer, "layers"):
            yield from _walk(layer)
        else:
            yield layer


def matmul_peak(n: int = 2048, repeats: int = 10) -> dict:
    """This CPU's float32 matrix-multiply rate (GFLOP/s) through TF and numpy, best of `repeats`."""
    import numpy as np
    import tensorflow as tf

    a = np.random.default_rng(0).standard_normal((n, n), dtype=np.float32)
    out = {}
    for name, fn in (("tensorflow", lambda x: tf.linalg.matmul(x, x).numpy()), ("numpy", lambda x: x @ x)):
        x = tf.constant(a) if name == "tensorflow" else a
        fn(x)
        best = min(_timed(fn, x) for _ in range(repeats))
        out[name] = 2 * n**3 / best / 1e9
    return out


def _timed(fn, *args) -> float:
    t = time.perf_counter()
    fn(*args)
    return time.perf_counter() - t


def cmd_roofline(args) -> dict:
    from catdog.features import build_backbone, feature_model

    peak = matmul_peak()
    rows = []
    for name in ("mobilenet_v2", "mobilenet", "mobilenet,mobilenet_v2", "resnet50"):
        model = feature_model(name, build_backbone(name, None))
        rows.append({"backbone": name, "gflops_per_image": model_flops(model) / 1e9})
    print(f"matmul peak: TF {peak['tensorflow']:.1f} GFLOP/s, numpy {peak['numpy']:.1f} GFLOP/s")
    table(rows, [("backbone", "backbone", ""), ("gflops_per_image", "GFLOP/image", ".3f")])
    save("roofline", rows, {"matmul_gflops": peak})
    return {"peak": peak, "flops": {r["backbone"]: r["gflops_per_image"] * 1e9 for r in rows}}


# ---------------------------------------------------------------- features
def cmd_features(args, roof: dict | None = None) -> None:
    import numpy as np

    from catdog.data import iter_batches, scan
    from catdog.features import build_backbone, extract_features, feature_model

    roof = roof or cmd_roofline(args)
    peak = max(roof["peak"].values())
    samples, _ = scan(args.data)
    samples = samples[:: max(1, len(samples) // args.images)][: args.images]
    from catdog.features.engine import feature_runner
    from catdog.features.cache import weights_id

    rows = []
    for name in ("mobilenet_v2", "mobilenet", "resnet50"):
        weights = None if name == "resnet50" else "imagenet"
        model = feature_model(name, build_backbone(name, weights))
        for engine in ("keras", "litert"):
            run = feature_runner(model, name, weights_id(weights), engine)
            for bs in (1, 16, 64):
                t = time.perf_counter()
                images = np.concatenate([b.images for b in iter_batches(samples, batch_size=bs)]).astype(np.float32)
                decode_s = time.perf_counter() - t
                run(images[:bs])
                t = time.perf_counter()
                for i in range(0, len(images), bs):
                    run(images[i : i + bs])
                network = len(images) / (time.perf_counter() - t)
                total = None
                if weights:
                    with tempfile.TemporaryDirectory() as tmp:
                        report = extract_features(samples, Path(tmp) / "f.h5", name, weights, batch_size=bs, progress=False, engine=engine)
                        total = report.images_per_s
                gflops = network * roof["flops"][name] / 1e9
                rows.append({
                    "backbone": name, "engine": engine, "batch": bs, "decode_img_s": len(samples) / decode_s,
                    "network_img_s": network, "total_img_s": total, "network_gflop_s": gflops, "roofline_fraction": gflops / peak,
                })
    table(rows, [("backbone", "backbone", ""), ("engine", "engine", ""), ("batch", "batch", "d"), ("decode_img_s", "decode img/s", ".1f"),
                 ("network_img_s", "network img/s", ".1f"), ("total_img_s", "total img/s", ".1f"),
                 ("network_gflop_s", "GFLOP/s", ".1f"), ("roofline_fraction", "of peak", ".1%")])
    save("features", rows, {"matmul_peak_gflops": peak, "images": len(samples)})


# ---------------------------------------------------------------- head
def cmd_head(args) -> None:
    """Time of the head's stages on the run's cached features: one fit, the selection, the nested CV."""
    from catdog.features import load_features
    from catdog.training import HeadConfig, nested_estimate, train_head
    from catdog.training.cv import fit_logistic

    fs = load_features(Path(args.run) / "features.h5")
    config = HeadConfig()
    rows = []
    t = time.perf_counter()
    fit_logistic(fs.features, fs.labels, 3e-3)
    rows.append({"stage": "one fit (L-BFGS, every photo)", "fits": 1, "seconds": time.perf_counter() - t})
    t = time.perf_counter()
    train_head(fs, config, progress=False)
    rows.append({"stage": f"select l2 ({config.folds}-fold CV) + refit", "fits": config.folds * len(config.l2_grid) + 1,
                 "seconds": time.perf_counter() - t})
    t = time.perf_counter()
    nested_estimate(fs, config, progress=False)
    rows.append({"stage": "nested CV estimate", "fits": config.folds * (config.folds * len(config.l2_grid) + 1),
                 "seconds": time.perf_counter() - t})
    for r in rows:
        r["ms_per_fit"] = 1000 * r["seconds"] / r["fits"]
    table(rows, [("stage", "stage", "<34"), ("fits", "fits", "d"), ("seconds", "seconds", ".2f"), ("ms_per_fit", "ms/fit", ".0f")])
    save("head", rows, {"photos": len(fs.names), "feature_dim": int(fs.features.shape[1]), "backbone": fs.backbone})


# ---------------------------------------------------------------- export
def cmd_export(args) -> None:
    from catdog.data import scan
    from catdog.export import FORMATS, PRECISIONS, export, load_calibration
    from catdog.training import load_run

    run = load_run(args.run)
    from catdog.features import input_size

    calibration = load_calibration(scan(args.data)[0], input_size(run.model))
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for fmt in FORMATS:
            for precision in PRECISIONS:
                a = export(run.model, fmt, precision, tmp, run.metrics["backbone"], calibration)
                rows.append({"format": fmt, "precision": precision, "seconds": a["export_seconds"], "mb": a["bytes"] / 1e6})
    table(rows, [("format", "format", ""), ("precision", "precision", ""), ("seconds", "export s", ".1f"), ("mb", "MB", ".2f")])
    save("export", rows)


# ---------------------------------------------------------------- latency
def _latency(fn, x, runs: int, warmup: int = 10) -> dict:
    import numpy as np

    for _ in range(warmup):
        fn(x)
    times = [_timed(fn, x) * 1000 for _ in range(runs)]
    return {"median_ms": float(np.median(times)), "p95_ms": float(np.percentile(times, 95))}


def _with_uniform(manifest: dict) -> list[dict]:
    """The artefacts, and the same ones with every layer reduced (ART_DIR/uniform/, mixed off)."""
    return manifest["artefacts"] + manifest.get("uniform_artefacts", [])


def _mixed(a: dict) -> str:
    if a["precision"] == "fp32":
        return ""
    if a["file"].startswith("uniform/"):
        return "uniform"
    kept = len(a.get("kept_float32", []))  # 0: the analysis found no layer worth keeping float32
    return f"mixed ({kept} layer{'s' if kept != 1 else ''} fp32)" if kept else "mixed (none fp32)"


def cmd_latency(args) -> None:
    import numpy as np
    import tensorflow as tf

    from catdog.cam import cam_model
    from catdog.contract import load_manifest
    from catdog.features import input_size
    from catdog.runtime import open_model
    from catdog.training import load_run

    art = Path(args.art)
    manifest = load_manifest(art)
    model = cam_model(load_run(args.run).model)
    x = timing_photo(input_size(model))[None].astype(np.float32)
    compiled = tf.function(lambda t: model(t, training=False), jit_compile=False)
    rows = [
        {"runtime": "keras predict_on_batch", "precision": "fp32", **_latency(model.predict_on_batch, x, args.runs)},
        {"runtime": "keras tf.function", "precision": "fp32", **_latency(lambda t: compiled(t), x, args.runs)},
    ]
    for a in _with_uniform(manifest):
        path = art / a["file"]
        precision = f"{a['precision']} {_mixed(a)}".strip()
        name = {"tflite": "tflite xnnpack", "onnx": "onnxruntime"}.get(a["format"])
        if name:
            for threads in (1, 2):
                runtime_model = open_model(path, threads=threads)
                rows.append({"runtime": f"{name} {threads}t", "precision": precision,
                             **_latency(runtime_model.run, x, args.runs)})
    keras_ms = rows[0]["median_ms"]
    for r in rows:
        r["vs_keras"] = r["median_ms"] / keras_ms
    table(rows, [("runtime", "runtime", ""), ("precision", "precision", ""), ("median_ms", "median ms", ".2f"),
                 ("p95_ms", "p95 ms", ".2f"), ("vs_keras", "x Keras", ".2f")])
    save("latency", rows, {"runs": args.runs, "keras_reference": "keras predict_on_batch"})


# ---------------------------------------------------------------- Core ML interpreter
def cmd_interpreter(args) -> None:
    """catdog's ML Program interpreter on the shipped .mlpackages: load time, one 288x288 photo
    (median over --runs after warm-up), a batch of 16, and the fp32 ONNX artefact through ONNX
    Runtime in the same run for comparison."""
    import numpy as np

    from catdog.contract import load_manifest
    from catdog.runtime import open_model

    art = Path(args.art)
    manifest = load_manifest(art)
    rows = []
    for a in manifest["artefacts"]:
        if a["format"] not in ("coreml", "onnx") or (a["format"] == "onnx" and a["precision"] != "fp32"):
            continue
        start = time.perf_counter()
        model = open_model(art / a["file"], engine="interpreter" if a["format"] == "coreml" else None, threads=os.cpu_count())
        load_s = time.perf_counter() - start
        x = timing_photo(model.image_size)[None].astype(np.float32)
        batch = np.repeat(x, 16, axis=0)
        one = _latency(model.run, x, args.runs, warmup=3)
        sixteen = _latency(model.run, batch, max(3, args.runs // 10), warmup=1)
        rows.append({"artefact": a["file"], "engine": model.engine, "load_s": load_s, **one,
                     "batch16_ms_per_photo": sixteen["median_ms"] / 16})
    table(rows, [("artefact", "artefact", ""), ("engine", "engine", ""), ("load_s", "load s", ".2f"),
                 ("median_ms", "1 photo ms", ".1f"), ("p95_ms", "p95 ms", ".1f"), ("batch16_ms_per_photo", "batch 16 ms/photo", ".1f")])
    save("interpreter", rows, {"runs": args.runs, "threads": os.cpu_count(), "photo": "coral_cat_720p.jpg"})


# ---------------------------------------------------------------- accuracy
def cmd_accuracy(args) -> None:
    import numpy as np

    from catdog.cam import cam_model
    from catdog.data import iter_batches
    from catdog.contract import load_manifest
    from catdog.features import input_size
    from catdog.training import load_run, metrics as M
    from catdog.runtime import keras_model, open_model

    from catdog.training import run_photos

    run = load_run(args.run)
    samples = run_photos(run, "parity")  # a run trained on every photo has no held-out ones: compare on these
    batches = list(iter_batches(samples, batch_size=32, size=input_size(run.model)))
    x = np.concatenate([b.images for b in batches]).astype(np.float32)
    y = np.array([s.label for b in batches for s in b.samples])
    art = Path(args.art)
    rows = []
    p = keras_model(cam_model(run.model)).run(x)["probabilities"]
    rows.append({"artefact": "keras", "log_loss": M.log_loss(y, p[:, 1]), "accuracy": M.accuracy(y, p[:, 1])})
    reference = p
    for a in _with_uniform(load_manifest(art)):
        if a["format"] in ("tflite", "onnx", "coreml"):  # Core ML: Core ML on macOS, the interpreter elsewhere
            p = open_model(art / a["file"]).run(x)["probabilities"]
            rows.append({"artefact": a["file"], "mixed": _mixed(a), "log_loss": M.log_loss(y, p[:, 1]),
                         "accuracy": M.accuracy(y, p[:, 1]), "mb": a["bytes"] / 1e6,
                         "max_dp": float(np.abs(p - reference).max())})
    table(rows, [("artefact", "artefact", ""), ("mixed", "precision", ""), ("mb", "MB", ".2f"), ("log_loss", "log loss", ".4f"),
                 ("accuracy", "accuracy", ".2%"), ("max_dp", "max |dp| vs Keras", ".2e")])
    held_out = bool(json.loads((Path(args.run) / "split.json").read_text()).get("validation"))
    what = "held out (validation split)" if held_out else "training photos: the artefacts against Keras, not a held-out score"
    save("accuracy", rows, {"photos": f"{len(y)} parity photos of {args.run}: {what}"})


# ---------------------------------------------------------------- phone
PHONE_MODELS = (("mobilenet_v2", 288), ("mobilenet,mobilenet_v2", 288))


def cmd_phone(args) -> None:
    """Phone cost of the shipped model against the single-backbone alternative: MFLOPs per photo,
    artefact bytes and single-photo latency per precision (LiteRT/XNNPACK, the runtime the Android
    demo uses, on 1 and 2 threads; ONNX Runtime on 1 thread). The costs do not depend on the
    head's weights, so each model gets a fixed random head; int8 is calibrated on 64 real photos.

    This machine is shared, so the runtimes are timed interleaved (one call of each per round,
    `--runs` rounds): a busy moment slows them all alike. Median and best of the rounds are given.
    """
    import numpy as np

    from catdog.data import scan
    from catdog.export import export, load_calibration
    from catdog.features import build_backbone, get_spec
    from catdog.runtime import open_model
    from catdog.training import full_model
    from catdog.training.cv import Logistic
    from catdog.training.pet import PetFit, imagenet_top, pet_head
    from catdog.training.train import head_model

    rows, runners = [], []
    with tempfile.TemporaryDirectory() as tmp:
        for name, size in PHONE_MODELS:
            rng = np.random.default_rng(0)
            dim = get_spec(name).feature_dim
            head = head_model(Logistic(rng.normal(0, 0.05, dim), 0.0))
            top = imagenet_top(name, ",".join(["imagenet"] * len(name.split(","))))[0]
            pet = pet_head(dim, PetFit(rng.normal(0, 0.05, dim), 0.0, 0.5, top))  # the shipped layers, random detector
            model = full_model(name, build_backbone(name, "imagenet", size), head, pet)
            flops = model_flops(model)
            calibration = load_calibration(scan(args.data)[0], size, n=64)
            x = timing_photo(size)[None].astype(np.float32)
            for fmt in ("tflite", "onnx"):
                for precision in ("fp32", "fp16", "int8"):
                    a = export(model, fmt, precision, tmp, name, calibration)
                    path = str(Path(tmp) / a["file"])
                    row = {"model": f"{name.replace(',', ' + ')} {size}", "mflops": flops / 1e6, "format": fmt,
                           "precision": precision, "mb": a["bytes"] / 1e6}
                    rows.append(row)
                    for threads in (1, 2) if fmt == "tflite" else (1,):
                        runtime_model = open_model(path, threads=threads)
                        runners.append((row, f"{threads}t", lambda m=runtime_model, x=x: m.run(x)))
        times = {id(fn): [] for _, _, fn in runners}
        for _ in range(10):  # warm-up
            for _, _, fn in runners:
                fn()
        for _ in range(args.runs):
            for _, _, fn in runners:
                times[id(fn)].append(_timed(fn) * 1000)
        for row, threads, fn in runners:
            row[f"ms_{threads}"] = float(np.median(times[id(fn)]))
            row[f"best_ms_{threads}"] = float(np.min(times[id(fn)]))
    table(rows, [("model", "model", "<26"), ("mflops", "MFLOPs", ".0f"), ("format", "format", ""), ("precision", "precision", ""),
                 ("mb", "MB", ".2f"), ("ms_1t", "ms 1t", ".2f"), ("best_ms_1t", "best 1t", ".2f"),
                 ("ms_2t", "ms 2t", ".2f"), ("best_ms_2t", "best 2t", ".2f")])
    save("phone", rows, {"flops": "2 x multiply-adds of the conv, depthwise and dense layers", "rounds": args.runs,
                         "photo": "coral_cat_720p.jpg squashed to the input size", "timing": "interleaved rounds, median and best"})


def main() -> int:
    if sys.argv[1:2] == ["ray"]:  # its own options: python -m bench ray --help
        from bench.ray import main as ray_main

        return run_main(ray_main, sys.argv[2:])
    parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("part", help="a part, or ray (its own options: python -m bench ray --help)", choices=["all", "roofline", "features", "head", "export", "latency", "interpreter", "accuracy", "phone", "neither",
                                         "unsure", "fuzz", "soak"])
    parser.add_argument("--run", default=str(REPO / "runs" / "mobilenet+mobilenet_v2_288"))
    parser.add_argument("--art", default=None)
    parser.add_argument("--compare", nargs="*", metavar="ART_DIR", help="unsure: more ART_DIRs of the same run, measured beside --art")
    parser.add_argument("--data", default=str(SHARED / "data" / "dogs-vs-cats" / "train"))
    parser.add_argument("--images", type=whole(1), default=128, help="photos for the feature benchmark")
    parser.add_argument("--runs", type=whole(1), default=50, help="timed runs per latency row (after 10 warm-up)")
    parser.add_argument("--examples", type=whole(1), default=200, help="fuzz: random examples per mutation kind and target")
    parser.add_argument("--seed", type=whole(0, 2**32 - 1), default=None, help="fuzz: Hypothesis seed (default: random, printed)")
    parser.add_argument("--folder-mutants", type=whole(1), default=200, help="fuzz: mutants in the data folder run")
    parser.add_argument("--requests", type=whole(1), default=2000, help="soak: requests")
    parser.add_argument("--concurrency", type=whole(1), default=16, help="soak: requests in flight")
    parser.add_argument("--shifts", action="store_true", help="neither: also keep and reject rates under each shift "
                        "(features cached in --features-dir, as bench.robust's)")
    parser.add_argument("--features-dir", default=str(REPO / "runs" / "study"), help="neither --shifts: the feature cache")
    args = parser.parse_args()
    args.art = args.art or str(Path(args.run) / "artefacts")
    parts = ["features", "head", "export", "latency", "interpreter", "accuracy", "phone", "neither"] if args.part == "all" else [args.part]
    roof, status = None, 0
    for part in parts:
        print(f"== {part}")
        if part in ("fuzz", "soak"):  # checks, not only measurements: their failure is the exit status
            from bench import faults

            status = max(status, getattr(faults, f"cmd_{part}")(args))
        elif part == "neither":
            from bench.neither import cmd_neither

            cmd_neither(args)
        elif part == "unsure":
            from bench.unsure import cmd_unsure

            cmd_unsure(args)
        elif part == "features":
            cmd_features(args, roof)
        else:
            out = globals()[f"cmd_{part}"](args)
            roof = out if part == "roofline" else roof
    return status


if __name__ == "__main__":
    sys.exit(run_main(main))
