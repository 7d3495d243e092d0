"""A quiet console for the CLI: no TensorFlow, absl, LiteRT or converter chatter unless --verbose.

Where the chatter comes from, and what stops it:

* Native code (TensorFlow's C++ core, absl, LiteRT, the TFLite converter) writes to file
  descriptor 2 itself. TF_CPP_MIN_LOG_LEVEL stops some of it, but TensorFlow 2.21 logs
  "oneDNN custom operations are on" through absl before it reads that variable. So while a
  command runs, fd 2 is a pipe that a thread reads, forwarding every line except the known
  start-up and converter notices (`is_native_noise`). Python's own `sys.stderr` (catdog's
  messages, progress bars) is pointed past the pipe at the terminal, so bars stay live.
  oneDNN itself stays on: only its notice goes (turning it off would change the numbers).
* Python loggers of TensorFlow, absl, Core ML tools, tf2onnx and ONNX Runtime: ERROR and above.
* Converter progress bars (Core ML tools draws one per graph pass): tqdm reads TQDM_DISABLE as
  the default of `disable`, and every catdog bar passes `disable=` itself, so only the
  libraries' bars go. The variable must be set before tqdm is imported, as `quiet` does first.
* Python warnings: deprecation notices of libraries are dropped; any other warning becomes one
  line, `catdog: note: ...`, once (`one_line_warning`), reworded where catdog knows better.
"""

from __future__ import annotations

import _thread
import io
import logging
import os
import re
import signal
import sys
import threading
import time
import warnings
from collections.abc import Iterator
from contextlib import contextmanager

# Lines native libraries write that are not the user's concern (matched at the line start).
NATIVE_NOISE = re.compile(
    r"""
      WARNING:\ All\ log\ messages\ before\ absl::InitializeLog\(\)        # absl, before its set-up
    | [IW]\d{4}\ [\d:.]+\s+\d+\ [\w./-]+:\d+\]                               # absl/glog INFO and WARNING lines
    | INFO:\ Created\ TensorFlow\ Lite\ XNNPACK\ delegate                   # LiteRT interpreter
    | INFO:\ Initialized\ TensorFlow\ Lite\ runtime
    | fully_quantize:\ \d+,\ inference_type:                                # TFLite int8 quantiser
    | To\ enable\ the\ following\ instructions:.*TensorFlow                 # cpu_feature_guard, 2nd line
    | \[[\d-]+\ [\d:,]+\ [EW]\ \d+\ \d+\]\ core_worker\.cc:\d+:\ Actor\ with\ class\ name:.*
        has\ constructor\ arguments\ in\ the\ object\ store                  # Ray Data's actor pool (ray#53727)
    """,
    re.VERBOSE,
)

# Python loggers that report library internals (their errors still show).
LIBRARY_LOGGERS = ("tensorflow", "absl", "coremltools", "tf2onnx", "onnxruntime", "keras", "h5py", "ray")

# Warnings catdog words for the user: (pattern in the warning's text, the one line to print).
REWORDED = (
    (
        re.compile(r"not be able to run predict\(\) on this Core ML model"),
        "Core ML artefacts are written and spec-checked here; they run (and their numbers are checked) on macOS only",
    ),
)

_LIBRARY_NOTICES = (DeprecationWarning, PendingDeprecationWarning, FutureWarning)
_DEPRECATED = re.compile(r"\b(?:is|are|has been)\s+deprecated\b", re.IGNORECASE)


_quiet = False  # inside `quiet()`, not verbose


def libraries_quiet() -> bool:
    """True while a command runs under `quiet()` without --verbose: code that starts a library
    with its own log settings (Ray's `init`) asks this rather than the loggers' levels."""
    return _quiet


def is_native_noise(line: str) -> bool:
    """True for a start-up or converter notice of TensorFlow, absl or LiteRT (one line, no newline)."""
    return NATIVE_NOISE.match(line.lstrip("\r")) is not None


