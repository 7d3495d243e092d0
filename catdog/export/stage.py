"""`catdog export` as a function: the option strings as the command line gives them, parsed here;
and the table the command prints."""

from __future__ import annotations

from pathlib import Path

from catdog.data.limits import MAX_PIXELS
from catdog.errors import CatdogError


def export_stage(
    run,
    formats: str,
    precision: str,
    out: Path,
    calibration_dir: str | None = None,
    calibrated: bool = False,
    mixed: bool = True,
    keep_float: str | None = None,
    max_pixels: int = MAX_PIXELS,
) -> dict:
    """Export a loaded RUN_DIR (`catdog.training.Run`) into ART_DIR `out`; the manifest.

    formats, precision: comma-separated (e.g. "coreml,tflite,onnx", "fp32,int8");
    calibration_dir: int8 calibration photos (default: the run's calibration photos, split.json);
    keep_float: comma-separated Keras layer names kept float32 instead of the measured choice;
    max_pixels: a calibration photo over this many pixels is named and left out.
    """
    from catdog.export import FORMATS, PRECISIONS, export_run, parse_list
    from catdog.features.stage import scan_printing
    from catdog.training import run_photos

    formats_ = parse_list(formats, FORMATS, "format")
    precisions_ = parse_list(precision, PRECISIONS, "precision")
    calibration = scan_printing(calibration_dir)[0] if calibration_dir else run_photos(run, "calibration")
    keep = [n.strip() for n in keep_float.split(",") if n.strip()] if keep_float is not None else None
    if keep is not None and precisions_ == ["fp32"]:  # accepted, and nothing kept, without a word
        raise CatdogError("--keep-float: keeps layers of fp16 and int8 artefacts float32, and --precision is fp32 alone; "
                          "add fp16 or int8, or leave --keep-float out")
    return export_run(run, formats_, precisions_, out, calibration, calibrated=calibrated, mixed=mixed, keep_float=keep, max_pixels=max_pixels)


def manifest_lines(manifest: dict, out: Path) -> list[str]:
    """The artefact table `catdog export` prints: file, size, export time, layers kept float32."""
    lines = [f"{'artefact':<42} {'MB':>7} {'export s':>9}  float32 layers"]
    for a in manifest["artefacts"]:
        lines.append(f"{a['file']:<42} {a['bytes'] / 1e6:>7.2f} {a['export_seconds']:>9.1f}  {_kept_summary(a)}")
    return [*lines, f"manifest: {Path(out) / 'manifest.json'} (each artefact's float32 layers: kept_float32)"]


def _kept_summary(entry: dict, shown: int = 3) -> str:
    """"all", "none", the names of a few, or how many and the first of them."""
    kept = entry["kept_float32"]
    if entry["precision"] == "fp32":
        return "all"
    if len(kept) <= shown:
        return ", ".join(kept) or "none"
    return f"{len(kept)}: {', '.join(kept[:shown])}, …"
