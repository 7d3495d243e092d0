"""`catdog train`, `evaluate`, `predict` and `finetune` as functions with explicit parameters:
each does its stage and returns what the command prints (lines), or the figures `catdog run` needs.

Light at import (the CLI imports it lazily, inside its handlers).
"""

from __future__ import annotations

import json
from pathlib import Path

from catdog.contract import LABELS, NEITHER, RunDir, negatives_csv, read_json, verdict
from catdog.errors import CatdogError
from catdog.features.stage import on_ray, report_rejections, scan_printing


def train_stage(features_path: Path, run_dir: Path, head_config, exclude: str | None = None, negatives: str | None = None,
                views: list[str] | None = None) -> dict:
    """Train the head on FEATURES.h5 into RUN_DIR; its metrics. `exclude` (a suspects.csv or a
    plain list of names): leave those photos out of the cached features first (`catdog run`
    passes None, having left them out before extraction). `negatives`: features of photos with
    neither cat nor dog (an h5 from `catdog features`), for the pet detector. The views' features
    beside FEATURES.h5 (views/VIEW.h5) train the head (`head_config.views`) or measure it: every
    finished one, or those of `views` (`catdog run`: the ones it extracted, not an earlier run's)."""
    from catdog.features import load_features, without
    from catdog.training import train_run

    feature_set = load_features(features_path)
    negative_set = load_features(negatives) if negatives else None
    if exclude:
        from catdog.inspect import read_exclude

        from catdog.data import unlisted_note

        names = read_exclude(exclude)
        note = unlisted_note(names, feature_set.names, exclude)
        feature_set, dropped = without(feature_set, names)
        print(f"excluded {dropped} photo(s) listed in {exclude}")
        if note:
            print(note)
    found = found_views(features_path, views, required=head_config.views)
    return train_run(feature_set, run_dir, head_config, str(features_path), views=found, negatives=negative_set)


def found_views(features_path: Path, only: list[str] | None = None, required=()) -> dict:
    """view -> FeatureSet of every finished view file beside FEATURES.h5 (catdog.features.view_path),
    or of those among `only` (the others are not read). An unfinished one (an extraction
    interrupted) is left out with a line, unless `only` or `required` (the views the head trains
    on) names it: then it is a one-line error with the command that resumes it."""
    from catdog.data import SHIFTS, VIEWS
    from catdog.features import finished, load_features, view_path

    views = {}
    for view in [*SHIFTS, *(v for v in VIEWS if v not in SHIFTS)]:  # the shift table's order
        if only is not None and view not in only:
            continue
        path = view_path(features_path, view)
        if not path.is_file():
            continue
        if not finished(path):
            resume = f"`catdog features DATA --out {features_path} --view {view}`"
            if only is not None or view in required:
                raise CatdogError(f"{path}: the {view} view's extraction did not finish; resume it with {resume}")
            print(f"note: {path} is unfinished (extraction interrupted): the {view} view is left out; {resume} resumes it")
            continue
        views[view] = load_features(path)
    return views


def train_lines(metrics: dict, run_dir: Path) -> list[str]:
    from catdog.training.summary import metrics_lines

    return [*metrics_lines(metrics), f"run written to {run_dir} (model.keras, head.keras, metrics.json, cv_predictions.csv, curves.png)"]


