"""The `catdog` command: one sub-command per pipeline stage, and `run` for the whole chain."""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

from catdog.contract import features_rejected, owned_file, rejected_beside
from catdog.data.limits import EXTENSION_FORMATS
from catdog.errors import CatdogError

EXIT_USAGE = 2

# Each handler turns its options into its stage's parameters and prints what the stage returns; stages
# are imported inside the handlers, so that `catdog --help` imports no numpy, Keras or TensorFlow.


def _print(lines: list[str]) -> None:
    print("\n".join(lines))


def _report(run_dir: Path, art_dir: Path | None = None) -> None:
    from catdog.report import write_report

    print(f"report: {write_report(run_dir, art_dir)['report']}")


def _head_config(args, features: Path | None = None):
    """The head's settings; without --views, the default views (`catdog train`: those of them
    whose features are beside FEATURES.h5, finished)."""
    from catdog.training import HeadConfig
    from catdog.training.settings import TRAIN_VIEWS

    views = args.views
    if views is None:
        from catdog.features import finished, view_path

        views = [v for v in TRAIN_VIEWS if features is None or finished(view_path(features, v))]
    return HeadConfig(seed=args.seed, l2_grid=tuple(args.l2), folds=args.cv, views=tuple(views), late_fusion=args.late_fusion)


def _extraction(args):
    """`catdog features`' settings (shared with `run`)."""
    from catdog.features.stage import Extraction

    return Extraction(args.backbone, args.weights, args.image_size, args.engine, args.batch_size, args.max_pixels)


def cmd_features(args) -> int:
    from catdog.features import features_stage

    out = Path(args.out)
    rejected = Path(args.rejected) if args.rejected else features_rejected(out)
    if args.view != "plain":  # beside FEATURES.h5, where `catdog train` looks for it
        from catdog.data import check_view
        from catdog.features import view_path

        out = view_path(out, check_view(args.view))
    line = features_stage(args.data, out, rejected, _extraction(args), exclude=args.exclude, ray=args.ray, workers=args.workers, view=args.view,
                          shift_photos=args.shift_photos or None)[1]
    print(f"features: {line}")
    return 0


def cmd_train(args) -> int:
    from catdog.training import train_lines, train_stage

    features = Path(args.features)
    metrics = train_stage(features, Path(args.out), _head_config(args, features), exclude=args.exclude, negatives=args.negatives)
    _print(train_lines(metrics, Path(args.out)))
    _report(Path(args.out))
    return 0


def cmd_run(args) -> int:
    from catdog.pipeline import run_pipeline

    return run_pipeline(
        args.data, Path(args.out), extraction=_extraction(args), exclude=args.exclude, head_config=_head_config(args), export=not args.no_export,
        formats=args.formats, precision=args.precision, calibration_dir=args.calibration, mixed=args.mixed == "on",
        keep_float=args.keep_float, reference=args.reference, negatives=args.negatives, shift_photos=args.shift_photos,
    )


def cmd_export(args) -> int:
    from catdog.export.stage import export_stage, manifest_lines
    from catdog.training import load_run

    out = Path(args.out)
    manifest = export_stage(
        load_run(args.run_dir), args.formats, args.precision, out, args.calibration, calibrated=args.calibrated,
        mixed=args.mixed == "on", keep_float=args.keep_float, max_pixels=args.max_pixels,
    )
    _print(manifest_lines(manifest, out))
    return 0


def cmd_parity(args) -> int:
    from catdog.parity.stage import labelled_photos, parity_lines, parity_stage

    art_dir = Path(args.art_dir)
    code, report = parity_stage(art_dir, args.images, labelled_photos(args.labelled), args.run_dir, not args.no_edge, args.max_pixels)
    _print(parity_lines(art_dir, report))
    return code


def cmd_cam(args) -> int:
    from catdog.cam import cam_photos

    cam_photos(args.run_dir, args.images, args.out, args.size, args.max_pixels)
    return 0


def cmd_evaluate(args) -> int:
    from catdog.training import evaluate_stage

    rejected = Path(args.rejected) if args.rejected else (rejected_beside(args.json) if args.json else None)
    _check_lists(rejected, args.json)
    _print(evaluate_stage(args.run_dir, args.data, args.batch_size, args.max_pixels, rejected, args.tta, args.json, args.negatives,
                          args.shifts))
    return 0


