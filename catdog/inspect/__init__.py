"""`catdog inspect`: find the photos a user should look at before training.

Writes REPORT_DIR/report.html (one self-contained page) and REPORT_DIR/suspects.csv
(file, reasons, scores). The checks are defined in `catdog.inspect.checks`.
"""

from __future__ import annotations

import csv
import io
import json
import os
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from PIL import Image
from tqdm import tqdm

from catdog.atomic import open_atomic, write_text
from catdog.contract import CAM, PROBABILITIES, owned_file
from catdog.data import LABELS, MAX_PIXELS, ImageError, Rejection, open_rgb, resize, scan, write_rejections
from catdog.errors import CatdogError
from catdog.inspect import checks


@dataclass
class Photo:
    name: str
    path: Path
    label: int  # -1 unlabelled
    width: int
    height: int
    colour_ratio: float
    dhash: np.ndarray
    reasons: list[str] = field(default_factory=list)
    scores: dict = field(default_factory=dict)


def _measure(sample, max_pixels):
    try:
        photo = open_rgb(sample.path, max_pixels)
    except ImageError as exc:
        return Rejection(sample.path, str(exc))
    array = resize(photo)
    size = checks.HASH_SIZE
    gray = np.asarray(photo.convert("L").resize((size + 1, size), Image.BILINEAR), dtype=np.int16)
    label = -1 if sample.label is None else sample.label
    info = Photo(sample.name, sample.path, label, photo.width, photo.height, checks.colour_ratio(array), checks.dhash(gray))
    return info, array


def imagenet_names(labels_file: str | os.PathLike | None) -> list[str] | None:
    """ImageNet class names from a text file (1000 lines, or 1001 with 'background' first)."""
    if not labels_file:
        return None
    try:
        text = Path(labels_file).read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        reason = exc.strerror if isinstance(exc, OSError) and exc.strerror else str(exc)
        raise CatdogError(f"{labels_file}: cannot read it ({reason}); give a text file of the 1000 ImageNet class names, one a line") from None
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    if len(lines) == 1001:
        lines = lines[1:]
    if len(lines) != 1000:
        raise CatdogError(f"{labels_file}: expected 1000 ImageNet class names (or 1001 with background), found {len(lines)}")
    return lines


