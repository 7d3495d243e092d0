"""What a RUN_DIR holds, read defensively: every file and key may be missing (a run without
export, an older run, a run trained by cross-validation and a refit without a validation split).

Pure functions of files and dicts, no model: the terminal summary and the page both use them.
"""

from __future__ import annotations

import csv
import os
from pathlib import Path

from catdog.contract import RunDir, sha256_path


def read_rejections(path: Path) -> list[tuple[str, str]]:
    """(file, reason) rows of a rejected.csv (header `file,reason`); [] when it is missing."""
    try:
        with open(path, newline="") as f:
            return [(row.get("file", ""), row.get("reason", "")) for row in csv.DictReader(f)]
    except (OSError, csv.Error):
        return []


def expected_log_loss(metrics: dict) -> tuple[float, str] | None:
    """The log loss to expect on new photos, and how it was measured.

    Cross-validation (every photo scored by a model that did not see it) when the run has it,
    else the held-out validation split; None when the run measured neither.
    """
    estimate = metrics.get("estimate") or {}
    if isinstance(estimate.get("log_loss"), (int, float)):
        lo, hi = estimate["log_loss_95"]
        return float(estimate["log_loss"]), f"95 % interval {lo:.4f}-{hi:.4f}; nested cross-validation on {estimate.get('n', '?')} photos"
    cv = metrics.get("cross_validation") or {}
    if isinstance(cv.get("log_loss"), (int, float)):
        return float(cv["log_loss"]), f"{cv.get('folds', 'k')}-fold cross-validation on {cv.get('n', '?')} photos"
    val = metrics.get("val") or {}
    if isinstance(val.get("log_loss"), (int, float)):
        n = val.get("n", metrics.get("n_val", "?"))
        if metrics.get("finetuned_from"):  # the split chose the epoch, and the starting head was fitted on it too
            return float(val["log_loss"]), (f"early-stopping split of {n} photos, which the starting model was trained on: in-sample, "
                                            "optimistic for new photos (`catdog evaluate` on photos it never saw measures it)")
        return float(val["log_loss"]), f"validation split of {n} photos"
    return None


# what the nested-CV estimate covers, and what it does not (the project's own shift measurements)
ESTIMATE_SCOPE = (
    "The estimate covers new photos like the training ones (same source: the Kaggle photos), not photos from "
    "other sources (other cameras, close-up portraits, other breeds), where the project measured log loss up to twice as high."
)
ROBUSTNESS_KINDS = ("clean", "shift", "group")


def robustness_rows(metrics: dict) -> list[dict]:
    """The rows of metrics.json's `robustness` block that have a numeric log loss, in order, each
    with name, kind (one of ROBUSTNESS_KINDS, else "shift"), what, n, log_loss and accuracy
    (None where missing); [] for a run without the block or with a malformed one."""
    block = metrics.get("robustness")
    rows = block.get("rows") if isinstance(block, dict) else None
    if not isinstance(rows, list):
        return []
    number = lambda v: float(v) if isinstance(v, (int, float)) and not isinstance(v, bool) else None  # noqa: E731
    kept = []
    for r in rows:
        if not isinstance(r, dict) or number(r.get("log_loss")) is None:
            continue
        kept.append({
            "name": str(r.get("name", "?")),
            "kind": r.get("kind") if r.get("kind") in ROBUSTNESS_KINDS else "shift",
            "what": str(r.get("what", "")),
            "n": r.get("n") if isinstance(r.get("n"), int) else None,
            "log_loss": number(r.get("log_loss")),
            "accuracy": number(r.get("accuracy")),
        })
    return kept


def expected_accuracy(metrics: dict) -> float | None:
    """Accuracy from the same source as `expected_log_loss`."""
    for key in ("estimate", "cross_validation", "val"):
        block = metrics.get(key) or {}
        if isinstance(block.get("accuracy"), (int, float)):
            return float(block["accuracy"])
    return None


def data_summary(run_dir: Path, metrics: dict) -> dict:
    """Photos used (train / validation), rejected (with reasons), excluded and unlabelled ones."""
    rejected = read_rejections(Path(run_dir) / RunDir.REJECTED)
    n_train, n_val = metrics.get("n_train"), metrics.get("n_val")
    used = sum(n for n in (n_train, n_val) if isinstance(n, int)) or None
    return {
        "data_dir": metrics.get("data_dir") or "",
        "used": used,
        "train": n_train,
        "validation": n_val,
        # a fine-tuned run's split stops the training early; the run it started from trained on it
        "validation_is": "early-stopping split (not held out)" if metrics.get("finetuned_from") else "validation (held out)",
        "rejected": len(rejected),
        "rejections": rejected,
        "excluded": metrics.get("n_excluded", 0) or 0,
        "unlabelled": metrics.get("n_unlabelled_ignored", 0) or 0,
    }