def cmd_predict(args) -> int:
    from catdog.training import predict_submission

    out = Path(args.out)
    rejected = Path(args.rejected) if args.rejected else rejected_beside(out)
    _check_lists(rejected, out)
    clip = None if args.no_clip else tuple(args.clip)
    print(predict_submission(args.run_dir, args.test_dir, out, rejected, args.batch_size, args.max_pixels, args.tta, clip, args.calibrated,
                             ray=args.ray, workers=args.workers))
    return 0


def _check_lists(rejected: Path | None, output) -> None:
    """The rejected list, checked as --out and --json are, before any work: where it was derived
    from the output (rejected.csv beside it) a folder of that name, say, was met after every photo;
    and never the output itself (the list was then overwritten by the submission)."""
    if rejected is None:
        return
    if output is not None and rejected.absolute() == Path(output).absolute():
        raise CatdogError(f"--rejected {rejected}: the same file as the output; give it another name")
    try:
        _output("REJECTED.csv")(str(rejected))
    except argparse.ArgumentTypeError as exc:
        raise CatdogError(f"the list of rejected files, {exc}") from None


def cmd_inspect(args) -> int:
    from catdog.inspect import inspect_data

    s = inspect_data(
        args.data, args.out, backbone=args.backbone, top_k=args.top_k, run_dir=args.run, min_side=args.min_side,
        imagenet_labels=args.imagenet_labels, max_pixels=args.max_pixels,
    )
    print(
        f"inspect: {s['photos']} photos, {s['suspects']} suspects (tiny {s['tiny']}, colour {s['colour_outliers']}, "
        f"ImageNet {s['imagenet_misses']}, duplicates {s['duplicates']}), {s['rejected']} rejected"
        + (f"; the model gets {s['model_wrong']} wrong" if s["model_wrong"] is not None else "")
    )
    print(f"report: {Path(args.out) / 'report.html'}; suspects: {Path(args.out) / 'suspects.csv'}")
    return 0


def cmd_finetune(args) -> int:
    from catdog.training import finetune_lines, load_run
    from catdog.training.finetune import FinetuneConfig, finetune

    config = FinetuneConfig(
        blocks=args.blocks, learning_rate=args.lr, batch_size=args.batch_size, max_epochs=args.epochs,
        patience=args.patience, seed=args.seed,
    )
    _print(finetune_lines(finetune(load_run(args.run_dir), args.data, args.out, config, max_pixels=args.max_pixels), args.out))
    _report(Path(args.out))
    return 0


def cmd_report(args) -> int:
    _report(Path(args.run_dir), Path(args.art) if args.art else None)
    return 0


def cmd_serve(args) -> int:
    from catdog.serve import serve

    serve(args.path, args.host, args.port, args.threads, args.max_pixels)
    return 0


# The parser. Option names, defaults and help texts are the user's interface (and the tests'): keep them.

VERBOSE_HELP = "also show TensorFlow, absl, LiteRT and converter logs and library warnings"
TTA_HELP = "test-time augmentation: average each photo with its mirror image"


def _whole(low: int, high: int | None = None):
    """An argparse type for a whole number from `low` (to `high`): 0 threads, a batch of 0 photos
    or port 99999 (which the server would have wrapped round to another port) are refused as the
    arguments are read, not met as a traceback later."""

    def check(value: str) -> int:
        try:
            number = int(value)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{value!r} is not a whole number") from None
        if number < low or (high is not None and number > high):
            raise argparse.ArgumentTypeError(f"{value} is out of range; give {low} to {high}" if high is not None else f"{value} is under {low}; give {low} or more")
        return number

    return check


