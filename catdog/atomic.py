"""Atomic file writes: a temporary name in the same folder, flushed to disk, then `os.replace`.

A reader, or a run killed at any instant (kill -9, a laptop that sleeps and dies), sees the old
file or the new one under the final name, never half of one. Temporary names are unique per
write (`.NAME.tmp-<token>SUFFIX`, hidden, the real suffix kept for writers that choose the format
by it) so concurrent runs never share one; a killed run leaves at most such a file behind, never
a wrong one under the final name.

    write_text(path, text)            write_bytes(path, data)
    with open_atomic(path, "w", newline="") as f: csv.writer(f)...
    with staged(path) as tmp: fig.savefig(tmp)         # any writer that takes a path
    with staged_dir(path) as tmp: mlmodel.save(tmp)    # a folder (.mlpackage), replaced whole
"""

from __future__ import annotations

import os
import secrets
import shutil
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from pathlib import Path
from typing import IO

from catdog.errors import CatdogError


def temporary_name(path: str | os.PathLike) -> Path:
    """A unique hidden name beside `path` with the same suffix: `.NAME.tmp-<token>SUFFIX`."""
    path = Path(path)
    # a name near the 255-byte limit could not take the 14 more: cut by bytes (80 CJK characters are 240)
    room = max(1, 240 - len(os.fsencode(path.suffix)) - 14)
    stem = os.fsencode(path.stem)[:room].decode("utf-8", "ignore") or "x"
    return path.with_name(f".{stem}.tmp-{secrets.token_hex(4)}{path.suffix}")


def check_writable(path: str | os.PathLike) -> None:
    """A one-line CatdogError, before any work, where `path` cannot be written (a read-only or
    immutable folder): a file is made beside it and removed; `path` itself is not touched."""
    path = Path(path)
    _make_parent(path)
    probe = temporary_name(path)
    try:
        probe.write_bytes(b"")
        probe.unlink()
    except OSError as exc:
        raise CatdogError(f"{path}: cannot be written ({exc.strerror or exc}); give a folder you can write to") from None


def _make_parent(path: Path) -> None:
    """The folder `path` goes in, made where missing; a one-line CatdogError where it cannot be."""
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise CatdogError(f"{path}: cannot make its folder {path.parent} ({exc.strerror or exc}); give another path") from None


def _fsync_dir(folder: Path) -> None:
    try:  # the rename itself reaches the disk (best effort: not every OS opens folders)
        fd = os.open(folder, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def _fsync_file(path: Path) -> None:
    with open(path, "rb+") as f:
        os.fsync(f.fileno())


def _name_the_target(exc: BaseException, tmp: Path, path: Path) -> None:
    """An OSError about the hidden temporary file names the file the user asked for instead (the
    CLI prints `FILE: reason`; `.NAME.tmp-1a2b3c4d` is nothing the user knows)."""
    if isinstance(exc, OSError) and exc.filename is not None and str(exc.filename) == str(tmp):
        exc.filename = str(path)


@contextmanager
def staged(path: str | os.PathLike, fsync: bool = True) -> Iterator[Path]:
    """Yield a temporary path beside `path`; when the block ends without error, the file written
    there replaces `path` atomically; on error it is removed and `path` is left as it was."""
    path = Path(path)
    if path.is_symlink():  # written through: the rename replaced the link itself (and, as root, /dev/stdout)
        path = Path(os.path.realpath(path))
    _make_parent(path)
    tmp = temporary_name(path)
    try:
        yield tmp
        if fsync:
            _fsync_file(tmp)
        os.replace(tmp, path)
    except BaseException as exc:
        with suppress(OSError):  # its own error (a name too long) would replace the one being raised
            tmp.unlink(missing_ok=True)
        _name_the_target(exc, tmp, path)
        raise
    if fsync:
        _fsync_dir(path.parent)


@contextmanager
def open_atomic(path: str | os.PathLike, mode: str = "w", **kwargs) -> Iterator[IO]:
    """`open(path, mode, **kwargs)` whose content appears under `path` only once it is complete."""
    if not mode.startswith("w"):
        raise ValueError(f"open_atomic writes a whole file; mode {mode!r} is not a write mode")
    with staged(path) as tmp:
        with open(tmp, mode, **kwargs) as f:
            yield f


def write_bytes(path: str | os.PathLike, data: bytes) -> Path:
    with open_atomic(path, "wb") as f:
        f.write(data)
    return Path(path)


def write_text(path: str | os.PathLike, text: str, encoding: str = "utf-8") -> Path:
    with open_atomic(path, "w", encoding=encoding) as f:
        f.write(text)
    return Path(path)


@contextmanager
def staged_dir(path: str | os.PathLike) -> Iterator[Path]:
    """Yield a temporary folder path beside `path` (not created: writers such as coremltools make
    it); when the block ends without error it takes the place of `path`, replaced whole.

    A folder cannot be swapped in one step over a non-empty one: the old folder is first renamed
    aside, then the new one renamed in, then the old one deleted. A kill between the two renames
    leaves no folder under `path` (missing, never mixed or half-written) and the old one under a
    `.NAME.old-<token>` name."""
    path = Path(path)
    _make_parent(path)
    tmp = temporary_name(path)
    try:
        yield tmp
        replace_dir(tmp, path)
    except BaseException as exc:
        shutil.rmtree(tmp, ignore_errors=True)
        _name_the_target(exc, tmp, path)
        raise


def replace_dir(new: str | os.PathLike, path: str | os.PathLike) -> None:
    """Put the folder `new` at `path`, replacing whatever is there (see `staged_dir`)."""
    new, path = Path(new), Path(path)
    old = None
    if path.exists():
        old = path.with_name(f".{path.name}.old-{secrets.token_hex(4)}")
        os.replace(path, old)
    os.replace(new, path)
    _fsync_dir(path.parent)
    if old is not None:
        shutil.rmtree(old, ignore_errors=True) if old.is_dir() else old.unlink(missing_ok=True)