def predict_stage(
    run_dir: str,
    data: str,
    batch_size: int,
    max_pixels: int,
    rejected_csv: Path | None,
    tta: bool = False,
    ray: str | None = None,
    workers: int | None = None,
    run=None,
    labelled: bool = False,
    one_per_id: bool = False,
):
    """Load RUN_DIR or an artefact (unless `run` is given: it, loaded) and predict every photo of
    DATA (here, or on Ray); (run, predictions). labelled: DATA must hold labelled photos (said
    before predicting). one_per_id: a photo whose id an earlier one has is rejected (a submission
    has one row per id)."""
    from catdog.training import predict_images
    from catdog.training.inference import NO_LABELLED, load_scorer

    run = run or load_scorer(run_dir)
    if run.artefact and ray is not None:
        raise CatdogError(f"{run_dir}: --ray runs a RUN_DIR's Keras model; pass the RUN_DIR, or drop --ray to run the artefact here")
    samples, scan_rejections = scan_printing(data, any_name=not labelled)  # predict: IMG_1.jpg beside 1.jpg is a photo too
    if one_per_id:
        from catdog.data import unique_ids

        samples, twins = unique_ids(samples)
        for r in twins:
            print(r.line())
        scan_rejections += twins
    if labelled and samples and all(s.label is None for s in samples):
        from catdog.data import labels_hint

        raise CatdogError(f"{data}: {NO_LABELLED}{labels_hint(data)}")  # before predicting, where evaluate() would say it after
    predict = on_ray(predict_images, ray, workers)
    predictions = predict(run.model, samples, batch_size=batch_size, max_pixels=max_pixels, tta=tta)
    rejections = scan_rejections + predictions.rejections
    report_rejections(rejections, rejected_csv)
    if not predictions.samples:
        raise CatdogError(f"{data}: no usable photo ({len(rejections)} file(s) rejected)")
    return run, predictions


def _verdicts(predictions, threshold: float) -> list[str]:
    """catdog's answer for each photo: "cat", "dog" or "neither" (catdog.contract.verdict)."""
    return [verdict(p, q, threshold, LABELS) for p, q in zip(predictions.probabilities, predictions.pet)]


def evaluate_stage(
    run_dir: str, data: str, batch_size: int, max_pixels: int, rejected_csv: Path | None, tta: bool = False,
    json_path: str | None = None, negatives: str | None = None, shifts: bool = False,
) -> list[str]:
    """Score RUN_DIR on labelled DATA (and write the scores to `json_path`); the table to print.

    Also the neither answer: the share of DATA's labelled photos it keeps (verdict cat or dog), and
    with `negatives` (a folder of photos with no cat or dog) the share of those it calls "neither".
    Files rejected in `negatives` are listed beside `rejected_csv` (catdog.contract.negatives_csv).
    shifts: also score every photo under each shift of catdog.data.SHIFTS (close-up crop, mirror,
    rotation, JPEG 20, colour, low resolution, grayscale): a row each, and their mean."""
    import numpy as np

    from catdog.training import evaluate

    named_pets = _check_negatives(negatives) if negatives else 0
    run, predictions = predict_stage(run_dir, data, batch_size, max_pixels, rejected_csv, tta, labelled=True)
    if all(s.label is None for s in predictions.samples):  # labelled photos there, none usable: not "name them cat.N.jpg"
        raise CatdogError(f"{data}: none of its labelled photos could be used (each is named above with the reason)")
    result = evaluate(predictions)
    trained_on = _trained_on(run, predictions)
    if run.artefact:
        result["engine"] = run.model.engine
    threshold = run.pet_threshold
    labelled = np.array([s.label is not None for s in predictions.samples])
    kept = np.array([v != NEITHER for v in _verdicts(predictions, threshold)])[labelled]
    pet = {"threshold": threshold, "keep": float(kept.mean()), "n_kept": int(kept.sum()), "n_pets": int(kept.size)}
    (tn, fp), (fn, tp) = result["confusion_matrix"]
    prefix = f"neither answer, P(pet) under {threshold:.3g}: "
    lines = [f"{run_dir}, run by {run.model.engine}"] if run.artefact else []
    lines += ["test-time augmentation: each photo averaged with its mirror image (--tta)"] if tta else []
    lines += [
        f"{'photos':>10} {'log loss':>10} {'accuracy':>10}",
        f"{result['n']:>10d} {result['log_loss']:>10.4f} {result['accuracy']:>10.2%}",
        f"confusion (rows true, cols predicted): cat {tn:4d} {fp:4d} | dog {fn:4d} {tp:4d}",
        f"{prefix}keeps {pet['keep']:.2%} of the {pet['n_pets']} cats and dogs ({pet['n_pets'] - pet['n_kept']} called neither)",
    ]
    if negatives:
        others_csv = negatives_csv(rejected_csv) if rejected_csv else None
        _, others = predict_stage(run_dir, negatives, batch_size, max_pixels, others_csv, tta, run=run)
        rejected = np.array([v == NEITHER for v in _verdicts(others, threshold)])
        pet.update(reject=float(rejected.mean()), n_rejected=int(rejected.sum()), n_negatives=int(rejected.size),
                   negatives_dir=str(negatives))
        lines.append(
            f"{'':>{len(prefix)}}rejects {pet['reject']:.2%} of the {pet['n_negatives']} photos with neither in {negatives} "
            f"({pet['n_negatives'] - pet['n_rejected']} called cat or dog)"
        )
        if named_pets:
            lines.append(f"note: {named_pets} file(s) in --negatives {negatives} are named as cats or dogs (cat.N.jpg, dog/…), "
                         "yet counted here as photos with neither; keep pets out of that folder")
        negatives_trained_on = _negatives_trained_on(run, others)
        if negatives_trained_on:
            pet["n_trained_on"] = negatives_trained_on
            lines.append(f"note: {negatives_trained_on} of these {pet['n_negatives']} photos with neither trained the neither answer "
                         f"(pet_predictions.csv): its reject rate here is optimistic; its cross-validated rates are in metrics.json")
    if trained_on:  # after both neither lines, which belong together
        result["n_trained_on"] = trained_on
        lines.append(f"note: {trained_on} of these {result['n']} photos trained this model (split.json): these scores are optimistic; "
                     "its cross-validated estimate is in metrics.json")
    extra = {}
    if shifts:
        extra["shifts"] = shift_rows(run, predictions, batch_size, max_pixels, tta)
        extra["shifts_mean"] = shift_mean(extra["shifts"])  # the table's last line, in the JSON too
        lines.extend(shift_lines(result, extra["shifts"]))
    if json_path:
        from catdog.atomic import write_text

        write_text(json_path, json.dumps({**result, "pet": pet, **extra, "tta": bool(tta), "run_dir": run_dir, "data": data}, indent=2))
        lines.append(f"written {json_path}")
    return lines


