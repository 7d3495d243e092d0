"""Stage 6, parity: every exported artefact against the Keras model it came from.

Numbers come from running each artefact through `catdog.runtime`: TFLite through LiteRT, ONNX
through ONNX Runtime, Core ML through Core ML itself on macOS and through catdog's ML Program
interpreter elsewhere (`catdog.runtime.mlprogram`); each row names the engine. On macOS every
Core ML row is also run by the interpreter and the two are compared (`interpreter_vs_coreml`),
so the interpreter is checked against Apple's runtime wherever the macOS job runs. The Core ML
spec checks stay (input image type, colour layout, scale and bias, output names and shapes,
class labels, CAM 1x1 conv weights equal to the Dense kernel, kept layers float32).

Metrics per artefact, over the reference images:
    prob_max_abs     max |p_artefact - p_keras| over images and both classes
    cam_max_rel      max |cam_artefact - cam_keras| / max |cam_keras|   (whole set)
    cam_corr         Pearson correlation of all CAM values
    top1_agreement   share of images whose predicted class matches Keras'
and, for int8 where labelled photos are given, accuracy against Keras' accuracy on them.
"""

from __future__ import annotations

import json
import os
import platform
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image

from catdog.contract import ArtDir, CAM, INPUT_NAME, PET, PROBABILITIES, RunDir, TOLERANCES, TOLERANCE_TEXT, cam_grid, load_manifest, pet_threshold
from catdog.contract import verdict as verdict_of
from catdog.atomic import write_text
from catdog.cam import cam_conv_kernel, cam_model
from catdog.data import LABELS, MAX_PIXELS, ImageError, Sample, iter_batches, open_rgb, resize, sha256_file
from catdog.errors import CatdogError
from catdog.training import accuracy
from catdog.features import input_size
from catdog.runtime import coreml_runs_here, open_model
from catdog.runtime import keras_model as keras_runtime
IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp", ".webp")


@dataclass
class ParityImages:
    names: list[str]
    arrays: np.ndarray  # (N, S, S, 3) float32 0..255, squashed to the model size (what every runtime is fed)


