"""What `catdog train` and `catdog run` print about a RUN_DIR's metrics.json: the selection, the
fit on every photo, and the expected log loss on unseen photos with its interval."""

from __future__ import annotations


def l2_text(head: dict) -> str:
    """metrics.json's chosen l2: "l2 0.003", or with late fusion each head's, "l2 0.001 / 0.01 / 0.003"."""
    return "l2 " + " / ".join(f"{v:g}" for v in ((head.get("late_fusion") or {}).get("l2") or [head["l2"]]))


def estimate_line(metrics: dict) -> str:
    """One line: the nested-CV log loss with its bootstrap 95 % interval and the folds' range."""
    e = metrics.get("estimate")
    if not e:
        return "expected log loss on unseen photos: not estimated (a run made before nested cross-validation)"
    lo, hi = e["log_loss_95"]
    folds = e["fold_log_loss"]
    return (
        f"expected log loss on unseen photos: {e['log_loss']:.4f} (95 % interval {lo:.4f}-{hi:.4f}; "
        f"{len(folds)} outer folds {min(folds):.4f}-{max(folds):.4f}), accuracy {e['accuracy']:.2%} "
        f"({e['accuracy_95'][0]:.2%}-{e['accuracy_95'][1]:.2%}); nested cross-validation on {e['n']} photos"
    )


def bound_note(temperature: float) -> str:
    """What a temperature at the edge of the search (catdog.training.metrics.fit_temperature's
    0.05..20) means: the held-out predictions are all right (or all wrong), and the fit says only that."""
    from catdog.training.metrics import TEMPERATURE_BOUNDS

    lo, hi = TEMPERATURE_BOUNDS
    if temperature <= lo * 1.01:
        return f"; at the search's bound {lo:g}: no held-out mistake to fit it on, and --calibrated would push every P to 0 or 1 (leave it off)"
    if temperature >= hi / 1.01:
        return f"; at the search's bound {hi:g}: the held-out predictions are no better than chance, and --calibrated would push every P to 0.5"
    return ""


def check_calibrated(temperature: float, option: str = "--calibrated") -> None:
    """A one-line CatdogError where the run's temperature sits at the search's bound (`bound_note`):
    applied, it pushed every P to 0 or 1 (or to 0.5) without a word, though train had said to leave it off."""
    from catdog.errors import CatdogError
    from catdog.training.metrics import TEMPERATURE_BOUNDS

    lo, hi = TEMPERATURE_BOUNDS
    if temperature <= lo * 1.01 or temperature >= hi / 1.01:
        why = "no held-out mistake to fit it on" if temperature <= lo * 1.01 else "held-out predictions no better than chance"
        raise CatdogError(f"{option}: the run's temperature {temperature:.3f} is at the search's bound ({why}): it would push every "
                          f"P to {'0 or 1' if temperature <= lo * 1.01 else '0.5'}; leave {option} off")


def neither_rates(metrics: dict) -> str | None:
    """The "neither" answer's nested-CV figures as one line: the share of cats and dogs kept (and of
    the views the detector learnt from) and of photos with neither rejected, and what measured them;
    None for a run without them."""
    pet = metrics.get("pet") or {}
    if not isinstance(pet.get("keep"), (int, float)):
        return None
    reject = pet.get("reject")
    rejected = (
        f", rejects {reject:.1%} of {pet.get('n_negatives', '?')} photos with neither"
        if isinstance(reject, (int, float)) else ", no photos with neither to measure rejection (pass --negatives DIR)"
    )
    views = "".join(f" ({r['keep']:.1%} of {r['n_photos']} in the {v} view)" for v, r in (pet.get("views") or {}).items())
    # with negatives, a nested CV; without, the threshold's own photos (no detector is fitted)
    how = "nested CV" if str(pet.get("method", "")).startswith("nested") else "in-sample: the photos the threshold was chosen on"
    return (
        f"keeps {pet['keep']:.1%} of {pet.get('n_pets', '?')} cats and dogs{views}{rejected} "
        f"({how}; threshold P(pet) {pet.get('threshold', float('nan')):.3g})"
    )


def metrics_lines(metrics: dict) -> list[str]:
    head, selection = metrics["head"], metrics["selection"]
    grid = ", ".join(f"{k} {v:.4f}" for k, v in selection["cv_log_loss"].items())
    (tn, fp), (fn, tp) = metrics["estimate"]["confusion_matrix"]
    cal = metrics["calibration"]
    lines = [
        f"head: l2 {head['l2']:g} chosen by {head['folds']}-fold CV on the {metrics['n_train']} training photos "
        f"({grid}); fitted on all {metrics['n_train']}" + (f" and their views {', '.join(head['views'])}" if head.get("views") else ""),
        *([f"  late fusion: the mean logit of {len(head['late_fusion']['l2'])} heads (each backbone's columns, then all), "
           + l2_text(head)] if head.get("late_fusion") else []),
        f"  CV temperature {cal.get('folded_into_head', cal['temperature']):.3f}"
        + (" (folded into the head)" if "folded_into_head" in cal else " (`--calibrated` applies it)")
        + (bound_note(cal.get('folded_into_head', cal['temperature']))),
        f"  nested-CV confusion (rows true, cols predicted): cat {tn:4d} {fp:4d} | dog {fn:4d} {tp:4d}",
        estimate_line(metrics),
        *([f"neither answer: {neither_rates(metrics)}"] if neither_rates(metrics) else []),  # `train --negatives` printed none
        *robustness_lines(metrics),
    ]
    return lines


def robustness_lines(metrics: dict) -> list[str]:
    """The shift table: held-out log loss and accuracy of the photos as they are, under each
    shift and under group-held-out folds (metrics.json's "robustness"); none for older runs."""
    block = metrics.get("robustness") or {}
    rows = block.get("rows") or []
    if not rows:
        return []
    lines = [f"  {'held-out photos':<16}{'photos':>7}{'log loss':>10}{'accuracy':>10}  what"]
    for r in rows:
        lines.append(f"  {r['name']:<16}{r['n']:>7d}{r['log_loss']:>10.4f}{r['accuracy']:>10.2%}  {r['what']}")
    if block.get("mean_shifted") is not None:
        lines.append(f"  {'mean shifted':<16}{'':>7}{block['mean_shifted']:>10.4f}{'':>10}  the mean of the shifts' mean and the group folds")
    return lines