def _output(metavar: str):
    """An argparse type for an output path, refused before any work where it cannot be written: a
    file name (METAVAR like submission.csv) that is a folder, or a folder (METAVAR like RUN_DIR)
    that is a file."""

    def check(value: str) -> str:
        if not value.strip():  # Path("") is ".": it was "argument --out:  is a folder"
            raise argparse.ArgumentTypeError(f"an empty path; give {'a file name, such as ' + metavar.lower() if '.' in metavar else 'a folder'}")
        path = Path(value)
        if "." in metavar and path.is_dir():
            raise argparse.ArgumentTypeError(f"{value} is a folder; give a file name, such as {path / metavar.lower()}")
        if "." in metavar and (value == "-" or (path.exists() and not path.is_file())):  # a file `-`; /dev/stdout replaced
            raise argparse.ArgumentTypeError(f"{value} is not a file (a stream or a device); give a file name, such as {metavar.lower()}: "
                                             "catdog writes whole files, atomically")
        if "." in metavar and path.suffix.lower() in EXTENSION_FORMATS:  # `--out photos/1.jpg` wrote a CSV over the photo
            raise argparse.ArgumentTypeError(f"{value} is named as a photo ({path.suffix}); give a name such as {path.with_name(metavar.lower())}")
        if "." in metavar and (owner := owned_file(path)):
            raise argparse.ArgumentTypeError(f"{value} is {owner}; give another name (the folder's own files are not replaced)")
        if "." not in metavar and path.exists() and not path.is_dir():
            raise argparse.ArgumentTypeError(f"{value} is a file; give a folder (made where missing)")
        # the folder it goes in, or the nearest one above that exists, must take new files
        above = path.absolute() if "." not in metavar else path.absolute().parent
        while not above.exists() and above != above.parent:
            above = above.parent
        if not above.is_dir():
            raise argparse.ArgumentTypeError(f"{value}: {above} is a file, so nothing can be made under it; give another path")
        if not os.access(above, os.W_OK | os.X_OK):
            raise argparse.ArgumentTypeError(f"{value}: cannot write in {above} (permission denied); give another path")
        return value

    return check


def _command(sub, name: str, func, help: str, *positionals: str, out: str | None = None) -> argparse.ArgumentParser:
    """Sub-command `name` running `func`: positionals as "dest:METAVAR[:help]", then a required --out METAVAR."""
    p = sub.add_parser(name, help=help)
    for spec in positionals:
        dest, metavar, *text = spec.split(":", 2)
        p.add_argument(dest, metavar=metavar, help=text[0] if text else None)
    if out:
        p.add_argument("--out", required=True, metavar=out, type=_output(out))
    p.set_defaults(func=func)
    return p


def _add_exclude_arg(p: argparse.ArgumentParser) -> None:
    p.add_argument("--exclude", metavar="LIST", help="leave out the photos in suspects.csv (from catdog inspect) or a plain list of names")


def _add_ray_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--ray", nargs="?", const="local", metavar="ADDRESS", help="run on Ray Data (optional extra: pip install -e '.[ray]'): "
                   "alone, a local Ray instance; with ADDRESS (the head node's HOST:PORT, or auto), that cluster")
    p.add_argument("--workers", type=_whole(1), metavar="N", help="with --ray: actors holding the model (default: every CPU of the cluster)")


def _add_max_pixels(p: argparse.ArgumentParser) -> None:
    """--max-pixels, on every command that decodes photos (its refusal says to raise it)."""
    from catdog.data.limits import MAX_PIXELS

    p.add_argument("--max-pixels", type=_whole(1), default=MAX_PIXELS, help=f"refuse images larger than this many pixels (default {MAX_PIXELS:,})")


def _add_decode_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--batch-size", type=_whole(1), default=32, help="photos per network call (default 32)")
    _add_max_pixels(p)
    p.add_argument("--rejected", type=_output("REJECTED.csv"), help="where to list unusable files (CSV: file,reason)")


def _add_feature_args(p: argparse.ArgumentParser) -> None:
    from catdog.features.specs import BACKBONES

    p.add_argument("--backbone", default="mobilenet_v2", metavar="NAME[,NAME]", help=f"one of {', '.join(sorted(BACKBONES))}, "
                   "or several joined by commas to fuse their features (default mobilenet_v2)")
    p.add_argument("--weights", help="no-top weights file for the backbone (default: Keras' ImageNet weights); for a fusion one entry per "
                   "backbone, comma-separated, each a file or imagenet")
    p.add_argument("--image-size", type=int, default=224, metavar="S",
                   help="photo size the model takes, a multiple of 32 (default 224: 7x7 CAM; 288 scores better, 9x9 CAM)")
    p.add_argument("--engine", default="litert", choices=["litert", "keras"],
                   help="run the feature model with LiteRT/XNNPACK (default, faster on CPU) or TensorFlow")
    _add_decode_args(p)