def one_line_warning(message, category: type[Warning], filename: str) -> str | None:
    """The line to print for a Python warning, or None to drop it.

    Deprecation notices from libraries are for their developers; any other warning is its first
    line, reworded where catdog knows what it means, with the package it came from.
    """
    text = str(message).strip()
    for pattern, line in REWORDED:
        if pattern.search(text):
            return f"catdog: note: {line}"
    from_library = "catdog" not in _package(filename)
    if from_library and (issubclass(category, _LIBRARY_NOTICES) or _DEPRECATED.search(text)):
        return None  # some libraries announce deprecations as UserWarning (tf.lite.Interpreter's)
    first = text.splitlines()[0] if text else category.__name__
    return f"catdog: note: {first} ({category.__name__} from {_package(filename)})"


def _package(filename: str) -> str:
    """The top-level package a source file belongs to ("keras" for .../site-packages/keras/src/x.py)."""
    parts = re.split(r"[\\/]", filename)
    for marker in ("site-packages", "dist-packages"):
        if marker in parts and parts.index(marker) + 1 < len(parts):
            return parts[parts.index(marker) + 1].removesuffix(".py")
    return "catdog" if "catdog" in parts else (parts[-1] or "python")


@contextmanager
def quiet(verbose: bool = False) -> Iterator[None]:
    """Run a command with the library chatter dropped (see the module docstring); verbose: all of it."""
    global _quiet
    if verbose:
        yield
        return
    env = {"TF_CPP_MIN_LOG_LEVEL": "2", "TQDM_DISABLE": "1"}  # TQDM_DISABLE: library bars only (see above)
    env = {k: v for k, v in env.items() if k not in os.environ}  # a user's own setting wins
    os.environ.update(env)
    levels = {name: logging.getLogger(name).level for name in LIBRARY_LOGGERS}
    for name in LIBRARY_LOGGERS:
        logging.getLogger(name).setLevel(logging.ERROR)
    seen: set[str] = set()
    show = warnings.showwarning

    def showwarning(message, category, filename, lineno, file=None, line=None):
        text = one_line_warning(message, category, filename)
        if text and text not in seen:
            seen.add(text)
            print(text, file=sys.stderr)

    warnings.showwarning = showwarning
    _quiet = True
    try:
        with filtered_fd2(is_native_noise):
            yield
    finally:
        _quiet = False
        for name in env:  # read once at import by TensorFlow and tqdm; a caller's process gets its environment back
            os.environ.pop(name, None)
        warnings.showwarning = show
        for name, level in levels.items():
            logging.getLogger(name).setLevel(level)


def close_bars() -> None:
    """Close the progress bars a stopped command left open (an exception skips their close()):
    each is drawn once more now, before the command's last line, not after it when collected."""
    from tqdm import tqdm

    for bar in list(getattr(tqdm, "_instances", ())):
        bar.close()


class Terminated(KeyboardInterrupt):
    """SIGTERM (kill, timeout, docker stop) delivered as an interrupt: the command's cleanup runs
    and it says how to resume, as after Ctrl-C."""


def _terminated(signum, frame) -> None:
    raise Terminated


def terminate_as_interrupt() -> None:
    """Deliver SIGTERM to the main thread as `Terminated`. Called again after a library that puts
    its own handler in place (Ray's driver: a crash dump and SIGABRT, exit 134)."""
    if threading.current_thread() is threading.main_thread():
        signal.signal(signal.SIGTERM, _terminated)


@contextmanager
def interrupts_kept() -> Iterator[None]:
    """Ctrl-C, and SIGTERM (`Terminated`), always stop the command. Python raises KeyboardInterrupt
    wherever the main thread is, and one raised inside a finaliser (TensorFlow's `__del__`s run all
    through an export) is printed as "Exception ignored" and lost, the command going on; such a one
    is delivered again here."""
    hook = sys.unraisablehook
    main_thread = threading.current_thread() is threading.main_thread()
    term = signal.getsignal(signal.SIGTERM) if main_thread else None
    terminate_as_interrupt()

    def again() -> None:
        time.sleep(0.01)  # out of the finaliser (and of this hook, where it would be lost the same way)
        _thread.interrupt_main()

    def unraisable(unraisable) -> None:
        if unraisable.exc_type is not None and issubclass(unraisable.exc_type, KeyboardInterrupt):
            threading.Thread(target=again, name="catdog-ctrl-c", daemon=True).start()
            return
        hook(unraisable)

    sys.unraisablehook = unraisable
    try:
        yield
    finally:
        sys.unraisablehook = hook
        if main_thread:
            signal.signal(signal.SIGTERM, term if term is not None else signal.SIG_DFL)