def parity_verdict(row: dict | None) -> str:
    """One short verdict for a parity.json row: "pass", "pass (by ENGINE)" for Core ML, "FAIL: ...",
    or "not checked"."""
    if not row:
        return "not checked"
    if row.get("stale"):
        return "not current: " + row["stale"]
    by = f" (by {row['engine']})" if row.get("format") == "coreml" and row.get("engine") else ""
    if row.get("passed"):
        return ("pass" if row.get("numbers_run", True) else "pass (spec only)") + by
    return "FAIL: " + "; ".join(row.get("failed") or ["see parity.md"]) + by


def exported_from_another_model(manifest: dict | None, model_sha256: str | None) -> bool:
    """Whether the manifest says its artefacts were exported from another model.keras than the run's
    (`model_sha256`): the run trained again since, or another run's ART_DIR."""
    exported_from = ((manifest or {}).get("keras_model") or {}).get("sha256")
    return bool(model_sha256 and exported_from and exported_from != model_sha256)


def current_parity(parity: dict | None, manifest: dict | None, art_dir: str | os.PathLike, model_sha256: str | None = None) -> dict | None:
    """parity.json as it bears on ART_DIR's artefacts now. A row passes only where its artefact is
    still there with the sha256 parity measured (`catdog parity` records it), which the file itself
    still has (its sha256 is computed here); one exported again
    since, or missing, fails and says to run parity again; every row fails where the manifest says
    the artefacts were exported from another model.keras than `model_sha256` (the run's: trained
    again since, or another run's ART_DIR). `passed` holds only where every artefact of
    manifest.json passes (one parity never measured included). A row of a file manifest.json no
    longer lists (an earlier export's, of other formats) is left out, counted in `unlisted`: the
    page said "all artefacts pass" above eight rows "no longer in the artefacts folder"."""
    if not parity or not manifest:
        return parity
    listed = {a.get("file"): a for a in manifest.get("artefacts", [])}
    again = f"run `catdog parity {art_dir} --images DIR` again"
    other_model = exported_from_another_model(manifest, model_sha256)
    rows, unlisted = [], 0
    for row in parity.get("artefacts", []):
        entry, file = listed.get(row.get("file")), row.get("file", "?")
        if entry is None and not other_model:
            unlisted += 1
            continue
        stale = None
        if other_model:
            stale = f"{file} was exported from another model than this run's model.keras (trained again since?); run `catdog export` again"
        elif entry is None or not (Path(art_dir) / file).exists():
            stale = f"{file} is no longer in the artefacts folder; run `catdog export` again, then `catdog parity`"
        elif not row.get("sha256"):
            stale = f"parity.json does not say which {file} it measured (written by an older catdog); {again}"
        elif row["sha256"] != entry.get("sha256"):
            stale = f"parity.json measured another {file} than the one there now (exported again since); {again}"
        elif sha256_path(Path(art_dir) / file) != entry.get("sha256"):  # the file itself, not only the records
            stale = (f"{file} is not the file manifest.json lists (sha256 differs: changed or copied over since export); "
                     "run `catdog export` again, then `catdog parity`")
        rows.append({**row, "passed": False, "stale": stale} if stale else row)
    measured = {r.get("file") for r in rows if r.get("passed")}
    return {**parity, "artefacts": rows, "passed": bool(listed) and set(listed) <= measured, "unlisted": unlisted}


def artefact_rows(manifest: dict | None, parity: dict | None, latencies: dict[str, dict] | None = None) -> list[dict]:
    """One row per artefact of the manifest: file, format, precision, MB, export s, latency, parity verdict."""
    if not manifest:
        return []
    checked = {r.get("file"): r for r in (parity or {}).get("artefacts", [])}
    latencies = latencies or {}
    rows = []
    for a in manifest.get("artefacts", []):
        row = checked.get(a.get("file"))
        rows.append(
            {
                "file": a.get("file", "?"),
                "format": a.get("format", "?"),
                "precision": a.get("precision", "?"),
                "mb": (a.get("bytes") or 0) / 1e6,
                "export_seconds": a.get("export_seconds"),
                "latency": latencies.get(a.get("file")),
                "passed": None if row is None else bool(row.get("passed")),
                "verdict": parity_verdict(row),
            }
        )
    return rows


def latency_text(latency: dict | None) -> str:
    """"12.3 ms" for a measured latency, its reason otherwise ("macOS only", "-")."""
    if not latency:
        return "-"
    if "median_ms" in latency:
        return f"{latency['median_ms']:.1f} ms"
    return latency.get("note", "-")
