"""report.html: one self-contained page (inline CSS, images as data URIs, no script, no server).
The sections' HTML, and the neither section's photos (thumbnails of the files pet_predictions.csv names).

Every section has a fixed id (`SECTIONS`) so a browser test can find it; a section whose
inputs the run lacks says so and how to make them, instead of disappearing.
"""

from __future__ import annotations

import base64
import csv
import io
from html import escape
from pathlib import Path

from catdog.contract import TOLERANCE_TEXT
from catdog.report.facts import ESTIMATE_SCOPE, latency_text
from catdog.training.summary import neither_rates
from catdog.report.figures import CALIBRATION_BINS, reliability

NEITHER_SHOWN = 8  # photos per list in the neither section
THUMB_SIDE = 160  # longest side of a thumbnail there, pixels

# id -> heading, in page order ("sensitivity" only when ART_DIR/sensitivity.png exists)
SECTIONS = {
    "data": "Data",
    "curves": "Learning curves",
    "calibration": "Calibration",
    "robustness": "Robustness: shifted photos",
    "cam": "Class activation maps",
    "neither": "Neither: photos with no cat or dog",
    "parity": "Parity of the exported artefacts",
    "sensitivity": "Mixed-precision sensitivity",
    "artefacts": "Artefacts: sizes and latencies",
}

CSS = """
body{font:15px/1.45 system-ui,-apple-system,"Segoe UI",sans-serif;margin:0 auto;max-width:1180px;padding:0 18px 40px;color:#1d1d1f}
h1{font-size:24px;margin:22px 0 4px} h2{font-size:19px;margin:30px 0 8px;border-bottom:1px solid #ddd;padding-bottom:4px}
.lead{color:#555;margin:0 0 10px} .key{font-size:18px;margin:8px 0} .note{color:#666;font-style:italic}
table{border-collapse:collapse;margin:8px 0;font-size:13.5px} th,td{border:1px solid #ddd;padding:4px 8px;text-align:left;vertical-align:top}
td.num{text-align:right;font-variant-numeric:tabular-nums} th{background:#f4f4f6}
tr.fail td{background:#fff1f0} .pass{color:#137333;font-weight:600} .fail{color:#b3261e;font-weight:600}
img.chart{max-width:100%;border:1px solid #eee}
.grid{display:grid;grid-template-columns:repeat(auto-fill,minmax(200px,1fr));gap:12px}
figure{margin:0;border:3px solid #137333;border-radius:6px;padding:4px;background:#fafafa}
figure.wrong{border-color:#b3261e} figure img{width:100%;height:200px;object-fit:contain;background:#222;display:block} figcaption{font-size:12.5px;margin-top:4px}
code{background:#f4f4f6;padding:1px 4px;border-radius:3px}
.thumbs{display:grid;grid-template-columns:repeat(auto-fill,minmax(120px,1fr));gap:8px;margin:6px 0 14px}
.thumbs figure{border-width:2px} .thumbs figure img{height:110px} .thumbs figcaption{font-size:12px;overflow-wrap:anywhere}
"""


def data_uri(data: bytes, mime: str) -> str:
    return f"data:{mime};base64,{base64.b64encode(data).decode('ascii')}"


def _img(data: bytes | None, alt: str, mime: str = "image/png") -> str:
    return f'<img class="chart" alt="{escape(alt)}" src="{data_uri(data, mime)}">' if data else ""


def _section(sid: str, body: str) -> str:
    return f'<section id="{sid}">\n<h2>{SECTIONS[sid]}</h2>\n{body}\n</section>'


def _note(text: str) -> str:
    return f'<p class="note">{text}</p>'


def _table(header: list[str], rows: list[list[str]], numeric: set[int] = frozenset(), row_classes: list[str] | None = None) -> str:
    head = "".join(f"<th>{escape(h)}</th>" for h in header)
    body = []
    for k, row in enumerate(rows):
        cls = f' class="{row_classes[k]}"' if row_classes and row_classes[k] else ""
        cells = "".join(f'<td class="num">{c}</td>' if i in numeric else f"<td>{c}</td>" for i, c in enumerate(row))
        body.append(f"<tr{cls}>{cells}</tr>")
    return f"<table><thead><tr>{head}</tr></thead><tbody>{''.join(body)}</tbody></table>"