_terminal: io.TextIOWrapper | None = None


def _terminal_stderr() -> io.TextIOWrapper:
    """A text stream on a copy of the process's fd 2, made once and never closed: objects that
    keep a reference to it (log handlers, bars) stay valid after the filter is gone."""
    global _terminal
    if _terminal is None:
        _terminal = io.TextIOWrapper(
            io.FileIO(os.dup(2), "w"), encoding=sys.stderr.encoding or "utf-8", errors="backslashreplace", write_through=True
        )
    return _terminal


def _is_fd2(stream) -> bool:
    try:
        return stream.fileno() == 2
    except (AttributeError, OSError, ValueError, io.UnsupportedOperation):
        return False


def child_process(parent: int) -> None:
    """Set up a helper process of a catdog command (export's side process; a pool initializer):
    library loggers at errors only and warnings dropped before any library is imported (fd 2 and
    the environment are the parent's, filtered as its own), and an exit the moment the parent is
    gone (killed, say), so that nothing outlives the command holding its output pipes or files.
    Ctrl-C is the parent's to handle (the terminal sends it to both): the parent stops this one."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    from tqdm import tqdm

    # a thread lock for the converters' bars: tqdm's default one is a named semaphore, reported
    # as leaked by multiprocessing's tracker ("1 leaked semaphore objects") when this one is killed
    tqdm.set_lock(threading.RLock())
    warnings.simplefilter("ignore")
    for name in LIBRARY_LOGGERS:
        logging.getLogger(name).setLevel(logging.ERROR)

    def watch() -> None:
        while os.getppid() == parent:
            time.sleep(0.2)
        os._exit(1)

    threading.Thread(target=watch, name="catdog-parent-watch", daemon=True).start()


_real_fd2: int | None = None  # the terminal's fd 2 while `filtered_fd2` holds fd 2


@contextmanager
def unfiltered_fd2() -> Iterator[None]:
    """Inside, fd 2 is the terminal again (where `filtered_fd2` is active): for starting a helper
    process that outlives the command and writes nothing, such as multiprocessing's resource
    tracker, which would otherwise hold the filter's pipe open and delay the command's exit."""
    if _real_fd2 is None:
        yield
        return
    pipe = os.dup(2)
    os.dup2(_real_fd2, 2)
    try:
        yield
    finally:
        os.dup2(pipe, 2)
        os.close(pipe)


@contextmanager
def filtered_fd2(drop) -> Iterator[None]:
    """While inside, lines written to fd 2 by native code reach the real fd 2 only if not drop(line).

    Python's sys.stderr, where it is fd 2 (the CLI; not under pytest's capture), writes past the
    filter, so progress bars are not held back until a newline.
    """
    sys.stderr.flush()
    python_stderr = sys.stderr
    if _is_fd2(python_stderr):
        sys.stderr = _terminal_stderr()  # a copy of fd 2 taken before fd 2 becomes the pipe
    global _real_fd2
    target = os.dup(2)
    _real_fd2 = target
    read_end, write_end = os.pipe()
    os.dup2(write_end, 2)
    os.close(write_end)

    def forward() -> None:
        pending = b""
        try:
            while chunk := os.read(read_end, 65536):
                *lines, pending = (pending + chunk).split(b"\n")
                kept = [line for line in lines if not drop(line.decode("utf-8", "replace"))]
                if kept:
                    os.write(target, b"\n".join(kept) + b"\n")
            if pending and not drop(pending.decode("utf-8", "replace")):
                os.write(target, pending)
        except OSError:  # the terminal went away: nothing left to show
            pass

    thread = threading.Thread(target=forward, name="catdog-stderr-filter", daemon=True)
    thread.start()
    try:
        yield
    finally:
        sys.stderr.flush()
        sys.stderr = python_stderr
        _real_fd2 = None
        os.dup2(target, 2)  # closes the pipe's last write end: the thread reads to its end
        thread.join(timeout=5)
        os.close(read_end)
        os.close(target)