def edge_cases(photo: Image.Image) -> dict[str, Image.Image]:
    """Hard inputs derived from a real photo: grayscale, tiny, very large, non-square."""
    w, h = photo.size
    return {
        "grayscale": photo.convert("L").convert("RGB"),
        "tiny_24x18": photo.resize((24, 18), Image.BILINEAR),
        "large_4000x3000": photo.resize((4000, 3000), Image.BICUBIC),
        "wide_strip": photo.crop((0, h // 3, w, h // 3 + max(1, h // 4))),
        "tall_strip": photo.crop((w // 3, 0, w // 3 + max(1, w // 5), h)),
    }


def load_images(images: str | os.PathLike | list[Path], image_size: int, edge: bool = True,
                max_pixels: int = MAX_PIXELS) -> tuple[ParityImages, list[str]]:
    """Every image in folder `images` (sorted) or the listed files, plus edge cases derived from
    the first photo, squashed to `image_size`. Returns the images and one line per file that
    could not be used.
    """
    if isinstance(images, list):
        paths, where = images, "the reference list"
    else:
        root = Path(images)
        if not root.is_dir():
            raise CatdogError(f"{root}: no such folder of reference images; pass --images DIR")
        paths, where = sorted(p for p in root.iterdir() if p.is_file()), str(root)
    names, squashed, skipped = [], [], []
    for path in paths:
        if path.suffix.lower() not in IMAGE_SUFFIXES:
            skipped.append(f"skipped {path}: not an image extension ({', '.join(IMAGE_SUFFIXES)})")
            continue
        try:
            photo = open_rgb(path, max_pixels)
        except ImageError as exc:
            skipped.append(f"skipped {path}: {exc}")
            continue
        if edge and not squashed:
            for kind, im in edge_cases(photo).items():
                names.append(f"{path.stem}__{kind}")
                squashed.append(resize(im, image_size))
        names.append(path.name)
        squashed.append(resize(photo, image_size))
    if not squashed:
        raise CatdogError(f"{where}: no usable reference image; put JPEG or PNG photos in it")
    return ParityImages(names, np.stack(squashed).astype(np.float32)), skipped


def run_artefact(path: Path, images: np.ndarray, engine: str | None = None) -> tuple[dict[str, np.ndarray], str]:
    """(outputs, engine) of one artefact on the parity photos, through catdog.runtime."""
    model = open_model(path, engine=engine)
    return model.run(images), model.engine


def compare(
    reference: dict[str, np.ndarray], outputs: dict[str, np.ndarray], names: list[str] | None = None, threshold: float | None = None
) -> dict:
    """Differences of an artefact's outputs from Keras'; `names` label the images whose top-1
    (or, given the pet threshold, whose verdict: cat, dog or neither) differs."""
    p_ref, p_out = reference[PROBABILITIES], outputs[PROBABILITIES]
    c_ref, c_out = reference[CAM].astype(np.float64), outputs[CAM].astype(np.float64)
    if p_out.shape != p_ref.shape or c_out.shape != c_ref.shape:
        raise CatdogError(f"output shapes {p_out.shape}, {c_out.shape} differ from Keras' {p_ref.shape}, {c_ref.shape}")
    scale = float(np.abs(c_ref).max()) or 1.0
    flipped = np.flatnonzero(p_out.argmax(1) != p_ref.argmax(1))
    names = names or [f"#{i}" for i in range(len(p_ref))]
    result = {}
    if threshold is not None and PET in reference:
        if PET not in outputs or outputs[PET].shape != reference[PET].shape:
            raise CatdogError(f"no '{PET}' output of shape {reference[PET].shape}; export the run again with this catdog")
        pet_ref, pet_out = reference[PET][:, 0], outputs[PET][:, 0]
        said = lambda p, pet: [verdict_of(p[i], pet[i], threshold) for i in range(len(p))]  # noqa: E731
        v_ref, v_out = said(p_ref, pet_ref), said(p_out, pet_out)
        changed = [i for i in range(len(v_ref)) if v_ref[i] != v_out[i]]
        result = {
            "pet_max_abs": float(np.abs(pet_out - pet_ref).max()),
            "verdict_agreement": 1.0 - len(changed) / len(v_ref),
            "verdict_flips": int(len(changed)),
            "verdict_flipped_images": [
                f"{names[i] if names else f'#{i}'} (Keras {v_ref[i]}, pet {pet_ref[i]:.3f}; artefact {v_out[i]}, pet {pet_out[i]:.3f})"
                for i in changed
            ],
        }
    return {
        **result,
        "prob_max_abs": float(np.abs(p_out - p_ref).max()),
        "cam_max_abs": float(np.abs(c_out - c_ref).max()),
        "cam_max_rel": float(np.abs(c_out - c_ref).max() / scale),
        "cam_corr": float(np.corrcoef(c_out.ravel(), c_ref.ravel())[0, 1]),
        "top1_agreement": float(np.mean(p_out.argmax(1) == p_ref.argmax(1))),
        "disagreements": int(len(flipped)),
        "disagreeing_images": [f"{names[i]} (P(dog) Keras {p_ref[i, 1]:.3f}, artefact {p_out[i, 1]:.3f})" for i in flipped],
    }


def verdict(precision: str, metrics: dict) -> tuple[bool, list[str]]:
    """(passed, failed checks) for one artefact's metrics under TOLERANCES."""
    tol = TOLERANCES[precision]
    failed = []
    for key in ("prob_max_abs", "pet_max_abs", "cam_max_rel"):
        if key in tol and key in metrics and not metrics[key] <= tol[key]:
            failed.append(f"{key} {metrics[key]:.3g} > {tol[key]:g}")
    if "top1_agreement" in tol and not metrics["top1_agreement"] >= tol["top1_agreement"]:
        failed.append(
            f"top1_agreement {metrics['top1_agreement']:.1%} < {tol['top1_agreement']:.0%}: {'; '.join(metrics.get('disagreeing_images', []))}"
        )
    if "verdict_agreement" in metrics and not metrics["verdict_agreement"] >= tol["verdict_agreement"]:
        failed.append(
            f"verdict agreement {metrics['verdict_agreement']:.1%} < {tol['verdict_agreement']:.1%}: {'; '.join(metrics['verdict_flipped_images'])}"
        )
    if "accuracy_drop" in tol and metrics.get("accuracy_drop") is not None and not metrics["accuracy_drop"] <= tol["accuracy_drop"]:
        failed.append(f"accuracy drop {metrics['accuracy_drop']:.2%} > {tol['accuracy_drop']:.0%}")
    return not failed, failed


def coreml_spec_checks(path: Path, full_model, backbone: str) -> list[dict]:
    """Check a Core ML artefact's spec against the contract and the Keras model (no prediction)."""
    import coremltools as ct

    from catdog.export import image_preprocessing

    checks = []

    def check(name: str, ok: bool, detail: str) -> None:
        checks.append({"check": name, "passed": bool(ok), "detail": detail})

    spec = ct.utils.load_spec(str(path))
    expected = image_preprocessing(backbone)
    check("model type", spec.WhichOneof("Type") == "mlProgram", spec.WhichOneof("Type"))
    inputs = {i.name: i for i in spec.description.input}
    image = inputs.get(INPUT_NAME)
    is_image = image is not None and image.type.WhichOneof("Type") == "imageType"
    check("input is an image", is_image, f"inputs {list(inputs)}")
    if is_image:
        it = image.type.imageType
        colour = ct.proto.FeatureTypes_pb2.ImageFeatureType.ColorSpace.Name(it.colorSpace)
        size = input_size(full_model)
        check(f"input size {size}x{size}", (it.width, it.height) == (size, size), f"{it.width}x{it.height}")
        check(f"colour layout {expected['color_layout']}", colour == expected["color_layout"], colour)
    function = spec.mlProgram.functions["main"]
    ops = list(function.block_specializations[function.opset].operations)
    consts = {op.outputs[0].name: op for op in ops if op.type == "const"}

    def const_floats(name: str, default: list[float]) -> list[float]:
        op = consts.get(name)
        return list(op.attributes["val"].immediateValue.tensor.floats.values) if op else default

    scale = const_floats(f"{INPUT_NAME}__scaled___y_0", [1.0])
    bias = const_floats(f"{INPUT_NAME}__biased___y_0", [0.0, 0.0, 0.0])
    check("input scale", np.allclose(scale, [expected["scale"]], rtol=1e-6), f"{scale} (expected {expected['scale']})")
    check("input bias", np.allclose(bias, expected["bias"], rtol=1e-6), f"{[round(b, 4) for b in bias]} (expected {expected['bias']})")
    outputs = {o.name: o for o in spec.description.output}
    check("outputs", set(outputs) == {"classLabel", PROBABILITIES, CAM, PET}, f"{sorted(outputs)}")
    if CAM in outputs:
        shape = list(outputs[CAM].type.multiArrayType.shape)
        grid = cam_grid(input_size(full_model))
        check(f"cam shape [1, {grid}, {grid}, 2]", shape == [1, grid, grid, 2], str(shape))
    check(
        "classifier outputs",
        spec.description.predictedFeatureName == "classLabel" and spec.description.predictedProbabilitiesName == PROBABILITIES,
        f"{spec.description.predictedFeatureName}, {spec.description.predictedProbabilitiesName}",
    )
    classify = [op for op in ops if op.type == "classify"]
    labels = []
    if classify:
        values = classify[0].inputs["classes"].arguments[0].value.immediateValue.list.values
        labels = [v.immediateValue.tensor.strings.values[0] for v in values]
    check("class labels", labels == list(LABELS), f"{labels} (expected {list(LABELS)})")
    cam_convs = [op for op in ops if op.type == "conv" and "_cam_" in op.outputs[0].name]
    kernel = cam_conv_kernel(full_model)  # (C, 2): without the prior's row, which is added per photo, not convolved
    if len(cam_convs) != 1:
        check("CAM 1x1 conv weights equal the Dense kernel", False, f"{len(cam_convs)} CAM conv ops found")
    else:
        from catdog.runtime.mlprogram import const_values, read_package

        weight_name = cam_convs[0].inputs["weight"].arguments[0].name
        weight = const_values(read_package(path)).get(weight_name)  # dequantised where int8
        weight = None if weight is None else np.asarray(weight, np.float32)
        if weight is None:
            check("CAM 1x1 conv weights equal the Dense kernel", False, f"weight {weight_name} not found")
        else:
            expected_w = kernel.T.reshape(2, -1, 1, 1)
            err = float(np.abs(weight - expected_w).max() / np.abs(expected_w).max())
            check(
                "CAM 1x1 conv weights equal the Dense kernel",
                weight.shape == expected_w.shape and err <= 1e-2,
                f"shape {tuple(weight.shape)}, max relative difference {err:.2e}",
            )
    check("metadata", bool(spec.description.metadata.author and spec.description.metadata.shortDescription), spec.description.metadata.author)
    return checks


def kept_layer_checks(path: Path, kept: list[str], units: list[dict], precision: str) -> list[dict]:
    """In a Core ML spec: each kept unit's conv ops compute in float32 and, for int8, read an
    unquantised (plain const) weight."""
    import coremltools as ct

    from catdog.export import Unit, matches

    spec = ct.utils.load_spec(str(path))
    function = spec.mlProgram.functions["main"]
    ops = list(function.block_specializations[function.opset].operations)
    producer = {out.name: op.type for op in ops for out in op.outputs}
    float32 = ct.proto.MIL_pb2.DataType.Value("FLOAT32")
    by_name = {u["name"]: Unit(**u) for u in units}
    checks = []
    for name in kept:
        convs = [op for op in ops if op.type in ("conv", "linear") and matches(by_name[name], [op.outputs[0].name])]
        dtypes = [op.outputs[0].type.tensorType.dataType for op in convs]
        ok = len(convs) == 1 and all(d == float32 for d in dtypes)
        detail = f"{len(convs)} op(s), output dtype {[ct.proto.MIL_pb2.DataType.Name(d) for d in dtypes]}"
        if precision == "int8" and convs:
            weight = convs[0].inputs["weight"].arguments[0].name
            ok = ok and producer.get(weight) == "const"
            detail += f", weight from {producer.get(weight)}"
        checks.append({"check": f"{name} kept float32", "passed": bool(ok), "detail": detail})
    return checks


def _labelled_images(samples: list[Sample], image_size: int, max_pixels: int = MAX_PIXELS) -> tuple[list[str], np.ndarray, np.ndarray]:
    names, images, labels = [], [], []
    for batch in iter_batches(samples, batch_size=32, size=image_size, max_pixels=max_pixels):
        for rejection in batch.rejections:
            print(rejection.line())
        images.append(batch.images)
        names.extend(s.name for s in batch.samples)
        labels.extend(s.label for s in batch.samples)
    if not images:
        return [], np.zeros((0, image_size, image_size, 3), np.float32), np.zeros(0, int)
    return names, np.concatenate(images).astype(np.float32), np.array(labels)


def run_parity(
    art_dir: str | os.PathLike,
    images_dir: str | os.PathLike | list[Path],
    labelled: list[Sample] | None = None,
    run_dir: str | os.PathLike | None = None,
    edge: bool = True,
    max_pixels: int = MAX_PIXELS,
) -> dict:
    """Compare every artefact in ART_DIR with the Keras model; write parity.json and parity.md.

    Every artefact is measured on the same set: the reference images (edge cases included) and
    the labelled photos, so int8's top-1 agreement is measured on hundreds of photos; accuracy
    is scored on the labelled ones. Uniform-precision artefacts (uniform/) are measured for
    comparison and do not count towards the verdict.
    """
    from catdog.training import calibrated_model, load_run

    art_dir = Path(art_dir)
    manifest = load_manifest(art_dir)
    if not manifest["artefacts"]:  # passed "all" of none: an export stopped before its first artefact
        raise CatdogError(f"{art_dir / ArtDir.MANIFEST}: lists no artefact (an export interrupted before its first?); run `catdog export` again")
    if not isinstance(manifest.get("keras_model"), dict) or not isinstance(manifest["keras_model"].get("sha256"), str):  # parity's reference
        raise CatdogError(f"{art_dir / ArtDir.MANIFEST}: no keras_model sha256 (the model the artefacts came from); run `catdog export` again")
    from catdog.atomic import check_writable

    check_writable(art_dir / ArtDir.PARITY_JSON)  # said after every artefact was measured, and the numbers lost
    if run_dir is None:  # where export found the Keras model, relative to ART_DIR (a manifest holds no machine path)
        keras_path = manifest["keras_model"].get("path")
        if not keras_path or not (art_dir / keras_path).is_file():
            raise CatdogError(f"{art_dir}: the Keras model the artefacts came from is not at {keras_path!r} beside it; pass --run-dir RUN_DIR")
        run_dir = (art_dir / keras_path).parent
    run_dir = Path(run_dir)
    run = load_run(run_dir)
    if sha256_file(run_dir / RunDir.MODEL) != manifest["keras_model"]["sha256"]:
        raise CatdogError(f"{run_dir / 'model.keras'}: not the model the artefacts came from (sha256 differs); "
                          "pass the RUN_DIR they were exported from as --run-dir, or export this run again")
    size = input_size(run.model)
    images, skipped = load_images(images_dir, size, edge, max_pixels)
    for line in skipped:
        print(line)
    labelled_names, labelled_arrays, labels = _labelled_images(labelled or [], size, max_pixels)
    names = images.names + labelled_names
    arrays = np.concatenate([images.arrays, labelled_arrays])
    n_ref = len(images.names)
    temperature = float(manifest.get("temperature", 1.0))
    threshold = pet_threshold(art_dir)
    keras_model = cam_model(calibrated_model(run.model, temperature) if temperature != 1.0 else run.model)
    reference = keras_runtime(keras_model).run(arrays)
    keras_acc = accuracy(labels, reference[PROBABILITIES][n_ref:, 1]) if len(labels) else None
    from dataclasses import asdict

    from catdog.export import weighted_units

    units = [asdict(u) for u in weighted_units(keras_model)]

    def measure(art: dict, comparison: bool) -> dict:
        path = art_dir / art["file"]
        kept = art.get("kept_float32", [])
        # sha256: which file these numbers are of (the runtime refuses one that is not the manifest's)
        row = {"file": art["file"], "format": art["format"], "precision": art["precision"], "bytes": art.get("bytes"),
               "sha256": art.get("sha256"), "kept_float32": kept}
        if comparison:
            row["comparison"] = True
        if not path.exists():
            return {**row, "passed": False, "failed": [f"{path} missing, though manifest.json lists it; copy the ART_DIR again or run `catdog export` again"],
                    "numbers_run": False}
        failed = []
        if art["format"] == "coreml":
            try:
                row["spec_checks"] = coreml_spec_checks(path, run.model, manifest["backbone"])
                if kept:
                    row["spec_checks"] += kept_layer_checks(path, kept, units, art["precision"])
            except Exception as exc:  # a package cut short: one line, and the next artefact is measured
                row["spec_checks"] = [{"check": "the spec reads", "passed": False, "detail": " ".join(str(exc).split())[:300]}]
            failed = [f"spec: {c['check']} ({c['detail']})" for c in row["spec_checks"] if not c["passed"]]
        # a uniform twin only shows what mixed precision buys: the reference photos suffice
        n = n_ref if comparison and n_ref else len(arrays)
        start = time.perf_counter()
        try:  # catdog.runtime: a file changed since export, or one its engine cannot load, is one line
            outputs, row["engine"] = run_artefact(path, arrays[:n])
        except CatdogError as exc:
            return {**row, "numbers_run": False, "passed": False, "failed": failed + [str(exc)]}
        row["seconds"] = round(time.perf_counter() - start, 1)
        if art["format"] == "coreml" and coreml_runs_here():
            # Apple's numbers against the interpreter's: the interpreter is checked wherever Core ML runs
            interpreted, _ = run_artefact(path, arrays[:n], engine="interpreter")
            check = compare(outputs, interpreted)
            row["interpreter_vs_coreml"] = {k: check[k] for k in ("prob_max_abs", "cam_max_rel", "top1_agreement")}
        metrics = compare({k: v[:n] for k, v in reference.items()}, outputs, names[:n], threshold)
        if len(labels) and n == len(arrays):
            art_acc = accuracy(labels, outputs[PROBABILITIES][n_ref:, 1])
            metrics.update(keras_accuracy=keras_acc, accuracy=art_acc, labelled_photos=int(len(labels)))
            if art["precision"] == "int8":
                metrics["accuracy_drop"] = keras_acc - art_acc
        ok, more = verdict(art["precision"], metrics)
        return {**row, **metrics, "numbers_run": True, "passed": ok and not failed, "failed": failed + more}

    rows = [measure(art, False) for art in manifest["artefacts"]]
    comparison = [measure(art, True) for art in manifest.get("uniform_artefacts", [])]
    report = {
        "passed": bool(rows) and all(r["passed"] for r in rows),
        "art_dir": str(art_dir),
        "keras_model": str(run_dir / RunDir.MODEL),
        "images": names,
        "n_images": len(names),
        "n_reference": n_ref,
        "edge_cases": bool(edge),
        "labelled_photos": int(len(labels)),
        "tolerances": TOLERANCES,
        "coreml_engine": "Core ML" if coreml_runs_here() else "catdog ML Program interpreter",
        "platform": platform.platform(),
        "artefacts": rows,
        "uniform_artefacts": comparison,
    }
    write_text(art_dir / ArtDir.PARITY_JSON, json.dumps(report, indent=2))
    write_text(art_dir / ArtDir.PARITY_MD, markdown(report))
    return report


def _table(rows: list[dict]) -> list[str]:
    lines = [
        "| artefact | size | float32 layers | max abs diff p | max abs diff pet | CAM max rel diff | CAM corr | top-1 agree (flipped) "
        "| verdict agree (flipped) | accuracy (Keras) | result |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---|",
    ]
    for r in rows:
        size = f"{r['bytes'] / 1e6:.2f} MB" if isinstance(r.get("bytes"), (int, float)) else "–"
        kept = str(len(r.get("kept_float32", []))) if r["precision"] != "fp32" else "all"
        if not r.get("numbers_run"):
            note = r.get("note", "")
            result = ("pass" if r["passed"] else "FAIL: " + "; ".join(r["failed"])) + (f" (spec only: {note})" if note else "")
            lines.append(f"| {r['file']} | {size} | {kept} | – | – | – | – | – | – | – | {result} |")
            continue
        acc = f"{r['accuracy']:.2%} ({r['keras_accuracy']:.2%})" if "accuracy" in r else "–"
        result = "pass" if r["passed"] else "FAIL: " + "; ".join(r["failed"])
        if r.get("comparison"):
            result = "(comparison only) " + ("within tolerance" if r["passed"] else "would fail: " + "; ".join(r["failed"]))
        lines.append(
            f"| {r['file']} | {size} | {kept} | {r['prob_max_abs']:.2e} | {r.get('pet_max_abs', float('nan')):.2e} | "
            f"{r['cam_max_rel']:.2e} | {r['cam_corr']:.6f} | {r['top1_agreement']:.2%} ({r['disagreements']}) | "
            f"{r.get('verdict_agreement', float('nan')):.2%} ({r.get('verdict_flips', '–')}) | {acc} | {result} |"
        )
    return lines


def edge_text(report: dict) -> str:
    """Whether a parity report's reference images hold the edge cases made from the first photo."""
    return "edge cases included" if report.get("edge_cases", True) else "no edge cases: --no-edge"


def markdown(report: dict) -> str:
    lines = [
        f"# catdog parity: {'PASSED' if report['passed'] else 'FAILED'}",
        "",
        f"{report['n_images']} images: {report['n_reference']} reference images ({edge_text(report)}) and "
        f"{report['labelled_photos']} labelled photos; Keras model `{report['keras_model']}`, on {report['platform']}.",
        "",
        f"Tolerances: {TOLERANCE_TEXT}. Core ML numbers computed by {report.get('coreml_engine', 'Core ML')}"
        + ("" if report.get("coreml_engine") == "Core ML" else " (Core ML itself runs on macOS; the macOS CI job compares the two)")
        + ".",
        "",
        *_table(report["artefacts"]),
    ]
    if report.get("uniform_artefacts"):
        lines += [
            "",
            "## Without mixed precision (every layer reduced), for comparison",
            "",
            f"On the {report['n_reference']} reference photos ({edge_text(report)}).",
            "",
            *_table(report["uniform_artefacts"]),
        ]
    compared = [r for r in report["artefacts"] if r.get("interpreter_vs_coreml")]
    if compared:
        lines += [
            "",
            "## Core ML itself against catdog's ML Program interpreter, same photos",
            "",
            "| artefact | max abs diff p | CAM max rel diff | top-1 agree |",
            "|---|---:|---:|---:|",
        ]
        for r in compared:
            c = r["interpreter_vs_coreml"]
            lines.append(f"| {r['file']} | {c['prob_max_abs']:.2e} | {c['cam_max_rel']:.2e} | {c['top1_agreement']:.2%} |")
    flipped = [(r["file"], r["disagreeing_images"]) for r in report["artefacts"] if r.get("disagreeing_images")]
    if flipped:
        lines += ["", "## Photos whose top-1 answer changes", ""]
        lines += [f"- {file}: {'; '.join(images)}" for file, images in flipped]
    for r in report["artefacts"]:
        if r.get("spec_checks"):
            lines += ["", f"## Core ML spec checks: {r['file']}", ""]
            lines += [f"- {'✔' if c['passed'] else '✘'} {c['check']}: {c['detail']}" for c in r["spec_checks"]]
    return "\n".join(lines) + "\n"