def _fmt(value, spec: str, default: str = "–") -> str:
    return format(value, spec) if isinstance(value, (int, float)) else default


def data_section(data: dict) -> str:
    rows = [
        ["photos used", _fmt(data["used"], "d", "?")],
        ["of which training", _fmt(data["train"], "d")],
        [f"of which {data.get('validation_is', 'validation (held out)')}", _fmt(data["validation"], "d")],
        ["rejected (unreadable, wrong type, too large…)", str(data["rejected"])],
        ["excluded (--exclude list)", str(data["excluded"])],
        ["unlabelled, ignored for training", str(data["unlabelled"])],
    ]
    body = f'<p class="lead">From <code>{escape(data["data_dir"] or "?")}</code></p>' + _table(["", "photos"], rows, {1})
    if data["rejections"]:
        shown = data["rejections"][:20]
        body += "<p>Rejected files (also in <code>rejected.csv</code>):</p>" + _table(
            ["file", "reason"], [[escape(f), escape(r)] for f, r in shown]
        )
        if len(data["rejections"]) > len(shown):
            body += _note(f"… and {len(data['rejections']) - len(shown)} more in rejected.csv")
    return _section("data", body)


def curves_section(png: bytes | None, metrics: dict) -> str:
    if not png:
        return _section("curves", _note("This run recorded no training history (history.json)."))
    best, epochs = metrics.get("best_epoch"), metrics.get("epochs")
    lead = f"Best epoch {best} of {epochs} (early stopping on validation loss; its weights were kept)." if best and epochs else ""
    if not lead and metrics.get("selection"):
        lead = "Cross-validated log loss against the L2 strength: the selection and each outer fold's (curves.png)."
    return _section("curves", f'<p class="lead">{escape(lead)}</p>' + _img(png, "learning curves"))


def calibration_section(png: bytes | None, held, metrics: dict) -> str:
    """The reliability chart of `held` (a measure.HeldOut), what its predictions are (out-of-fold
    or not), their log loss and mistakes, what that estimate covers, the reliability bins as a
    table, and the calibration figures metrics.json keeps; a note where there is no chart."""
    if not png:
        return _section("calibration", _note("No held-out predictions: the run's features, head or photos are not at hand."))
    loss, wrong = _log_loss(held.labels, held.p_dog), int(((held.p_dog >= 0.5) != (held.labels == 1)).sum())
    if held.out_of_fold:
        lead = (
            f"{len(held.labels)} photos, each P(dog) out-of-fold ({escape(held.source)}): log loss {loss:.4f}, "
            f"{wrong} wrong. {escape(ESTIMATE_SCOPE)}"
        )
    else:
        which = "held-out validation photos" if held.held_out else "training photos (this run holds none out)"
        if held.held_out and metrics.get("finetuned_from"):  # held out of fine-tuning, not of the head it started from
            which = "early-stopping photos (held out of fine-tuning; the starting model was trained on them: optimistic)"
        lead = f"{len(held.labels)} {which}, P(dog) from {escape(held.source)}: log loss {loss:.4f}, {wrong} wrong."
    facts = _calibration_facts(metrics.get("calibration") or {})
    body = f'<p class="lead">{lead}</p>' + _img(png, "calibration") + reliability_table(held.labels, held.p_dog)
    if facts:
        folds = (metrics.get("head") or {}).get("folds", "K")
        source = (metrics.get("calibration") or {}).get("source") if metrics.get("finetuned_from") else None
        body += f"<p>The shipped model's calibration ({escape(source or f'{folds}-fold CV that chose its L2')}): {escape('; '.join(facts))}.</p>"
    return _section("calibration", body)


def _log_loss(labels, p_dog, eps: float = 1e-15) -> float:
    """Mean log loss of P(dog) against 0/1 labels (P clipped to [eps, 1 - eps], as training does)."""
    import numpy as np

    p = np.clip(np.asarray(p_dog, float), eps, 1 - eps)
    y = np.asarray(labels, float)
    return float(-np.mean(y * np.log(p) + (1 - y) * np.log(1 - p)))


