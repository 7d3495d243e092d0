"""`catdog parity` as a function: run the comparison, give the exit code and the lines to print."""

from __future__ import annotations

from pathlib import Path

from catdog.contract import ArtDir
from catdog.data.limits import MAX_PIXELS
from catdog.errors import CatdogError


def labelled_photos(data: str | None):
    """The labelled photos of DATA (for the int8 accuracy check; each file it cannot use is named),
    or None without DATA; a one-line CatdogError where none is labelled."""
    if not data:
        return None
    from catdog.features.stage import scan_printing

    labelled = [s for s in scan_printing(data)[0] if s.label is not None]
    if not labelled:
        from catdog.data import no_labels

        raise CatdogError(f"--labelled {data}: {no_labels(data)}")
    return labelled


def parity_stage(art_dir: Path, images, labelled=None, run_dir=None, edge: bool = True, max_pixels: int = MAX_PIXELS) -> tuple[int, dict]:
    """Compare every artefact in ART_DIR with the Keras model (`catdog.parity.run_parity`);
    (exit code: 0 passed, 1 failed; the report)."""
    from catdog.parity import run_parity

    report = run_parity(art_dir, images, labelled, run_dir, edge, max_pixels)
    return (0 if report["passed"] else 1), report


def parity_lines(art_dir: Path, report: dict) -> list[str]:
    """What `catdog parity` prints: parity.md, then the verdict."""
    art_dir = Path(art_dir)
    return [(art_dir / ArtDir.PARITY_MD).read_text(), f"parity: {'passed' if report['passed'] else 'FAILED'} ({art_dir / 'parity.json'})"]