def _check_negatives(negatives: str) -> int:
    """--negatives, listed before DATA is scored (a missing or empty folder was said only after
    every photo of DATA, in DATA's words); how many of its photos are named as cats or dogs."""
    from catdog.data import scan

    try:
        samples = scan(negatives)[0]
    except CatdogError as exc:
        said = str(exc)
        for pets in ("put cat.N.jpg/dog.N.jpg/N.jpg photos or cat/ and dog/ folders in it",
                     "give a folder of cat.N.jpg/dog.N.jpg/N.jpg photos or cat/ and dog/ folders"):
            said = said.replace(pets, "give a folder of photos with no cat or dog (e.g. ../shared/data/not-pets)")
        raise CatdogError(f"--negatives: {said}") from None
    return sum(s.label is not None for s in samples)


def _fitted_by(run) -> tuple[Path, dict] | None:
    """(folder, metrics) of the run whose training photos and negatives fitted `run`'s head and pet
    detector: the run itself, or for a fine-tuned run the one it started from; None for an artefact."""
    if getattr(run, "artefact", False) or not hasattr(run, "path"):
        return None
    metrics = getattr(run, "metrics", {}) or {}
    if metrics.get("finetuned_from"):
        source = Path(metrics["finetuned_from"])
        return source, read_json(source / RunDir.METRICS) or {}
    return Path(run.path), metrics


def _trained_on(run, predictions) -> int:
    """How many labelled photos of `predictions` the run was trained on: a name in the run's split.json
    whose file has the byte size the run's feature file recorded for it (its cache key, name|size|mtime:
    the mtime left out, so a copy of the training photos counts too); 0 for an artefact. The feature
    file: RUN_DIR/features.h5 (`catdog run`), else the one metrics.json names (`catdog train`); a
    fine-tuned run's photos are its own split.json's, early-stopping split included (the starting
    model was fitted on it), with the feature file of the run it started from."""
    fitted = _fitted_by(run)
    split_path = Path(run.path) / RunDir.SPLIT if fitted else None
    if not split_path or not split_path.is_file():
        return 0
    split = json.loads(split_path.read_text())
    trained = set(split.get("train", []))
    source, metrics = fitted
    if (getattr(run, "metrics", None) or {}).get("finetuned_from"):  # its early-stopping split fitted the starting model too
        trained |= set(split.get("validation", []))
    features_path = source / RunDir.FEATURES
    if not features_path.is_file() and metrics.get("features_file"):
        features_path = Path(metrics["features_file"])
    if not features_path.is_file():
        return 0
    from catdog.features import load_features

    try:
        recorded = {key.rsplit("|", 1)[0] for key in load_features(features_path).keys}  # name|size
    except CatdogError:
        return 0
    return sum(1 for s in predictions.samples
               if s.label is not None and s.name in trained and f"{s.name}|{Path(s.path).stat().st_size}" in recorded)