def _float_list(text: str) -> list[float]:
    if any(not t.strip() for t in text.split(",")):  # `0.01,,0.1`: a number lost to a typo, not a grid of two
        raise argparse.ArgumentTypeError(f"{text!r}: an empty item; give numbers separated by single commas (e.g. 1e-3,3e-3)")
    try:
        values = [float(t) for t in text.split(",")]  # no empty item: refused above
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r}: give numbers separated by commas (e.g. 1e-3,3e-3)") from None
    if not values or not all(0 < v < float("inf") for v in values):  # nan and inf too: scikit-learn's traceback
        raise argparse.ArgumentTypeError(f"{text!r}: give positive numbers separated by commas (e.g. 1e-3,3e-3)")
    return values


def _positive(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        value = float("nan")
    if not value > 0 or value == float("inf"):
        raise argparse.ArgumentTypeError(f"{text!r}: give a positive number (e.g. 1e-5)")
    return value


def _names(allowed, what: str):
    """An argparse type for a comma-separated list of `allowed` names (--formats, --precision),
    refused as the arguments are read: a typo was said after the model had loaded (8 s). Returns
    the text; export's own parse reads it."""
    from catdog.contract import parse_list

    def check(text: str) -> str:
        try:
            parse_list(text, allowed, what)
        except CatdogError as exc:
            raise argparse.ArgumentTypeError(str(exc)) from None
        return text

    return check


def _view_list(text: str) -> list[str]:
    from catdog.data import VIEWS

    named = [t.strip() for t in text.split(",") if t.strip()]
    if "none" in named and len(named) > 1:  # `none,mirror` trained on mirror: none means no view
        raise argparse.ArgumentTypeError(f"{text}: none means the photos only; give it alone, or the views without it")
    views = [t for t in named if t != "none"]
    unknown = [v for v in views if v not in VIEWS]
    if unknown:
        raise argparse.ArgumentTypeError(f"{', '.join(unknown)}: not a view; choose from {', '.join(VIEWS)}, or none")
    twice = sorted({v for v in views if views.count(v) > 1})
    if twice:  # its rows would be trained on twice
        raise argparse.ArgumentTypeError(f"{', '.join(twice)}: named twice; give each view once")
    return views


def _add_train_args(p: argparse.ArgumentParser) -> None:
    from catdog.training.settings import L2_GRID, TRAIN_VIEWS

    p.add_argument("--seed", type=_whole(0, 2**32 - 1), default=0, help="seed for the CV folds and the bootstrap (default 0)")
    p.add_argument("--l2", type=_float_list, default=list(L2_GRID), metavar="L2[,L2...]", help="L2 strengths for cross-validation to "
                   f"choose from; one value fixes it (default {','.join(f'{v:g}' for v in L2_GRID)})")
    p.add_argument("--cv", type=int, default=5, metavar="K",
                   help="folds of the CV that chooses l2 and of the nested CV that estimates the log loss (default 5)")
    p.add_argument("--views", type=_view_list, metavar="VIEW[,VIEW]",
                   help=f"also train on these views of every photo (catdog train reads their features from views/VIEW.h5 beside "
                   f"FEATURES.h5; default {','.join(TRAIN_VIEWS)}, in train those extracted; none: the photos only)")
    p.add_argument("--late-fusion", action="store_true", help="a fused backbone's head as the mean logit of a head per backbone "
                   "and one on every column, each l2 chosen by CV (README, Robustness: better on shifted folds, worse on held-out "
                   "spotted cats as close-ups)")


def _add_export_args(p: argparse.ArgumentParser, required_out: bool) -> None:
    from catdog.contract import SUFFIXES, TOLERANCES  # the formats and precisions catdog writes (light to import)

    p.add_argument("--formats", type=_names(tuple(SUFFIXES), "format"), default="coreml,tflite,onnx", help="comma-separated (default coreml,tflite,onnx)")
    p.add_argument("--precision", type=_names(tuple(TOLERANCES), "precision"), default="fp32,fp16,int8", help="comma-separated (default fp32,fp16,int8)")
    p.add_argument("--calibration", metavar="DIR",
                   help="photos for int8 calibration and the sensitivity analysis (default: the run's calibration photos, split.json)")
    p.add_argument("--mixed", choices=["on", "off"], default="on", help="on (default): keep the layers most sensitive to fp16/int8 in "
                   "float32, chosen by measurement; off: reduce every layer")
    p.add_argument("--keep-float", metavar="LAYER,...",
                   help="keep these Keras layers float32 in fp16/int8 instead of the measured choice (names: ART_DIR/sensitivity.json)")
    if required_out:
        p.add_argument("--out", required=True, metavar="ART_DIR", type=_output("ART_DIR"))


class _Parser(argparse.ArgumentParser):
    """argparse with catdog's one-line errors: what is wrong and where the usage is, not the usage."""

    def error(self, message: str):
        self.exit(EXIT_USAGE, f"{self.prog}: error: {message} (usage: {self.prog} --help)\n")


def build_parser() -> argparse.ArgumentParser:
    from catdog.training.settings import SHIFT_PHOTOS

    parser = _Parser(prog="catdog", description=__doc__)
    parser.add_argument("--verbose", action="store_true", help=VERBOSE_HELP)
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    p = _command(sub, "features", cmd_features, "extract backbone features of DATA into an h5 cache (resumable)",
                 "data:DATA:Kaggle-layout folder (cat.N.jpg, dog.N.jpg, N.jpg) or cat/ dog/ folders", out="FEATURES.h5")
    _add_feature_args(p)
    _add_exclude_arg(p)
    _add_ray_args(p)
    p.add_argument("--view", default="plain", metavar="VIEW", help="extract each photo as seen by this view instead: mirror, closeup, "
                   "rotate, jpeg, colour, lowres or gray, into views/VIEW.h5 beside FEATURES.h5, where catdog train reads it "
                   "(default plain)")
    p.add_argument("--shift-photos", type=_whole(0), default=0, metavar="N", help="only a seeded subset of N labelled photos, as many "
                   "of each class (default 0: every photo)")

    p = _command(sub, "train", cmd_train, "choose the head's settings by CV, fit it on every photo of FEATURES.h5, estimate it by nested CV; "
                 "write RUN_DIR", "features:FEATURES.h5", out="RUN_DIR")
    _add_train_args(p)
    p.add_argument("--negatives", metavar="NEG.h5", help="features (same backbone and size) of photos with no cat or dog, for the "
                   "'neither' answer (catdog features NOT_PETS_DIR --out NEG.h5)")
    _add_exclude_arg(p)

    p = _command(sub, "evaluate", cmd_evaluate, "log loss, accuracy and confusion matrix of RUN_DIR on labelled DATA, and the share "
                 "of them the neither answer keeps", "run_dir:RUN_DIR|ARTEFACT:a RUN_DIR's Keras model, or an exported .tflite, .onnx "
                 "or .mlpackage run as catdog.runtime runs it (threshold from the manifest.json beside it)", "data:DATA")
    p.add_argument("--json", metavar="OUT.json", type=_output("OUT.json"), help="also write the scores as JSON")
    p.add_argument("--negatives", metavar="DIR", help="photos with no cat or dog in them: also the share of them called neither")
    p.add_argument("--tta", action="store_true", help=TTA_HELP)
    p.add_argument("--shifts", action="store_true", help="also score the photos under each shift: close-up crop, mirror, rotation, "
                   "JPEG 20, colour jitter, low resolution, grayscale")
    _add_decode_args(p)

    p = _command(sub, "predict", cmd_predict, "write a Kaggle submission (id,label = P(dog), then pet = P(cat or dog) and verdict = "
                 "cat, dog or neither) for TEST_DIR", "run_dir:RUN_DIR|ARTEFACT:a RUN_DIR, or an exported .tflite, .onnx or .mlpackage",
                 "test_dir:TEST_DIR", out="submission.csv")
    clipping = p.add_mutually_exclusive_group()  # [--clip LOW HIGH | --no-clip]
    clipping.add_argument("--clip", nargs=2, type=float, default=[0.005, 0.995], metavar=("LOW", "HIGH"), help="default 0.005 0.995")
    clipping.add_argument("--no-clip", action="store_true", help="write the probabilities unclipped")
    p.add_argument("--calibrated", action="store_true", help="apply the run's temperature (fitted on its cross-validated predictions)")
    p.add_argument("--tta", action="store_true", help=TTA_HELP)
    _add_decode_args(p)
    _add_ray_args(p)

    p = _command(sub, "cam", cmd_cam, "CAM heatmap overlays (PNG) for photos, plus a grid sheet",
                 "run_dir:RUN_DIR|ARTEFACT:a RUN_DIR's Keras model, or an exported .tflite, .onnx or .mlpackage", out="DIR")
    p.add_argument("images", metavar="IMAGES", nargs="+", help="photo files or folders")  # after RUN_DIR (--out's place is immaterial)
    p.add_argument("--size", type=_whole(1), default=512, help="longest side of each overlay in pixels (default 512)")
    _add_max_pixels(p)

    p = _command(sub, "export", cmd_export, "export RUN_DIR to Core ML / TFLite / ONNX with manifest.json", "run_dir:RUN_DIR")
    _add_export_args(p, required_out=True)
    p.add_argument("--calibrated", action="store_true", help="fold the run's temperature (fitted on its cross-validated predictions) into the models")
    _add_max_pixels(p)

    p = _command(sub, "parity", cmd_parity, "compare every artefact in ART_DIR with the Keras model", "art_dir:ART_DIR")
    p.add_argument("--images", required=True, metavar="DIR", help="reference photos (e.g. ../shared/data/reference)")
    p.add_argument("--labelled", metavar="DATA", help="labelled photos for the int8 accuracy check")
    p.add_argument("--run-dir", metavar="RUN_DIR", help="the Keras RUN_DIR (default: the one in manifest.json)")
    p.add_argument("--no-edge", action="store_true", help="do not add edge cases (grayscale, tiny, large, strips)")
    _add_max_pixels(p)

    p = _command(sub, "run", cmd_run, "the whole chain: features, head, metrics, export, parity and report.html, into RUN_DIR", "data:DATA",
                 out="RUN_DIR")
    _add_feature_args(p)
    _add_train_args(p)
    _add_export_args(p, required_out=False)
    p.add_argument("--negatives", metavar="DIR", help="photos with no cat or dog in them, for the 'neither' answer "
                   "(e.g. ../shared/data/not-pets; without it only the ImageNet top decides)")
    p.add_argument("--reference", metavar="DIR", help="parity reference photos (default: 24 of the run's parity photos, split.json)")
    p.add_argument("--no-export", action="store_true", help="stop after training")
    p.add_argument("--shift-photos", type=_whole(0), default=SHIFT_PHOTOS, metavar="N", help="photos whose shifted views training "
                   f"measures (default {SHIFT_PHOTOS}; 0: none)")
    _add_exclude_arg(p)

    p = _command(sub, "inspect", cmd_inspect, "find tiny, odd-coloured, non-pet, mislabelled and duplicate photos; HTML report", "data:DATA",
                 out="REPORT_DIR")
    p.add_argument("--backbone", default="mobilenet_v2", help="ImageNet classifier for the top-k check (default mobilenet_v2)")
    p.add_argument("--top-k", type=_whole(1, 1000), default=10, help="how many ImageNet classes to look in (default 10)")
    p.add_argument("--run", metavar="RUN_DIR", help="a trained RUN_DIR: also list the photos it gets most wrong, with CAMs")
    p.add_argument("--min-side", type=_whole(1), default=50, help="shorter side under this many pixels is tiny (default 50)")
    p.add_argument("--imagenet-labels", metavar="FILE", help="ImageNet class names, one per line (for the report)")
    _add_max_pixels(p)

    p = _command(sub, "finetune", cmd_finetune, "fine-tune the backbone's top blocks with augmentation into a new RUN_DIR", "run_dir:RUN_DIR",
                 "data:DATA:the photos the run was trained on (its split is reused)", out="NEW_RUN_DIR")
    p.add_argument("--blocks", type=_whole(1), default=3, help="top backbone blocks to train (default 3)")
    p.add_argument("--lr", type=_positive, default=1e-5, help="Adam learning rate (default 1e-5)")
    p.add_argument("--batch-size", type=_whole(1), default=32)
    p.add_argument("--epochs", type=_whole(1), default=8, help="most epochs (default 8)")
    p.add_argument("--patience", type=_whole(0), default=4, help="early-stopping patience (default 4)")
    p.add_argument("--seed", type=_whole(0, 2**32 - 1), default=0)
    _add_max_pixels(p)

    p = _command(sub, "report", cmd_report, "write RUN_DIR/report.html: data, curves, calibration, CAMs, parity, sizes, latencies",
                 "run_dir:RUN_DIR")
    p.add_argument("--art", metavar="ART_DIR", help="the run's artefacts (default RUN_DIR/artefacts where it exists)")

    p = _command(sub, "serve", cmd_serve, "web page and JSON API: upload a photo, get P(cat)/P(dog) and the CAM",
                 "path:RUN_DIR|ART_DIR|ARTEFACT:what to serve: an ART_DIR, its ONNX (else TFLite) fp32 artefact; an exported .tflite, .onnx "
                 "or .mlpackage, that file as catdog.runtime runs it (e.g. the int8 model an app ships); a RUN_DIR, its Keras model")
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=_whole(0, 65535), default=8000, help="TCP port (default 8000; 0: any free port, printed)")
    p.add_argument("--threads", type=_whole(1, 256), default=8, help="waitress worker threads, 1 to 256 (default 8)")
    from catdog.data.limits import MAX_UPLOAD_PIXELS

    p.add_argument("--max-pixels", type=_whole(1), default=MAX_UPLOAD_PIXELS,
                   help=f"refuse uploads larger than this many pixels (default {MAX_UPLOAD_PIXELS:,}: each thread may hold one photo)")

    for command in sub.choices.values():  # --verbose after COMMAND too; SUPPRESS keeps the global one's value
        command.add_argument("--verbose", action="store_true", default=argparse.SUPPRESS, help=VERBOSE_HELP)
    return parser


