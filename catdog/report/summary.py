"""`catdog run` as a report on the terminal: one line per stage, then a closing summary table."""

from __future__ import annotations

import shlex
from pathlib import Path

from catdog.report.facts import latency_text
from catdog.training.summary import l2_text, neither_rates

STAGE_WIDTH = 9


def stage_line(stage: str, figure: str, seconds: float) -> str:
    """`[  62 s] features  2002 photos ...`: the time first, so the lines align."""
    return f"[{seconds:5.0f} s] {stage:<{STAGE_WIDTH}} {figure}"


def training_figure(metrics: dict) -> str:
    """The training stage's key figures from metrics.json (whichever the run measured)."""
    parts = []
    estimate = metrics.get("estimate") or {}
    if isinstance(estimate.get("log_loss"), (int, float)):
        lo, hi = estimate["log_loss_95"]
        parts.append(f"expected log loss {estimate['log_loss']:.4f} (95 % interval {lo:.4f}-{hi:.4f}, nested CV)")
        head = metrics.get("head") or {}
        if head.get("l2") is not None:
            fusion = (head.get("late_fusion") or {}).get("l2")  # one head per part, their mean logit
            heads = f"{len(fusion)} heads (late fusion), " if fusion else ""
            parts.append(f"{heads}{l2_text(head)} chosen by CV, fitted on all {metrics.get('n_train', '?')} photos")
    val = metrics.get("val") or {}
    if isinstance(val.get("log_loss"), (int, float)):
        n = val.get("n", metrics.get("n_val", "?"))
        parts.append(f"validation log loss {val['log_loss']:.4f}, accuracy {val.get('accuracy', float('nan')):.2%} ({n} photos)")
    cv = metrics.get("cross_validation") or {}
    if isinstance(cv.get("log_loss"), (int, float)):
        parts.append(f"{cv.get('folds', 'k')}-fold cross-validated log loss {cv['log_loss']:.4f}")
    if neither_rates(metrics):
        parts.append(f"neither: {neither_rates(metrics)}")
    if metrics.get("best_epoch") and metrics.get("epochs"):
        parts.append(f"best epoch {metrics['best_epoch']} of {metrics['epochs']}")
    return "; ".join(parts) or "model trained (no held-out score recorded)"


def export_figure(manifest: dict, art_dir: str | Path) -> str:
    artefacts = manifest.get("artefacts", [])
    mb = sum(a.get("bytes", 0) for a in artefacts) / 1e6
    return f"{len(artefacts)} artefacts, {mb:.1f} MB in all, in {art_dir}"


def parity_figure(parity: dict, art_dir: str | Path) -> str:
    rows = parity.get("artefacts", [])
    failed = [r.get("file", "?") for r in rows if not r.get("passed")]
    text = f"{len(rows) - len(failed)} of {len(rows)} artefacts within tolerance"
    if failed:
        text += f"; FAIL: {', '.join(failed)} (why: {Path(art_dir) / 'parity.md'})"
    return text


def _quote(path: str) -> str:
    return shlex.quote(str(path))


def summary_table(facts: dict, total_seconds: float | None = None) -> str:
    """The closing table of `catdog run`: expected log loss, where everything is, each artefact's
    size, latency and parity verdict, and commands to try next."""
    lines = ["", "summary" + (f" ({total_seconds / 60:.1f} min)" if total_seconds else ""), "-" * 72]
    expected = facts.get("expected_log_loss")
    if expected:
        acc = f", accuracy {facts['accuracy']:.2%}" if facts.get("accuracy") is not None else ""
        lines.append(f"{'expected log loss':<18} {expected[0]:.4f}{acc}  ({expected[1]})")
    if facts.get("neither"):
        lines.append(f"{'neither answer':<18} {facts['neither']}")
    data = facts.get("data") or {}
    if data.get("used"):
        lines.append(
            f"{'photos':<18} {data['used']} used, {data.get('rejected', 0)} rejected, {data.get('excluded', 0)} excluded"
        )
    lines.append(f"{'model':<18} {facts['model']}")
    lines.append(f"{'report':<18} {facts['report']}  (open it in a browser)")
    rows = facts.get("artefacts") or []
    if rows:
        lines.append(f"{'artefacts':<18} {facts['art_dir']}  (manifest.json, parity.md)")
        width = max(len(r["file"]) for r in rows)
        lines += ["", f"{'artefact':<{width}}  {'MB':>6}  {'latency':>10}  parity"]
        for r in rows:
            lines.append(f"{r['file']:<{width}}  {r['mb']:>6.2f}  {latency_text(r['latency']):>10}  {r['verdict']}")
        if facts.get("keras_latency"):
            lines.append(f"{'(Keras model, for reference)':<{width}}  {'':>6}  {latency_text(facts['keras_latency']):>10}")
    else:
        lines.append(f"{'artefacts':<18} none (not exported)")
    lines += ["", "try next"]
    run_dir = _quote(facts["run_dir"])
    if rows:
        lines.append(f"  catdog serve {_quote(facts['art_dir'])}      # web page + JSON API on http://127.0.0.1:8000")
    else:
        lines.append(f"  catdog export {run_dir} --out {_quote(str(Path(facts['run_dir']) / 'artefacts'))}")
        lines.append(f"  catdog serve {run_dir}      # web page + JSON API on http://127.0.0.1:8000 (Keras model)")
    photos = [p["name"] for p in facts.get("cam_photos", []) if not p["right"]][:1] + [
        p["name"] for p in facts.get("cam_photos", []) if p["right"]
    ][:1]
    if photos and facts.get("data_dir"):
        images = " ".join(_quote(str(Path(facts["data_dir"]) / n)) for n in photos)
        lines.append(f"  catdog cam {run_dir} {images} --out {_quote(str(Path(facts['run_dir']) / 'cam'))}")
    else:
        lines.append(f"  catdog cam {run_dir} PHOTO... --out {_quote(str(Path(facts['run_dir']) / 'cam'))}")
    lines.append(f"  catdog predict {run_dir} TEST_DIR --out submission.csv")
    return "\n".join(lines)


class Stage:
    """Times one stage of `catdog run` and prints its line on success:

        with Stage("training") as stage:
            metrics = ...
            stage.figure = training_figure(metrics)
    """

    def __init__(self, name: str):
        self.name, self.figure, self.seconds = name, "", 0.0

    def __enter__(self) -> "Stage":
        import time

        self._start = time.perf_counter()
        return self

    def __exit__(self, kind, value, traceback) -> None:
        import time

        self.seconds = time.perf_counter() - self._start
        if kind is None:
            print(stage_line(self.name, self.figure, self.seconds), flush=True)