def _negatives_trained_on(run, others) -> int:
    """How many photos of `others` (scored as photos with neither) trained the run's pet detector: a
    name pet_predictions.csv lists as a negative, whose file has the byte size of the photo of that
    name in the negatives folder metrics.json records (so a copy counts too); 0 for an artefact or
    where that folder is gone. A fine-tuned run's detector is the run's it started from."""
    import csv

    fitted = _fitted_by(run)
    if fitted is None:
        return 0
    source, metrics = fitted
    negatives_dir = (metrics.get("pet") or {}).get("negatives_dir")
    if not negatives_dir or not (source / RunDir.PET_PREDICTIONS).is_file():
        return 0
    try:
        with open(source / RunDir.PET_PREDICTIONS, newline="") as f:
            trained = {r.get("file") for r in csv.DictReader(f) if r.get("kind") == NEITHER}
    except (OSError, csv.Error, UnicodeDecodeError):
        return 0

    def same(sample) -> bool:
        original = Path(negatives_dir) / sample.name
        try:
            return original.stat().st_size == Path(sample.path).stat().st_size
        except OSError:
            return False

    return sum(1 for s in others.samples if s.name in trained and same(s))


def shift_rows(run, predictions, batch_size: int, max_pixels: int, tta: bool) -> list[dict]:
    """Log loss and accuracy of the labelled photos of `predictions` under each shift (the full
    model on each changed photo)."""
    from catdog.data import SHIFTS, VIEWS
    from catdog.training import evaluate, predict_images

    labelled = [s for s in predictions.samples if s.label is not None]
    rows = []
    for shift in SHIFTS:
        shifted = predict_images(run.model, labelled, batch_size=batch_size, max_pixels=max_pixels, tta=tta, view=shift)
        scores = evaluate(shifted)
        rows.append({"name": shift, "what": VIEWS[shift][0], "n": scores["n"], "log_loss": scores["log_loss"], "accuracy": scores["accuracy"]})
    return rows


def shift_mean(rows: list[dict]) -> dict:
    """The mean log loss and accuracy over the shifts of `shift_rows` (each shift weighs the same)."""
    import numpy as np

    return {"n_shifts": len(rows), "log_loss": float(np.mean([r["log_loss"] for r in rows])),
            "accuracy": float(np.mean([r["accuracy"] for r in rows]))}


def shift_lines(clean: dict, rows: list[dict]) -> list[str]:
    """The shift table `catdog evaluate --shifts` prints: the photos as they are, each shift, the mean."""
    mean = shift_mean(rows)
    lines = [f"{'shift':>10} {'log loss':>10} {'accuracy':>10}  what", f"{'none':>10} {clean['log_loss']:>10.4f} {clean['accuracy']:>10.2%}  the photos as they are"]
    lines += [f"{r['name']:>10} {r['log_loss']:>10.4f} {r['accuracy']:>10.2%}  {r['what']}" for r in rows]
    lines.append(f"{'mean':>10} {mean['log_loss']:>10.4f} {mean['accuracy']:>10.2%}  of the {len(rows)} shifts")
    return lines


