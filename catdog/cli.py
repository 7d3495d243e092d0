"""The `catdog` command: one sub-command per pipeline stage, and `run` for the whole chain."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from catdog.errors import CatdogError

EXIT_USAGE = 2


def _report_rejections(rejections, csv_path: Path | None) -> None:
    """List the rejected files in `csv_path` (each was printed when it was found)."""
    from catdog.data import write_rejections

    if csv_path is not None:
        write_rejections(csv_path, rejections)
        if rejections:
            print(f"{len(rejections)} file(s) rejected, listed in {csv_path}")


def _scan(data: str):
    from catdog.data import scan

    samples, rejections = scan(data)
    for r in rejections:
        print(r.line())
    return samples, rejections


def _features(args, data: str, out: Path, rejected_csv: Path, brief: bool = False):
    """Extract features; returns (report, its one-line summary), printed unless brief (`run` prints it as a stage line)."""
    from catdog.features import extract_features

    samples, scan_rejections = _scan(data)
    excluded = 0
    if getattr(args, "exclude", None):
        from catdog.data import listed
        from catdog.inspect import read_exclude

        names = read_exclude(args.exclude)
        kept = [s for s in samples if not listed(s.name, names)]
        excluded = len(samples) - len(kept)
        samples = kept
        print(f"excluded {excluded} photo(s) listed in {args.exclude}")
    if not samples:
        _report_rejections(scan_rejections, rejected_csv)
        raise CatdogError(f"{data}: no usable photo ({len(scan_rejections)} file(s) rejected, see {rejected_csv})")
    report = _on_ray(args, extract_features, "extract_features_ray")(
        samples,
        out,
        args.backbone,
        args.weights or "imagenet",
        batch_size=args.batch_size,
        max_pixels=args.max_pixels,
        excluded=excluded,
        engine=args.engine,
        image_size=args.image_size,
    )
    rejections = scan_rejections + report.rejections
    _report_rejections(rejections, rejected_csv)
    used = len(samples) - len(report.rejections)
    if used == 0:
        raise CatdogError(f"{data}: no usable photo ({len(rejections)} file(s) rejected, see {rejected_csv})")
    speed = f" at {report.images_per_s:.1f} images/s" if report.computed else ""
    line = f"{used} photos in {out} ({report.computed} computed{speed}, {report.cached} from cache, {len(rejections)} rejected)"
    if not brief:
        print(f"features: {line}")
    return report, line


def cmd_features(args) -> int:
    out = Path(args.out)
    _features(args, args.data, out, Path(args.rejected) if args.rejected else out.parent / "rejected.csv")
    return 0


def _on_ray(args, local, ray_twin: str):
    """`local` (a stage function), or with --ray its twin in catdog.features.distributed, bound to
    the cluster ADDRESS and --workers (same arguments, same result)."""
    if getattr(args, "ray", None) is None:
        if getattr(args, "workers", None) is not None:
            raise CatdogError(f"--workers {args.workers}: sets the Ray actor pool; add --ray (a local Ray instance) or --ray ADDRESS")
        return local
    from functools import partial

    import catdog.features.distributed as distributed

    return partial(getattr(distributed, ray_twin), address=None if args.ray == "local" else args.ray, workers=args.workers)


def _head_config(args):
    from catdog.training import HeadConfig

    return HeadConfig(seed=args.seed, l2_grid=tuple(args.l2), folds=args.cv)


def _print_metrics(metrics: dict) -> None:
    from catdog.training.summary import metrics_lines

    print("\n".join(metrics_lines(metrics)))


def _train(args, features_path: Path, run_dir: Path, brief: bool = False) -> dict:
    from catdog.features import load_features, without
    from catdog.training import train_run

    feature_set = load_features(features_path)
    if getattr(args, "exclude", None) and not getattr(args, "data", None):  # `run` excluded them before extraction
        from catdog.inspect import read_exclude

        feature_set, dropped = without(feature_set, read_exclude(args.exclude))
        print(f"excluded {dropped} photo(s) listed in {args.exclude}")
    metrics = train_run(feature_set, run_dir, _head_config(args), str(features_path))
    if not brief:
        _print_metrics(metrics)
        print(f"run written to {run_dir} (model.keras, head.keras, metrics.json, cv_predictions.csv, curves.png)")
    return metrics


def _report(run_dir: Path, art_dir: Path | None = None, model=None) -> dict:
    from catdog.report import write_report

    facts = write_report(run_dir, art_dir, model)
    print(f"report: {facts['report']}")
    return facts


def cmd_train(args) -> int:
    _train(args, Path(args.features), Path(args.out))
    _report(Path(args.out))
    return 0


def cmd_run(args) -> int:
    """Every stage, one line each with its time and key figure, then the summary table."""
    import time

    from catdog.report import Stage, export_figure, parity_figure, summary_table, training_figure, write_report
    from catdog.report.facts import read_json

    start = time.perf_counter()
    run_dir = Path(args.out)
    with Stage("features") as stage:
        stage.figure = _features(args, args.data, run_dir / "features.h5", run_dir / "rejected.csv", brief=True)[1]
    with Stage("training") as stage:
        stage.figure = training_figure(_train(args, run_dir / "features.h5", run_dir, brief=True))
    code, model, art_dir = 0, None, None
    if not args.no_export:
        from catdog.training import load_run, run_photos

        run = load_run(run_dir)
        model, art_dir = run.model, run_dir / "artefacts"
        with Stage("export") as stage:
            stage.figure = export_figure(_export(run, args, art_dir, brief=True), art_dir)
        with Stage("parity") as stage:
            labelled = run_photos(run, "parity")
            reference = args.reference or [s.path for s in labelled[:: max(1, len(labelled) // 24)][:24]]
            code = _parity(art_dir, reference, labelled, run_dir, edge=True, brief=True)
            stage.figure = parity_figure(read_json(art_dir / "parity.json") or {}, art_dir)
    with Stage("report") as stage:
        facts = write_report(run_dir, art_dir, model)
        stage.figure = facts["report"]
    print(summary_table(facts, time.perf_counter() - start))
    return code


def _export(run, args, out: Path, brief: bool = False) -> dict:
    from catdog.data import scan
    from catdog.export import FORMATS, PRECISIONS, export_run, parse_list
    from catdog.training import run_photos

    formats_ = parse_list(args.formats, FORMATS, "format")
    precisions_ = parse_list(args.precision, PRECISIONS, "precision")
    calibration = scan(args.calibration)[0] if args.calibration else run_photos(run, "calibration")
    keep_float = [n.strip() for n in args.keep_float.split(",") if n.strip()] if args.keep_float is not None else None
    manifest = export_run(
        run, formats_, precisions_, out, calibration, calibrated=getattr(args, "calibrated", False),
        mixed=args.mixed == "on", keep_float=keep_float,
    )
    if brief:
        return manifest
    print(f"{'artefact':<42} {'MB':>7} {'export s':>9}  float32 layers")
    for a in manifest["artefacts"]:
        kept = "all" if a["precision"] == "fp32" else (", ".join(a["kept_float32"]) or "none")
        print(f"{a['file']:<42} {a['bytes'] / 1e6:>7.2f} {a['export_seconds']:>9.1f}  {kept}")
    print(f"manifest: {out / 'manifest.json'}")
    return manifest


def cmd_export(args) -> int:
    from catdog.training import load_run

    _export(load_run(args.run_dir), args, Path(args.out))
    return 0


def _parity(art_dir: Path, images, labelled, run_dir, edge: bool, brief: bool = False) -> int:
    from catdog.parity import run_parity

    report = run_parity(art_dir, images, labelled, run_dir, edge)
    if brief:
        return 0 if report["passed"] else 1
    print((art_dir / "parity.md").read_text())
    print(f"parity: {'passed' if report['passed'] else 'FAILED'} ({art_dir / 'parity.json'})")
    return 0 if report["passed"] else 1


def cmd_parity(args) -> int:
    from catdog.data import scan

    labelled = [s for s in scan(args.labelled)[0] if s.label is not None] if args.labelled else None
    return _parity(Path(args.art_dir), args.images, labelled, args.run_dir, not args.no_edge)


def cmd_cam(args) -> int:
    from catdog.cam import cam_photos

    cam_photos(args.run_dir, args.images, args.out, args.size)
    return 0


def _predict(run_dir: str, data: str, batch_size: int, max_pixels: int, rejected_csv: Path | None, tta: bool = False, args=None):
    from catdog.training import load_run, predict_images

    run = load_run(run_dir)
    samples, scan_rejections = _scan(data)
    predict = _on_ray(args, predict_images, "predict_images_ray")
    predictions = predict(run.model, samples, batch_size=batch_size, max_pixels=max_pixels, tta=tta)
    rejections = scan_rejections + predictions.rejections
    _report_rejections(rejections, rejected_csv)
    if not predictions.samples:
        raise CatdogError(f"{data}: no usable photo ({len(rejections)} file(s) rejected)")
    return run, predictions


def cmd_evaluate(args) -> int:
    from catdog.training import evaluate

    rejected = Path(args.rejected) if args.rejected else (Path(args.json).parent / "rejected.csv" if args.json else None)
    _, predictions = _predict(args.run_dir, args.data, args.batch_size, args.max_pixels, rejected, args.tta)
    result = evaluate(predictions)
    (tn, fp), (fn, tp) = result["confusion_matrix"]
    print(f"{'photos':>10} {'log loss':>10} {'accuracy':>10}")
    print(f"{result['n']:>10d} {result['log_loss']:>10.4f} {result['accuracy']:>10.2%}")
    print(f"confusion (rows true, cols predicted): cat {tn:4d} {fp:4d} | dog {fn:4d} {tp:4d}")
    if args.json:
        from catdog.atomic import write_text

        write_text(args.json, json.dumps({**result, "run_dir": args.run_dir, "data": args.data}, indent=2))
        print(f"written {args.json}")
    return 0


def cmd_predict(args) -> int:
    from catdog.training import submission_rows, write_submission

    out = Path(args.out)
    rejected = Path(args.rejected) if args.rejected else out.parent / "rejected.csv"
    run, predictions = _predict(args.run_dir, args.test_dir, args.batch_size, args.max_pixels, rejected, args.tta, args)
    clip = None if args.no_clip else tuple(args.clip)
    if clip and not 0.0 <= clip[0] < clip[1] <= 1.0:
        raise CatdogError(f"--clip {clip[0]} {clip[1]}: need 0 <= LOW < HIGH <= 1 (e.g. 0.005 0.995)")
    temperature = run.temperature if args.calibrated else None
    rows = submission_rows(predictions, clip=clip, temperature=temperature)
    write_submission(out, rows)
    how = f"temperature {temperature:.3f}, " if temperature else ""
    how += f"clipped to {clip[0]}..{clip[1]}" if clip else "not clipped"
    print(f"submission: {len(rows)} rows in {out} (label = P(dog), {how})")
    return 0


def cmd_inspect(args) -> int:
    from catdog.inspect import inspect_data

    summary = inspect_data(
        args.data,
        args.out,
        backbone=args.backbone,
        top_k=args.top_k,
        run_dir=args.run,
        min_side=args.min_side,
        imagenet_labels=args.imagenet_labels,
        max_pixels=args.max_pixels,
    )
    print(
        f"inspect: {summary['photos']} photos, {summary['suspects']} suspects (tiny {summary['tiny']}, colour "
        f"{summary['colour_outliers']}, ImageNet {summary['imagenet_misses']}, duplicates {summary['duplicates']}), "
        f"{summary['rejected']} rejected"
    )
    print(f"report: {Path(args.out) / 'report.html'}; suspects: {Path(args.out) / 'suspects.csv'}")
    return 0


def cmd_finetune(args) -> int:
    from catdog.training import load_run
    from catdog.training.finetune import FinetuneConfig, finetune

    config = FinetuneConfig(
        blocks=args.blocks, learning_rate=args.lr, batch_size=args.batch_size, max_epochs=args.epochs,
        patience=args.patience, seed=args.seed,
    )
    metrics = finetune(load_run(args.run_dir), args.data, args.out, config)
    print(
        f"fine-tuned {', '.join(metrics['finetune']['blocks_trained'])}: validation log loss "
        f"{metrics['val_before']['log_loss']:.4f} -> {metrics['val']['log_loss']:.4f}, accuracy {metrics['val']['accuracy']:.2%} "
        f"(best epoch {metrics['best_epoch']} of {metrics['epochs']}, {metrics['seconds']:.0f} s)"
    )
    if not metrics["improved"]:
        print("fine-tuning did not beat the starting model on the validation split: the starting weights were kept")
    print(f"run written to {args.out}")
    _report(Path(args.out))
    return 0


def cmd_report(args) -> int:
    _report(Path(args.run_dir), Path(args.art) if args.art else None)
    return 0


def cmd_serve(args) -> int:
    from catdog.serve import serve

    serve(args.path, args.host, args.port, args.threads)
    return 0


def _add_exclude_arg(p: argparse.ArgumentParser) -> None:
    p.add_argument("--exclude", metavar="LIST", help="leave out the photos in suspects.csv (from catdog inspect) or a plain list of names")


def _add_ray_args(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--ray", nargs="?", const="local", metavar="ADDRESS",
        help="run on Ray Data (optional extra: pip install -e '.[ray]'): alone, a local Ray instance; with ADDRESS "
        "(the head node's HOST:PORT, or auto), that cluster",
    )
    p.add_argument("--workers", type=int, metavar="N", help="with --ray: actors holding the model (default: every CPU of the cluster)")


def _add_decode_args(p: argparse.ArgumentParser) -> None:
    from catdog.data.limits import MAX_PIXELS

    p.add_argument("--batch-size", type=int, default=32, help="photos per network call (default 32)")
    p.add_argument(
        "--max-pixels", type=int, default=MAX_PIXELS, help=f"refuse images larger than this many pixels (default {MAX_PIXELS:,})"
    )
    p.add_argument("--rejected", help="where to list unusable files (CSV: file,reason)")


def _add_feature_args(p: argparse.ArgumentParser) -> None:
    from catdog.features.specs import BACKBONES

    p.add_argument(
        "--backbone", default="mobilenet_v2", metavar="NAME[,NAME]",
        help=f"one of {', '.join(sorted(BACKBONES))}, or several joined by commas to fuse their features (default mobilenet_v2)",
    )
    p.add_argument(
        "--weights",
        help="no-top weights file for the backbone (default: Keras' ImageNet weights); for a fusion one entry per backbone, "
        "comma-separated, each a file or imagenet",
    )
    p.add_argument(
        "--image-size", type=int, default=224, metavar="S",
        help="photo size the model takes, a multiple of 32 (default 224: 7x7 CAM; 288 scores better, 9x9 CAM)",
    )
    p.add_argument(
        "--engine", default="litert", choices=["litert", "keras"],
        help="run the feature model with LiteRT/XNNPACK (default, faster on CPU) or TensorFlow",
    )
    _add_decode_args(p)


def _float_list(text: str) -> list[float]:
    try:
        values = [float(t) for t in text.split(",") if t.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r}: give numbers separated by commas (e.g. 1e-3,3e-3)") from None
    if not values or min(values) <= 0:
        raise argparse.ArgumentTypeError(f"{text!r}: give positive numbers separated by commas (e.g. 1e-3,3e-3)")
    return values


def _add_train_args(p: argparse.ArgumentParser) -> None:
    from catdog.training.settings import L2_GRID

    p.add_argument("--seed", type=int, default=0, help="seed for the CV folds and the bootstrap (default 0)")
    p.add_argument(
        "--l2", type=_float_list, default=list(L2_GRID), metavar="L2[,L2...]",
        help=f"L2 strengths for cross-validation to choose from; one value fixes it (default {','.join(f'{v:g}' for v in L2_GRID)})",
    )
    p.add_argument(
        "--cv", type=int, default=5, metavar="K",
        help="folds of the CV that chooses l2 and of the nested CV that estimates the log loss (default 5)",
    )


def _add_export_args(p: argparse.ArgumentParser, required_out: bool) -> None:
    p.add_argument("--formats", default="coreml,tflite,onnx", help="comma-separated (default coreml,tflite,onnx)")
    p.add_argument("--precision", default="fp32,fp16,int8", help="comma-separated (default fp32,fp16,int8)")
    p.add_argument(
        "--calibration", metavar="DIR",
        help="photos for int8 calibration and the sensitivity analysis (default: the run's calibration photos, split.json)",
    )
    p.add_argument(
        "--mixed", choices=["on", "off"], default="on",
        help="on (default): keep the layers most sensitive to fp16/int8 in float32, chosen by measurement; off: reduce every layer",
    )
    p.add_argument(
        "--keep-float", metavar="LAYER,...",
        help="keep these Keras layers float32 in fp16/int8 instead of the measured choice (names: ART_DIR/sensitivity.json)",
    )
    if required_out:
        p.add_argument("--out", required=True, metavar="ART_DIR")


VERBOSE_HELP = "also show TensorFlow, absl, LiteRT and converter logs and library warnings"


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="catdog", description=__doc__)
    parser.add_argument("--verbose", action="store_true", help=VERBOSE_HELP)
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    p = sub.add_parser("features", help="extract backbone features of DATA into an h5 cache (resumable)")
    p.add_argument("data", metavar="DATA", help="Kaggle-layout folder (cat.N.jpg, dog.N.jpg, N.jpg) or cat/ dog/ folders")
    p.add_argument("--out", required=True, metavar="FEATURES.h5")
    _add_feature_args(p)
    _add_exclude_arg(p)
    _add_ray_args(p)
    p.set_defaults(func=cmd_features)

    p = sub.add_parser("train", help="choose the head's settings by CV, fit it on every photo of FEATURES.h5, estimate it by nested CV; write RUN_DIR")
    p.add_argument("features", metavar="FEATURES.h5")
    p.add_argument("--out", required=True, metavar="RUN_DIR")
    _add_train_args(p)
    _add_exclude_arg(p)
    p.set_defaults(func=cmd_train)

    p = sub.add_parser("evaluate", help="log loss, accuracy and confusion matrix of RUN_DIR on labelled DATA")
    p.add_argument("run_dir", metavar="RUN_DIR")
    p.add_argument("data", metavar="DATA")
    p.add_argument("--json", metavar="OUT.json", help="also write the scores as JSON")
    p.add_argument("--tta", action="store_true", help="test-time augmentation: average each photo with its mirror image")
    _add_decode_args(p)
    p.set_defaults(func=cmd_evaluate)

    p = sub.add_parser("predict", help="write a Kaggle submission (id,label = P(dog)) for TEST_DIR")
    p.add_argument("run_dir", metavar="RUN_DIR")
    p.add_argument("test_dir", metavar="TEST_DIR")
    p.add_argument("--out", required=True, metavar="submission.csv")
    p.add_argument("--clip", nargs=2, type=float, default=[0.005, 0.995], metavar=("LOW", "HIGH"), help="default 0.005 0.995")
    p.add_argument("--no-clip", action="store_true", help="write the probabilities unclipped")
    p.add_argument("--calibrated", action="store_true", help="apply the run's temperature (fitted on its cross-validated predictions)")
    p.add_argument("--tta", action="store_true", help="test-time augmentation: average each photo with its mirror image")
    _add_decode_args(p)
    _add_ray_args(p)
    p.set_defaults(func=cmd_predict)

    p = sub.add_parser("cam", help="CAM heatmap overlays (PNG) for photos, plus a grid sheet")
    p.add_argument("run_dir", metavar="RUN_DIR")
    p.add_argument("images", metavar="IMAGES", nargs="+", help="photo files or folders")
    p.add_argument("--out", required=True, metavar="DIR")
    p.add_argument("--size", type=int, default=512, help="longest side of each overlay in pixels (default 512)")
    p.set_defaults(func=cmd_cam)

    p = sub.add_parser("export", help="export RUN_DIR to Core ML / TFLite / ONNX with manifest.json")
    p.add_argument("run_dir", metavar="RUN_DIR")
    _add_export_args(p, required_out=True)
    p.add_argument("--calibrated", action="store_true", help="fold the run's temperature (fitted on its cross-validated predictions) into the models")
    p.set_defaults(func=cmd_export)

    p = sub.add_parser("parity", help="compare every artefact in ART_DIR with the Keras model")
    p.add_argument("art_dir", metavar="ART_DIR")
    p.add_argument("--images", required=True, metavar="DIR", help="reference photos (e.g. ../shared/data/reference)")
    p.add_argument("--labelled", metavar="DATA", help="labelled photos for the int8 accuracy check")
    p.add_argument("--run-dir", metavar="RUN_DIR", help="the Keras RUN_DIR (default: the one in manifest.json)")
    p.add_argument("--no-edge", action="store_true", help="do not add edge cases (grayscale, tiny, large, strips)")
    p.set_defaults(func=cmd_parity)

    p = sub.add_parser("run", help="the whole chain: features, head, metrics, export, parity and report.html, into RUN_DIR")
    p.add_argument("data", metavar="DATA")
    p.add_argument("--out", required=True, metavar="RUN_DIR")
    _add_feature_args(p)
    _add_train_args(p)
    _add_export_args(p, required_out=False)
    p.add_argument("--reference", metavar="DIR", help="parity reference photos (default: 24 of the run's parity photos, split.json)")
    p.add_argument("--no-export", action="store_true", help="stop after training")
    _add_exclude_arg(p)
    p.set_defaults(func=cmd_run)

    p = sub.add_parser("inspect", help="find tiny, odd-coloured, non-pet, mislabelled and duplicate photos; HTML report")
    p.add_argument("data", metavar="DATA")
    p.add_argument("--out", required=True, metavar="REPORT_DIR")
    p.add_argument("--backbone", default="mobilenet_v2", help="ImageNet classifier for the top-k check (default mobilenet_v2)")
    p.add_argument("--top-k", type=int, default=10, help="how many ImageNet classes to look in (default 10)")
    p.add_argument("--run", metavar="RUN_DIR", help="a trained RUN_DIR: also list the photos it gets most wrong, with CAMs")
    p.add_argument("--min-side", type=int, default=50, help="shorter side under this many pixels is tiny (default 50)")
    p.add_argument("--imagenet-labels", metavar="FILE", help="ImageNet class names, one per line (for the report)")
    p.add_argument("--max-pixels", type=int, default=50_000_000, help="refuse larger images (default 50,000,000)")
    p.set_defaults(func=cmd_inspect)

    p = sub.add_parser("finetune", help="fine-tune the backbone's top blocks with augmentation into a new RUN_DIR")
    p.add_argument("run_dir", metavar="RUN_DIR")
    p.add_argument("data", metavar="DATA", help="the photos the run was trained on (its split is reused)")
    p.add_argument("--out", required=True, metavar="NEW_RUN_DIR")
    p.add_argument("--blocks", type=int, default=3, help="top backbone blocks to train (default 3)")
    p.add_argument("--lr", type=float, default=1e-5, help="Adam learning rate (default 1e-5)")
    p.add_argument("--batch-size", type=int, default=32)
    p.add_argument("--epochs", type=int, default=8, help="most epochs (default 8)")
    p.add_argument("--patience", type=int, default=4, help="early-stopping patience (default 4)")
    p.add_argument("--seed", type=int, default=0)
    p.set_defaults(func=cmd_finetune)

    p = sub.add_parser("report", help="write RUN_DIR/report.html: data, curves, calibration, CAMs, parity, sizes, latencies")
    p.add_argument("run_dir", metavar="RUN_DIR")
    p.add_argument("--art", metavar="ART_DIR", help="the run's artefacts (default RUN_DIR/artefacts where it exists)")
    p.set_defaults(func=cmd_report)

    p = sub.add_parser("serve", help="web page and JSON API: upload a photo, get P(cat)/P(dog) and the CAM")
    p.add_argument("path", metavar="RUN_DIR|ART_DIR", help="an ART_DIR serves its ONNX (else TFLite) fp32 artefact; a RUN_DIR its Keras model")
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=int, default=8000)
    p.add_argument("--threads", type=int, default=8, help="waitress worker threads (default 8)")
    p.set_defaults(func=cmd_serve)

    for command in sub.choices.values():  # --verbose after COMMAND too; SUPPRESS keeps the global one's value
        command.add_argument("--verbose", action="store_true", default=argparse.SUPPRESS, help=VERBOSE_HELP)
    return parser


def main(argv: list[str] | None = None) -> int:
    from catdog.console import quiet

    args = build_parser().parse_args(argv)
    try:
        with quiet(args.verbose):
            return args.func(args)
    except CatdogError as exc:
        print(f"catdog: error: {exc}", file=sys.stderr)
        return EXIT_USAGE
    except KeyboardInterrupt:
        print("catdog: interrupted; run the same command again to resume", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