def _calibration_facts(cal: dict) -> list[str]:
    """metrics.json's calibration block as short phrases (temperature, log loss raw/clipped/scaled)."""
    facts = []
    if isinstance(cal.get("fitted_temperature"), (int, float)):  # a fine-tuned run's: reported, not applied
        facts.append(f"temperature fitted {cal['fitted_temperature']:.3f}, not applied (--calibrated uses {cal.get('temperature', 1.0):g})")
    elif isinstance(cal.get("temperature"), (int, float)):
        facts.append(f"fitted temperature {cal['temperature']:.3f}")
    for key, what in (
        ("val_log_loss_raw", "log loss as is"),
        ("val_log_loss_clipped", "clipped to {lo}..{hi}"),
        ("val_log_loss_temperature_cross_fitted", "temperature-scaled (cross-fitted)"),
    ):
        if isinstance(cal.get(key), (int, float)):
            clip = cal.get("clip") or ["?", "?"]
            facts.append(f"{what.format(lo=clip[0], hi=clip[1])}: {cal[key]:.4f}")
    return facts


def reliability_table(labels, p_dog, bins: int = CALIBRATION_BINS) -> str:
    """The reliability chart's bins as a table: P(dog) range, photos, mean P(dog), share of dogs
    (figures.reliability's rows; empty bins left out)."""
    rows = [
        [f"{r['bin'] / bins:.1f}–{(r['bin'] + 1) / bins:.1f}", str(r["n"]), f"{r['predicted']:.3f}", f"{r['observed']:.3f}"]
        for r in reliability(labels, p_dog, bins)
    ]
    return _table(["P(dog) bin", "photos", "mean P(dog)", "share of dogs"], rows, {1, 2, 3})


def robustness_section(png: bytes | None, rows: list[dict], metrics: dict) -> str:
    """Log loss on clean, shifted and group-held-out photos (`facts.robustness_rows`) as the chart
    `png` and a table, with metrics.json's method; a one-line note for a run without them."""
    if not rows:
        return _section("robustness", _note("This run has no shift measurements (no robustness block in metrics.json)."))
    block = metrics.get("robustness") or {}
    lead = escape(str(block.get("method", "")).rstrip("."))
    lead += "." if lead else ""
    clean = next((r["log_loss"] for r in rows if r["kind"] == "clean"), None)
    mean = block.get("mean_shifted")
    if isinstance(mean, (int, float)) and clean:
        lead += f" Mean of the shifts' mean and the group folds {mean:.4f}, {mean / clean:.1f} × the clean {clean:.4f}."
    table = _table(
        ["name", "what", "photos", "log loss", "accuracy"],
        [[escape(r["name"]), escape(r["what"]), _fmt(r["n"], "d"), f"{r['log_loss']:.4f}", _fmt(r["accuracy"], ".2%")] for r in rows],
        {2, 3, 4},
    )
    return _section("robustness", f'<p class="lead">{lead.strip()}</p>' + _img(png, "robustness") + table)


def cam_section(tiles: list[dict], held) -> str:
    """The CAM grid of `measure.cam_tiles`: each tile's caption gives `held`'s prediction (out-of-fold
    where it is), right or wrong, and says whose heat map it is (the shipped model's)."""
    if not tiles:
        return _section("cam", _note("No photos at hand for CAMs (the run's data folder has moved?)."))
    oof = held is not None and held.out_of_fold
    figures = [_cam_figure(t, "out-of-fold " if oof else "") for t in tiles]
    n_wrong = sum(not t["right"] for t in tiles)
    if oof:
        lead = (
            f"{len(tiles)} photos by their out-of-fold P (from a head fitted without the photo): {n_wrong} wrong, the worst "
            f"first, and {len(tiles) - n_wrong} right, from most to least confident. The heat map is the shipped model's CAM "
            "for the out-of-fold answer; that model was fitted on every photo, this one included (red: where the evidence is)."
        )
    else:
        which = "validation photos" if held is not None and held.held_out else "training photos"
        lead = (
            f"{len(tiles)} {which}: {n_wrong} the model gets wrong (the worst first) and {len(tiles) - n_wrong} it gets right, "
            "from most to least confident. The heat map is the predicted class's map (red: where the evidence is)."
        )
    return _section("cam", f'<p class="lead">{escape(lead)}</p><div class="grid">' + "".join(figures) + "</div>")