def inspect_data(
    data: str | os.PathLike,
    out_dir: str | os.PathLike,
    backbone: str = "mobilenet_v2",
    top_k: int = 10,
    run_dir: str | os.PathLike | None = None,
    min_side: int = 50,
    iqr_k: float = 1.5,
    max_distance: int = 10,
    worst: int = 24,
    imagenet_labels: str | os.PathLike | None = None,
    max_pixels: int = MAX_PIXELS,
    progress: bool = True,
) -> dict:
    """Run every check on DATA; write OUTPUTS into `out_dir`; return a summary."""
    from catdog.features import build_classifier

    # a missing DATA (listed, not decoded), a wrong labels file, backbone, RUN_DIR or --out is said
    # before any photo is decoded, any weights are loaded, or the output folder is made
    samples, rejections = scan(data)
    _check_out(Path(out_dir), Path(data))
    names = imagenet_names(imagenet_labels)
    classifier = build_classifier(backbone)
    model = None
    if run_dir:
        from catdog.runtime import open_model

        model = open_model(run_dir, temperature=1.0)  # the run's model as saved, as `catdog cam` runs it
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    for r in rejections:
        print(r.line())
    # decoded and scored a chunk at a time, only the scores kept: every photo held at once was about
    # 1 MB each (2.8 GB for 2,002 photos, so 25 GB for Kaggle's 25,000)
    photos, scores = [], []
    with ThreadPoolExecutor(max_workers=min(8, os.cpu_count() or 1)) as pool, \
            tqdm(total=len(samples), desc=f"inspect: decode, ImageNet {backbone}", unit="img", disable=not progress) as bar:
        for start in range(0, len(samples), CHUNK):
            arrays = []
            for out in pool.map(lambda s: _measure(s, max_pixels), samples[start : start + CHUNK]):
                if isinstance(out, Rejection):
                    tqdm.write(out.line())
                    rejections.append(out)
                else:
                    photos.append(out[0])
                    arrays.append(out[1])
            for i in range(0, len(arrays), 32):
                scores.append(classifier.predict_on_batch(np.stack(arrays[i : i + 32]).astype(np.float32)))
            bar.update(len(samples[start : start + CHUNK]))
    write_rejections(out_dir / "rejected.csv", rejections)
    if not photos:
        raise CatdogError(f"{data}: no usable photo ({len(rejections)} file(s) rejected, see {out_dir / 'rejected.csv'})")
    imagenet = np.concatenate(scores)
    labels = np.array([p.label for p in photos])

    sizes = np.array([(p.width, p.height) for p in photos])
    for p in np.array(photos)[checks.tiny(sizes, min_side)]:
        p.reasons.append(f"tiny: {p.width}x{p.height} (shorter side < {min_side} px)")
    ratios = np.array([p.colour_ratio for p in photos])
    outlier, fences = checks.iqr_outliers(ratios, iqr_k)
    for p in np.array(photos)[outlier]:
        side = "few" if p.colour_ratio < fences[0] else "many"
        p.reasons.append(f"colour ratio {p.colour_ratio:.3f} outside [{fences[0]:.3f}, {fences[1]:.3f}] ({side} colours)")

    miss, pet_score = checks.top_k_misses(imagenet, labels, top_k)
    top1 = imagenet.argmax(1)
    for i, p in enumerate(photos):
        p.scores.update(pet_score=float(pet_score[i]), imagenet_top1=_class_name(top1[i], names), imagenet_top1_p=float(imagenet[i, top1[i]]))
        if miss[i]:
            top3 = ", ".join(f"{_class_name(c, names)} {imagenet[i, c]:.0%}" for c in np.argsort(-imagenet[i])[:3])
            p.reasons.append(f"ImageNet top-{top_k} holds no {LABELS[p.label]} class (top: {top3})")

    for i, j, d in checks.near_duplicates([p.dhash for p in photos], max_distance):
        photos[j].reasons.append(f"{'duplicate' if d == 0 else 'near-duplicate'} of {photos[i].name} (dHash distance {d})")
        photos[j].scores["duplicate_of"] = photos[i].name

    worst_rows, model_check, model_wrong = [], "", None
    if model is not None:
        if (labels >= 0).any():
            worst_rows, model_wrong = _worst_photos(model, photos, labels, worst, max_pixels, progress)
        else:
            model_check = f"no labelled photo in {data}, so no log loss to rank by"
            print(f"inspect: --run {run_dir}: {model_check}; the model check is left out")

    suspects = [p for p in photos if p.reasons]
    _write_suspects(out_dir / "suspects.csv", suspects)
    from catdog.inspect.report import write_report

    summary = {
        "data": str(data),
        "photos": len(photos),
        "rejected": len(rejections),
        "suspects": len(suspects),
        "tiny": int(checks.tiny(sizes, min_side).sum()),
        "min_side": min_side,
        "colour_outliers": int(outlier.sum()),
        "colour_fences": fences,
        "imagenet_misses": int(miss[labels >= 0].sum()),
        "duplicates": sum(1 for p in photos if "duplicate_of" in p.scores),
        "top_k": top_k,
        "backbone": backbone,
        "run_dir": str(run_dir or ""),
        "model_check": model_check,
        "model_wrong": model_wrong,  # of the labelled photos, how many the model's top class gets wrong
    }
    write_report(out_dir / "report.html", summary, photos, sizes, ratios, fences, worst_rows, rejections)
    write_text(out_dir / "summary.json", json.dumps(summary, indent=2))
    return summary


CHUNK = 256  # photos decoded and scored before the next are decoded: the memory inspect holds
OUTPUTS = ("report.html", "suspects.csv", "summary.json", "rejected.csv")


def _check_out(out_dir: Path, data: Path) -> None:
    """Refuse an --out whose files would replace a RUN_DIR's or ART_DIR's own (the run's report.html
    and rejected.csv were overwritten without a word), or DATA itself (the next scan would read
    the report and lists as photos, and a user's own report.html there would be replaced)."""
    for name in OUTPUTS:
        if owner := owned_file(out_dir / name):
            raise CatdogError(f"--out {out_dir}: its {name} is {owner}; give a folder of its own, such as {out_dir / 'inspect'}")
    if out_dir.resolve() == data.resolve():
        raise CatdogError(f"--out {out_dir} is DATA itself; give a folder outside it, or a subfolder such as {out_dir / 'inspect'}")


