"""`catdog features` as a function: scan DATA, leave out the excluded photos, extract (here or on
Ray), list the rejected files; and the helpers the other photo-reading stages share.

Light at import (the CLI imports it lazily, inside its handlers): numpy and Keras come with the
functions that need them.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from pathlib import Path

from catdog.errors import CatdogError


@dataclass(frozen=True)
class Extraction:
    """How photos become features: `catdog features`' settings, which `catdog run` shares (its
    views and negatives are extracted with the same ones). weights None: ImageNet's."""

    backbone: str
    weights: str | None
    image_size: int
    engine: str
    batch_size: int
    max_pixels: int


def scan_printing(data: str, any_name: bool = False):
    """`catdog.data.scan(data, any_name)`, printing each rejected file's line; (samples, rejections)."""
    from catdog.data import scan

    samples, rejections = scan(data, any_name)
    for r in rejections:
        print(r.line())
    return samples, rejections


def report_rejections(rejections, csv_path: Path | None) -> None:
    """List the rejected files in `csv_path` (each was printed when it was found)."""
    from catdog.data import write_rejections

    if csv_path is not None:
        write_rejections(csv_path, rejections)
        if rejections:
            print(f"{len(rejections)} file(s) rejected, listed in {csv_path}")
    elif rejections:  # evaluate without --json or --rejected: counted, and how to list them
        print(f"{len(rejections)} file(s) rejected (named above; --rejected FILE lists them)")


def on_ray(local, ray: str | None, workers: int | None):
    """`local` (`catdog.features.extract_features` or `catdog.training.predict_images`), or with
    `ray` (an ADDRESS, or "local") its twin in catdog.features.distributed, bound to that cluster
    and `workers` (same arguments, same result)."""
    if ray is None:
        if workers is not None:
            raise CatdogError(f"--workers {workers}: sets the Ray actor pool; add --ray (a local Ray instance) or --ray ADDRESS")
        return local
    from functools import partial

    from catdog.features import distributed
    from catdog.features.cache import extract_features
    from catdog.training import predict_images

    twins = {extract_features: distributed.extract_features_ray, predict_images: distributed.predict_images_ray}
    return partial(twins[local], address=None if ray == "local" else ray, workers=workers)


def features_stage(
    data: str,
    out: Path,
    rejected_csv: Path,
    extraction: Extraction,
    exclude: str | None = None,
    ray: str | None = None,
    workers: int | None = None,
    view: str = "plain",
    shift_photos: int | None = None,
    echo: bool = True,
    labelled: bool = False,
):
    """Extract the features of DATA into `out` as `extraction` says; (report, its one-line summary).

    Prints the rejected files as they are found, the excluded count (`exclude`: a suspects.csv or
    a plain list of names) and where the rejections are listed; the summary is the caller's to print.
    view: each photo as seen by that view (catdog.data.views); shift_photos: only a seeded subset of
    about that many labelled photos, as many of each class (catdog.data.shift_photos). echo=False:
    the rejected and excluded files are not printed again (a view of photos already extracted).
    labelled: DATA must hold labelled photos (said before anything is extracted).
    """
    from catdog.features.cache import extract_features

    if echo:
        samples, scan_rejections = scan_printing(data)
    else:
        from catdog.data import scan

        samples, scan_rejections = scan(data)
    excluded = 0
    if exclude:
        from catdog.data import listed, unlisted_note
        from catdog.inspect import read_exclude

        names = read_exclude(exclude)
        kept = [s for s in samples if not listed(s.name, names)]
        excluded = len(samples) - len(kept)
        note = unlisted_note(names, [s.name for s in samples], exclude)
        samples = kept
        if echo:
            print(f"excluded {excluded} photo(s) listed in {exclude}")
            if note:
                print(note)
    if shift_photos:
        from catdog.data import shift_photos as subset

        if samples and all(s.label is None for s in samples):
            raise CatdogError(f"--shift-photos {shift_photos}: takes labelled photos (as many of each class), and {data} has none; leave it out")
        before = len(samples)
        samples = subset(samples, shift_photos)
        if before and not samples:  # it said "no usable photo (0 file(s) rejected)"
            raise CatdogError(f"--shift-photos {shift_photos}: draws {shift_photos // 2} photo(s) of each class, so none; give 2 or more")
    if not samples:
        report_rejections(scan_rejections, rejected_csv)
        if excluded:
            raise CatdogError(f"{data}: all {excluded} usable photo(s) are listed in --exclude {exclude}; nothing is left to extract")
        raise CatdogError(f"{data}: no usable photo ({len(scan_rejections)} file(s) rejected, see {rejected_csv})")
    if labelled and all(s.label is None for s in samples):
        from catdog.data import no_labels

        report_rejections(scan_rejections, rejected_csv)
        raise CatdogError(f"{data}: {no_labels(data)}")
    if view != "plain" and ray is not None:
        raise CatdogError(f"--view {view}: views are extracted here, not on Ray; leave out --ray")
    extra = {} if view == "plain" else {"view": view, "echo": echo}
    settings = {**asdict(extraction), "weights": extraction.weights or "imagenet"}
    try:
        report = on_ray(extract_features, ray, workers)(samples, out, **settings, excluded=excluded, **extra)
    except BaseException:  # no weights, Ctrl-C before the first batch, …: no empty file left behind the error
        _drop_if_empty(Path(out))
        raise
    rejections = scan_rejections + report.rejections
    if echo or rejected_csv is not None:  # a view's are the plain photos', counted once (run said them once a view)
        report_rejections(rejections, rejected_csv)
    used = len(samples) - len(report.rejections)
    if used == 0:
        _drop_if_empty(Path(out))
        raise CatdogError(f"{data}: no usable photo ({len(rejections)} file(s) rejected, see {rejected_csv})")
    speed = f" at {report.images_per_s:.1f} images/s" if report.computed else ""
    line = f"{used} photos in {out} ({report.computed} computed{speed}, {report.cached} from cache, {len(rejections)} rejected)"
    return report, line


def _drop_if_empty(path: Path) -> None:
    """A feature file with no row (every photo rejected) holds nothing: not left behind the error."""
    import h5py

    try:
        with h5py.File(path, "r") as f:
            empty = int(f.attrs.get("rows", -1)) == 0
    except (OSError, ValueError):
        return
    if empty:
        path.unlink(missing_ok=True)