def _cam_figure(t: dict, which: str) -> str:
    """One CAM tile: the photo with its heat map, its name, the prediction (`which`: "out-of-fold " or
    "") with its confidence, right or wrong, and whose heat map it is."""
    verdict = "right" if t["right"] else f"wrong (it is a {t['label']})"
    heat = f"heat map: shipped model's CAM for {t['predicted']}"
    if which and "model_p_dog" in t:  # the shipped model trained on this photo: its own P says little
        heat += f" (it trained on this photo; its P(dog) {t['model_p_dog']:.3f})"
    return (
        f'<figure class="{"right" if t["right"] else "wrong"}"><img alt="{escape(t["name"])}" src="{data_uri(t["jpeg"], "image/jpeg")}">'
        f'<figcaption><b>{escape(t["name"])}</b>: {which}{t["predicted"]} {t["confidence"]:.1%}, {verdict}'
        f"<br><small>{escape(heat)}</small></figcaption></figure>"
    )


def neither_photos(pet_csv: Path, metrics: dict, n: int = NEITHER_SHOWN) -> dict | None:
    """The photos behind the nested-CV keep and reject rates (RUN_DIR/pet_predictions.csv): the
    rejected cats and dogs, lowest P(pet) first, and the accepted photos with neither, highest
    first; up to `n` of each as {"name", "p_pet", "jpeg" (thumbnail bytes, None where the photo
    is not at hand)}, with the totals. None where the run has no such file."""
    try:
        with open(pet_csv, newline="") as f:
            rows = [r for r in csv.DictReader(f) if {"file", "kind", "p_pet", "kept"} <= set(r)]
    except (OSError, csv.Error, UnicodeDecodeError):
        return None
    pets = [r for r in rows if r["kind"] == "pet"]
    others = [r for r in rows if r["kind"] == "neither"]
    rejected = sorted((r for r in pets if r["kept"] == "0"), key=lambda r: float(r["p_pet"]))
    accepted = sorted((r for r in others if r["kept"] == "1"), key=lambda r: -float(r["p_pet"]))
    roots = {"pet": metrics.get("data_dir") or "", "neither": (metrics.get("pet") or {}).get("negatives_dir") or ""}

    def tiles(chosen):
        return [{"name": r["file"], "p_pet": float(r["p_pet"]), "threshold": _number(r.get("threshold")),
                 "jpeg": _thumbnail(roots[r["kind"]], r["file"])} for r in chosen[:n]]

    return {"n_pets": len(pets), "n_negatives": len(others), "n_rejected_pets": len(rejected),
            "n_accepted_negatives": len(accepted), "rejected_pets": tiles(rejected), "accepted_negatives": tiles(accepted)}


def _number(text: str | None) -> float | None:
    """A CSV cell as a float; None where it is missing or not a number (an older run's file)."""
    try:
        return float(text)
    except (TypeError, ValueError):
        return None


def _fold_threshold(threshold: float | None) -> str:
    """A tile's threshold: the one its outer fold chose, which decided it (the printed threshold is
    the shipped detector's; a photo above that one was still called neither by its fold's higher one)."""
    return "" if threshold is None else f", its fold's threshold {threshold:.3f}"


def _thumbnail(root: str, name: str) -> bytes | None:
    """JPEG bytes of the photo ROOT/NAME at most THUMB_SIDE a side, or None if it cannot be read."""
    from catdog.data import ImageError, open_rgb

    if not root:
        return None
    try:
        photo = open_rgb(Path(root) / name)
    except (ImageError, OSError):
        return None
    photo.thumbnail((THUMB_SIDE, THUMB_SIDE))
    buffer = io.BytesIO()
    photo.save(buffer, "JPEG", quality=80)
    return buffer.getvalue()