def predict_submission(
    run_dir: str,
    test_dir: str,
    out: Path,
    rejected_csv: Path,
    batch_size: int,
    max_pixels: int,
    tta: bool,
    clip: tuple[float, float] | None,
    calibrated: bool,
    ray: str | None = None,
    workers: int | None = None,
) -> str:
    """Write a Kaggle submission (id,label = P(dog), then pet = P(a cat or a dog) and verdict = cat,
    dog or neither) for TEST_DIR; its one-line summary. clip: (LOW, HIGH) bounds of the label
    column, or None; calibrated: apply the run's temperature to the label column."""
    from catdog.training import submission_rows, write_submission
    from catdog.training.inference import load_scorer

    if clip and not 0.0 <= clip[0] < clip[1] <= 1.0:
        raise CatdogError(f"--clip {clip[0]} {clip[1]}: need 0 <= LOW < HIGH <= 1 (e.g. 0.005 0.995)")
    run = load_scorer(run_dir)
    if calibrated and run.artefact:
        raise CatdogError(f"{run_dir}: an artefact gives the probabilities its export made (`catdog export --calibrated` folds the "
                          "temperature in); drop --calibrated, or pass the RUN_DIR")
    if calibrated:
        from catdog.training.summary import check_calibrated

        check_calibrated(run.temperature)  # before any photo: a bound temperature made every label 0 or 1
    run, predictions = predict_stage(run_dir, test_dir, batch_size, max_pixels, rejected_csv, tta, ray, workers, run=run, one_per_id=True)
    temperature = run.temperature if calibrated else None
    rows = submission_rows(predictions, clip=clip, temperature=temperature, threshold=run.pet_threshold)
    write_submission(out, rows)
    how = "mean of each photo and its mirror image (--tta), " if tta else ""
    how += f"temperature {temperature:.3f}, " if temperature else ""
    how += f"clipped to {clip[0]}..{clip[1]}" if clip else "not clipped"
    neither = sum(r[3] == "neither" for r in rows)
    ran = f"{run_dir}, run by {run.model.engine}\n" if run.artefact else ""  # as evaluate says it (README: Scoring an exported artefact)
    return f"{ran}submission: {len(rows)} rows in {out} (label = P(dog), {how}; {neither} with verdict neither)"


def check_negatives_folder(negatives: str | Path, data: str | Path) -> None:
    """The negatives' checks that need no features (`catdog.training.train.check_negatives` makes
    them on the features), on the folders before any extraction (`catdog run` said them after
    minutes of it): DATA itself, photos named as cats or dogs, too few."""
    from catdog.data import scan
    from catdog.training.train import check_negative_counts

    samples, _ = scan(negatives)
    shared = len(samples) if Path(negatives).resolve() == Path(data).resolve() else 0
    check_negative_counts(len(samples), shared, sum(s.label is not None for s in samples), str(negatives))


def check_folds(data: str | Path, folds: int) -> None:
    """--cv K against DATA's labelled photos by their names, before any extraction: a --cv 100 on
    40 photos is said at once, not after the features (training checks again on the photos that
    decoded and were not excluded: fewer, never more). A folder that is not there is left to the
    features stage to name."""
    import numpy as np

    from catdog.data import scan
    from catdog.training.cv import check_nested

    if Path(data).is_dir():
        labels = [s.label for s in scan(data)[0] if s.label is not None]
        if labels:
            check_nested(np.array(labels), folds, folds)


def finetune_lines(metrics: dict, out) -> list[str]:
    """What `catdog finetune` prints about the fine-tuned run in `out`."""
    lines = [
        f"fine-tuned {', '.join(metrics['finetune']['blocks_trained'])}: validation log loss "
        f"{metrics['val_before']['log_loss']:.4f} -> {metrics['val']['log_loss']:.4f}, accuracy {metrics['val']['accuracy']:.2%} "
        f"(best epoch {metrics['best_epoch']} of {metrics['epochs']}, {metrics['seconds']:.0f} s)",
        "  (the split chose the epoch and the starting model was trained on it: in-sample; `catdog evaluate` on new photos measures the gain)",
    ]
    if not metrics["improved"]:
        lines.append("fine-tuning did not beat the starting model on the validation split: the starting weights were kept")
    if "pet_keep_validation" in metrics:  # the pet head is the original run's, on features that moved
        lines.append(f"neither: the original run's threshold {metrics['pet_threshold']:.3f} keeps {metrics['pet_keep_validation']:.1%} "
                     "of the validation photos (the pet head is not retrained)")
    return [*lines, f"run written to {out}"]