def _class_name(index: int, names: list[str] | None) -> str:
    return names[index] if names else f"ImageNet class {index}"


def _worst_photos(model, photos: list[Photo], labels: np.ndarray, n: int, max_pixels: int, progress: bool) -> tuple[list[dict], int]:
    """The labelled photos (at least one) with the highest per-photo log loss under the trained
    model (a `catdog.runtime` Model), with CAMs, and how many labelled photos it gets wrong. The
    photos are decoded again, at the run's size, a batch at a time."""
    from catdog.cam import overlay

    labelled = np.flatnonzero(labels >= 0)
    size = model.image_size  # the run's photo size (288 for `make run`), not the checks' 224

    def at_size(rows: np.ndarray) -> np.ndarray:  # a batch at a time: 2,002 photos at 288 are 2 GB of float32
        return np.stack([resize(open_rgb(photos[i].path, max_pixels), size) for i in rows]).astype(np.float32)

    batches = tqdm(range(0, len(labelled), 32), desc="inspect: the run's model", unit="batch", disable=not progress)
    out = [model.run(at_size(labelled[i : i + 32])) for i in batches]
    probs = np.concatenate([o[PROBABILITIES] for o in out])
    cams = np.concatenate([o[CAM] for o in out])
    p_true = np.clip(probs[np.arange(len(labelled)), labels[labelled]], 1e-15, 1.0)
    loss = -np.log(p_true)
    rows = []
    for k in np.argsort(-loss)[:n]:
        photo = photos[labelled[k]]
        predicted = int(probs[k].argmax())
        photo.scores["log_loss"] = float(loss[k])
        if predicted != photo.label:
            photo.reasons.append(f"model says {LABELS[predicted]} (P={probs[k, predicted]:.3f}; log loss {loss[k]:.2f})")
        rows.append({"photo": photo, "loss": float(loss[k]), "predicted": LABELS[predicted], "p": float(probs[k, predicted]),
                     "overlay": overlay(at_size(labelled[k : k + 1])[0].astype(np.uint8), cams[k, :, :, predicted])})
    return rows, int((probs.argmax(1) != labels[labelled]).sum())


def _write_suspects(path: Path, suspects: list[Photo]) -> None:
    with open_atomic(path, "w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(["file", "label", "reasons", "width", "height", "colour_ratio", "pet_score", "imagenet_top1", "log_loss", "duplicate_of"])
        for p in suspects:
            s = p.scores
            writer.writerow([
                p.name, LABELS[p.label] if p.label >= 0 else "", "; ".join(p.reasons), p.width, p.height,
                f"{p.colour_ratio:.4f}", f"{s.get('pet_score', float('nan')):.4f}", s.get("imagenet_top1", ""),
                f"{s['log_loss']:.4f}" if "log_loss" in s else "", s.get("duplicate_of", ""),
            ])


def read_exclude(path: str | os.PathLike) -> set[str]:
    """Names to leave out: a suspects.csv (its `file` column) or a plain list, one name per line;
    UTF-8 text, with or without the byte-order mark a spreadsheet saves."""
    path = Path(path)
    if not path.is_file():
        raise CatdogError(f"{path}: exclude list not found; pass suspects.csv from `catdog inspect` or a list of file names")
    try:
        text = path.read_text(encoding="utf-8-sig")  # Excel's "CSV UTF-8" starts with a BOM: its header was not seen
    except UnicodeDecodeError:
        raise CatdogError(f"{path}: exclude list is not UTF-8 text; save it as UTF-8 (photo names are UTF-8 in catdog)") from None
    lines = text.splitlines()
    if lines and lines[0].split(",")[0].strip() == "file":
        return {row["file"].strip() for row in csv.DictReader(io.StringIO(text, newline="")) if row.get("file")}
    return {line.strip() for line in lines if line.strip() and not line.startswith("#")}