def neither_section(metrics: dict, photos: dict | None) -> str:
    rates = neither_rates(metrics)
    if not rates:
        return _section("neither", _note("This run has no estimate of the neither answer (trained by an older catdog)."))
    body = f'<p class="lead">The neither answer {escape(rates)}.</p>'
    if photos is None and metrics.get("finetuned_from"):  # the pet head and its rates are the source run's
        keep = metrics.get("pet_keep_validation")
        kept = f" On this run's {metrics.get('n_val', '?')} validation photos, whose features fine-tuning moved, it keeps {keep:.1%}." if isinstance(keep, (int, float)) else ""
        return _section("neither", body + _note(
            f"Fine-tuning does not retrain the pet head: its threshold and the rates above are those of {escape(str(metrics['finetuned_from']))}, "
            f"whose report shows the photos.{kept}"))
    if photos is None:
        return _section("neither", body + _note("No pet_predictions.csv in this run: no photos to show (<code>catdog run --negatives DIR</code>, or <code>catdog train --negatives NEG.h5</code>)."))

    def grid(tiles: list[dict], wrong_kind: str) -> str:
        if not tiles:
            return "<p>none</p>"
        figures = []
        for t in tiles:
            img = f'<img alt="{escape(t["name"])}" src="{data_uri(t["jpeg"], "image/jpeg")}">' if t["jpeg"] else ""
            missing = "" if t["jpeg"] else " (photo not at hand)"
            figures.append(
                f'<figure class="wrong">{img}<figcaption><b>{escape(t["name"])}</b>{missing}<br>'
                f'P(pet) {t["p_pet"]:.3f}{_fold_threshold(t.get("threshold"))}</figcaption></figure>'
            )
        return f'<div class="thumbs" data-kind="{wrong_kind}">' + "".join(figures) + "</div>"

    def heading(what: str, key: str, total: str, order: str) -> str:
        n, tiles = photos[f"n_{key}"], photos[key]
        shown = f", the first {len(tiles)} shown" if n > len(tiles) else ""
        return f"<h3>{what}: {n} of {photos[total]}{shown}, {order} first</h3>"

    body += (
        heading("Cats and dogs called neither", "rejected_pets", "n_pets", "lowest P(pet)")
        + grid(photos["rejected_pets"], "rejected-pets")
        + heading("Photos with neither called cat or dog", "accepted_negatives", "n_negatives", "highest P(pet)")
        + grid(photos["accepted_negatives"], "accepted-negatives")
        + _note("Each photo scored by a detector and a threshold chosen without it (nested cross-validation; pet_predictions.csv)"
                + (": the threshold under each photo is its fold's, which decided it; the one above is the shipped detector's."
                   if any(t.get("threshold") is not None for t in photos["rejected_pets"] + photos["accepted_negatives"])
                   else "."))  # an older pet_predictions.csv has no threshold column: nothing is under the photos
    )
    return _section("neither", body)