RESUMABLE = ("features", "run", "export")  # commands that pick up where an interrupted one stopped


def main(argv: list[str] | None = None) -> int:
    from catdog.console import Terminated, close_bars, interrupts_kept, quiet

    args = build_parser().parse_args(argv)
    if getattr(sys.stdout, "errors", None) == "strict" and hasattr(sys.stdout, "reconfigure"):
        # In a UTF-8 locale a file name whose bytes are not UTF-8 would end the run when printed.
        sys.stdout.reconfigure(errors="backslashreplace")
    try:
        with interrupts_kept(), quiet(args.verbose):
            try:
                return args.func(args)
            finally:
                close_bars()  # inside quiet(): drawn where the bars were, before the error's line
    except CatdogError as exc:
        print(f"catdog: error: {exc}", file=sys.stderr)
        return EXIT_USAGE
    except OSError as exc:  # a disk full or a folder gone mid-run: the file and the reason, on one line
        where = f"{exc.filename}: " if exc.filename else ""
        print(f"catdog: error: {where}{exc.strerror or exc}; check the path, its permissions and the free space, then run the command again",
              file=sys.stderr)
        return EXIT_USAGE
    except KeyboardInterrupt as exc:
        # only these keep what they finished (the feature cache, complete artefacts); the rest start over
        again = "run the same command again to resume" if args.command in RESUMABLE else "run the command again to start it over"
        terminated = isinstance(exc, Terminated)  # SIGTERM: 128 + 15, as a shell reports a process it ended
        print(f"catdog: {'terminated' if terminated else 'interrupted'}; {again}", file=sys.stderr)
        return 143 if terminated else 130


if __name__ == "__main__":
    sys.exit(main())