def parity_section(parity: dict | None, exported: bool) -> str:
    if not exported:
        return _section("parity", _note("Not exported: run <code>catdog export RUN_DIR --out ART_DIR</code>, then <code>catdog report RUN_DIR --art ART_DIR</code>."))
    if not parity:
        return _section("parity", _note("No parity.json in the artefacts folder: run <code>catdog parity ART_DIR --images DIR</code>."))
    rows, classes = [], []
    for r in parity.get("artefacts", []):
        verdict = '<span class="pass">pass</span>' if r.get("passed") else '<span class="fail">FAIL</span>'
        if r.get("stale"):
            verdict = '<span class="fail">not current</span>: ' + escape(r["stale"])
        elif r.get("failed"):
            verdict += ": " + escape("; ".join(r["failed"]))
        checks = r.get("spec_checks") or []
        if checks:
            verdict += f" ({sum(bool(c.get('passed')) for c in checks)} of {len(checks)} Core ML spec checks pass"
            verdict += f"; numbers by {escape(r['engine'])})" if r.get("engine") else "; numbers not run)"
        acc = f"{r['accuracy']:.2%} ({r['keras_accuracy']:.2%})" if "accuracy" in r and "keras_accuracy" in r else "–"
        top1 = _fmt(r.get("top1_agreement"), ".1%")
        rows.append(
            [escape(r.get("file", "?")), _fmt(r.get("prob_max_abs"), ".2e"), _fmt(r.get("pet_max_abs"), ".2e"), _fmt(r.get("cam_max_rel"), ".2e"),
             _fmt(r.get("cam_corr"), ".6f"), top1, _fmt(r.get("verdict_agreement"), ".1%"), acc, verdict]
        )
        classes.append("" if r.get("passed") else "fail")
    failing = [r for r in parity.get("artefacts", []) if not r.get("passed") and not r.get("stale")]
    stale = sum(bool(r.get("stale")) for r in parity.get("artefacts", []))
    verdict = ("all artefacts pass" if parity.get("passed") else "some artefacts FAIL" if failing
               else f"{stale} of {len(parity.get('artefacts', []))} artefacts not current (see below)" if stale
               else "not every artefact measured (see below)")
    lead = (
        f"Against the Keras model on {parity.get('n_reference', '?')} reference images ("
        f"{'edge cases included' if parity.get('edge_cases', True) else 'no edge cases: --no-edge'}) and "
        f"{parity.get('labelled_photos', 0)} labelled photos for int8 accuracy: <b>{verdict}</b>. "
        f"Tolerances (those parity checks): {escape(TOLERANCE_TEXT)}. "
        f"Core ML's numbers: {escape(parity.get('coreml_engine', 'Core ML'))}."
    )
    if parity.get("unlisted"):
        lead += (f" parity.json also holds {parity['unlisted']} row(s) of files manifest.json no longer lists (an earlier export's): "
                 "left out here.")
    header = ["artefact", "max |Δp|", "max |Δpet|", "CAM max rel", "CAM corr", "top-1 agree", "verdict agree", "int8 accuracy (Keras)", "result"]
    return _section("parity", f'<p class="lead">{lead}</p>' + _table(header, rows, {1, 2, 3, 4, 5, 6, 7}, classes))


def sensitivity_section(png: bytes | None, other_model: bool = False) -> str:
    if not png:
        return ""
    if other_model:  # it was shown as if measured on this run's model
        return _section("sensitivity", _note("The ART_DIR's sensitivity.png measures the model its artefacts were exported from, "
                                             "not this run's model.keras; run `catdog export` again to measure this one."))
    return _section("sensitivity", '<p class="lead">Per-layer sensitivity to reduced precision (sensitivity.png in the ART_DIR).</p>' + _img(png, "sensitivity"))


def artefacts_section(rows: list[dict], keras_latency: dict | None, art_dir: str | None) -> str:
    if not rows:
        return _section("artefacts", _note("Not exported: no artefacts in this run."))
    table_rows = []
    if keras_latency:
        table_rows.append(["model.keras (Keras reference)", "keras", "fp32", "–", "–", latency_text(keras_latency), "reference"])
    for r in rows:
        verdict = r["verdict"] if r["passed"] is not False else f'<span class="fail">{escape(r["verdict"])}</span>'
        table_rows.append(
            [escape(r["file"]), r["format"], r["precision"], f"{r['mb']:.2f}", _fmt(r["export_seconds"], ".1f"),
             latency_text(r["latency"]), verdict]
        )
    lead = (
        f"In <code>{escape(art_dir or '')}</code> (manifest.json lists each file's sha256). Latency: one photo, median of "
        "15 calls after 3 warm-up calls, on the machine that made this report, all its CPU threads."
    )
    header = ["artefact", "format", "precision", "size MB", "export s", "latency", "parity"]
    return _section("artefacts", f'<p class="lead">{lead}</p>' + _table(header, table_rows, {3, 4, 5}))


def page(title: str, key_lines: list[str], sections: list[str]) -> str:
    """The whole document."""
    keys = "".join(f'<p class="key">{line}</p>' for line in key_lines)
    nav = " · ".join(f'<a href="#{sid}">{name}</a>' for sid, name in SECTIONS.items() if f'id="{sid}"' in "".join(sections))
    return (
        f'<!doctype html>\n<html lang="en"><head><meta charset="utf-8"><title>{escape(title)}</title>'
        f'<meta name="viewport" content="width=device-width,initial-scale=1"><style>{CSS}</style></head>\n'
        f'<body>\n<header id="overview"><h1>{escape(title)}</h1>{keys}<nav>{nav}</nav></header>\n'
        + "\n".join(s for s in sections if s)
        + "\n</body></html>\n"
    )
