"""A newcomer's first minutes: `catdog --help` is instant, and no command prints TensorFlow,
absl, LiteRT or converter logs unless --verbose. Commands run as a user runs them (conftest.catdog_cli)."""

from __future__ import annotations

import ast
import os
import re
import statistics
import subprocess
import sys
import time
import warnings
from pathlib import Path

import pytest

from catdog.console import filtered_fd2, interrupts_kept, is_native_noise, one_line_warning
from conftest import REPO, catdog_cli, copy_photos, kaggle_names, needs_shared

HELP_LIMIT_S = 0.5
# What a TensorFlow / absl / LiteRT / converter log line looks like, by shape rather than by words
# (catdog's own help names TensorFlow and absl in --verbose's description).
LIBRARY_LOG = re.compile(
    r"""^\s*(?:
      [IWEF]\d{4}\ [\d:.]+\s+\d+\ \S+:\d+\]                       # absl / glog prefix
    | WARNING:\ All\ log\ messages\ before\ absl
    | INFO:\ (?:Created|Initialized)\ TensorFlow\ Lite
    | To\ enable\ the\ following\ instructions
    | (?:DEBUG|INFO|WARNING|ERROR):(?:tensorflow|absl|coremltools|tf2onnx|onnxruntime|keras|root):   # Python logging
    | (?:Running|Converting)\ (?:MIL|TF\ Frontend|TensorFlow\ Graph|compression)                       # Core ML tools bars
    | Getting\ Core\ ML\ weights
    | fully_quantize:
    | \S+site-packages\S+:\d+:\ \w+Warning:                                                             # raw Python warnings
    | \[[\d-]+\ [\d:,]+\ [IWEF]\ \d+\ \d+\]\ \S+:\d+:                                                  # Ray's C++ log
    | [\d-]+\ [\d:,]+\s+(?:DEBUG|INFO|WARNING|ERROR)\ \S+\.py:\d+\ --                                   # Ray's Python log
    | (?:\x1b\[\d+m)?\(.*?\bpid=\d+\)                                                                   # a Ray worker's forwarded output
    )""",
    re.VERBOSE,
)


def library_lines(output: str) -> list[str]:
    """The lines of `output` (split at newlines and at progress-bar carriage returns) that are library logs."""
    return [line for line in re.split(r"[\r\n]+", output) if LIBRARY_LOG.match(line)]


def _seconds(*args: str) -> float:
    start = time.perf_counter()
    done = subprocess.run([str(Path(sys.executable).with_name("catdog")), *args], capture_output=True, cwd=REPO)
    assert done.returncode == 0, done.stderr.decode()
    return time.perf_counter() - start


def test_help_is_instant_and_quiet():
    """Median of 3 runs under 0.5 s, for `catdog --help` and a sub-command's help."""
    for args in (["--help"], ["run", "--help"], ["features", "--help"]):
        median = statistics.median(_seconds(*args) for _ in range(3))
        assert median < HELP_LIMIT_S, f"catdog {' '.join(args)}: median {median:.2f} s"
    result = catdog_cli("--help")
    assert result.returncode == 0 and "COMMAND" in result.output and "report" in result.output
    assert library_lines(result.output) == []


def test_a_wrong_argument_is_one_line_before_any_work(tmp_path):
    """A mistyped command line is one line (what is wrong, where the usage is), exit 2, and an
    output path that cannot be written (a folder given for a file, a file for a folder) is refused
    there, before minutes of work end in a traceback. A real `catdog` process each time."""
    folder, file = tmp_path / "folder", tmp_path / "file.txt"
    folder.mkdir()
    file.write_text("")
    cases = {
        ("predict", "RUN", "TEST", "--out", str(folder)):
            f"catdog predict: error: argument --out: {folder} is a folder; give a file name, such as {folder / 'submission.csv'}",
        ("evaluate", "RUN", "DATA", "--json", str(folder)):
            f"catdog evaluate: error: argument --json: {folder} is a folder; give a file name, such as {folder / 'out.json'}",
        ("export", "RUN", "--out", str(file)): f"catdog export: error: argument --out: {file} is a file; give a folder (made where missing)",
        ("cam", "RUN", "a.jpg", "--out", str(file)): f"catdog cam: error: argument --out: {file} is a file; give a folder (made where missing)",
        ("parity", "ART"): "catdog parity: error: the following arguments are required: --images",
        # said after the model had loaded (8 s)
        ("export", "RUN", "--out", str(folder), "--formats", "tflight"):
            "catdog export: error: argument --formats: unknown format 'tflight'; choose from coreml, tflite, onnx",
        ("run", "DATA", "--precision", "fp32,FP8"): "catdog run: error: argument --precision: unknown precision 'fp8'; choose from fp32, fp16, int8",
        ("nope",): "catdog: error: argument COMMAND: invalid choice: 'nope'",
        # numbers out of range: each was a traceback, or worse (port 99999 served on 34463)
        ("cam", "RUN", "a.jpg", "--out", str(folder), "--size", "0"): "catdog cam: error: argument --size: 0 is under 1; give 1 or more",
        ("predict", "RUN", "TEST", "--out", "s.csv", "--batch-size", "0"): "catdog predict: error: argument --batch-size: 0 is under 1",
        ("serve", "ART", "--port", "99999"): "catdog serve: error: argument --port: 99999 is out of range; give 0 to 65535",
        ("serve", "ART", "--threads", "0"): "catdog serve: error: argument --threads: 0 is out of range; give 1 to 256",
        # a traceback ("can't start new thread") after 20 s
        ("serve", "ART", "--threads", "100000"): "catdog serve: error: argument --threads: 100000 is out of range; give 1 to 256",
        ("train", "F.h5", "--out", str(folder), "--seed", "-1"): "catdog train: error: argument --seed: -1 is out of range; give 0 to 4294967295",
        ("features", "DATA", "--out", "f.h5", "--batch-size", "two"): "catdog features: error: argument --batch-size: 'two' is not a whole number",
        ("finetune", "RUN", "DATA", "--out", str(folder), "--lr", "-1"): "catdog finetune: error: argument --lr: '-1': give a positive number",
        # scikit-learn's and KMeans' tracebacks, and a view trained on twice
        ("train", "F.h5", "--out", str(folder), "--l2=nan"): "catdog train: error: argument --l2: 'nan': give positive numbers",
        ("train", "F.h5", "--out", str(folder), "--l2", "0.01,inf"): "catdog train: error: argument --l2: '0.01,inf': give positive numbers",
        ("train", "F.h5", "--out", str(folder), "--seed", "99999999999999999999"): "catdog train: error: argument --seed: 99999999999999999999 is out of range",
        ("train", "F.h5", "--out", str(folder), "--views", "mirror,mirror"): "catdog train: error: argument --views: mirror: named twice",
        ("train", "F.h5", "--out", str(folder), "--views", "none,mirror"): "catdog train: error: argument --views: none,mirror: none means the photos only",
        ("train", "F.h5", "--out", str(folder), "--l2", "0.01,,0.1"): "catdog train: error: argument --l2: '0.01,,0.1': an empty item",
        ("predict", "RUN", "TEST", "--out", ""): "catdog predict: error: argument --out: an empty path; give a file name, such as submission.csv",
        ("export", "RUN", "--out", " "): "catdog export: error: argument --out: an empty path; give a folder",
        # a stream or a device: `-` made a file named "-", and /dev/stdout (as root) was replaced by a file
        ("predict", "RUN", "TEST", "--out", "-"): "catdog predict: error: argument --out: - is not a file (a stream or a device); give a file name",
        ("evaluate", "RUN", "DATA", "--json", "/dev/stdout"): "catdog evaluate: error: argument --json: /dev/stdout is not a file (a stream or a device)",
        # an output named as a photo: `--out photos/1.jpg` wrote the submission over the photo
        ("predict", "RUN", "TEST", "--out", str(folder / "1.JPG")):
            f"catdog predict: error: argument --out: {folder / '1.JPG'} is named as a photo (.JPG); give a name such as {folder / 'submission.csv'}",
        ("predict", "RUN", "TEST", "--out", "s.csv", "--rejected", str(folder / "cat.1.png")):
            f"catdog predict: error: argument --rejected: {folder / 'cat.1.png'} is named as a photo (.png)",
        # alternatives (README: [--clip LOW HIGH | --no-clip]); both were accepted, --no-clip won
        ("predict", "RUN", "TEST", "--out", "s.csv", "--clip", "0.1", "0.9", "--no-clip"):
            "catdog predict: error: argument --no-clip: not allowed with argument --clip",
    }
    for args, expected in cases.items():
        result = catdog_cli(*args)
        lines = result.output.strip().splitlines()
        assert result.returncode == 2 and len(lines) == 1 and lines[0].startswith(expected), (args, result.output)
        assert lines[0].endswith("--help)"), lines
    assert list(folder.iterdir()) == [] and file.read_text() == ""


def test_parsing_arguments_imports_no_heavy_library():
    """What keeps --help instant: building the parser (every sub-command's options, backbone
    list and pixel limit included) imports none of these."""
    heavy = ("numpy", "PIL", "h5py", "keras", "tensorflow", "cv2", "matplotlib", "onnx", "coremltools", "tqdm")
    code = (
        "import sys; from catdog.cli import build_parser; p = build_parser(); p.format_help(); "
        "[a.choices[c].format_help() for a in p._subparsers._group_actions for c in a.choices]; "
        f"print([m for m in {heavy!r} if m in sys.modules])"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=REPO, check=True)
    assert done.stdout.strip() == "[]"


@needs_shared
def test_features_is_quiet_unless_verbose(tmp_path):
    """`catdog features` on real photos prints its progress and result, no library log;
    --verbose shows them (so the counter above does see real TensorFlow lines)."""
    data = copy_photos(tmp_path / "data", kaggle_names("cat", range(300, 303)) + kaggle_names("dog", range(300, 303)))
    quiet = catdog_cli("features", str(data), "--out", str(tmp_path / "quiet.h5"))
    assert quiet.returncode == 0, quiet.output
    assert library_lines(quiet.output) == []
    assert "features: 6 photos" in quiet.output
    loud = catdog_cli("features", str(data), "--out", str(tmp_path / "quiet.h5"), "--verbose")  # cached: TF import only
    assert loud.returncode == 0 and "6 from cache" in loud.output, loud.output
    assert len(library_lines(loud.output)) >= 2, loud.output  # absl's preamble and oneDNN's notice at least


@needs_shared
def test_catdog_run_is_quiet(verified_run):
    """The whole chain (features, training, Core ML, TFLite and ONNX export, parity, report) prints
    not one library log line, and few lines in all."""
    _, result = verified_run
    assert library_lines(result.output) == [], library_lines(result.output)[:5]
    printed = [line for line in result.output.split("\n") if line.strip() and "\r" not in line]  # bars redraw with \r
    assert len(printed) < 45, result.output


def test_native_lines_are_filtered_at_the_file_descriptor(capfd):
    """Bytes written straight to fd 2 (as C++ code does) pass the filter unless they are known noise."""
    noise = (
        b"WARNING: All log messages before absl::InitializeLog() is called are written to STDERR\n"
        b"I0000 00:00:1795602158.310511   22600 port.cc:153] oneDNN custom operations are on.\n"
        b"INFO: Created TensorFlow Lite XNNPACK delegate for CPU.\n"
    )
    with filtered_fd2(is_native_noise):
        os.write(2, noise + b"E0000 00:00:1795602158.3 22600 x.cc:1] a real error\nplain text from C\n")
    err = capfd.readouterr().err
    assert "a real error" in err and "plain text from C" in err
    assert "absl" not in err and "oneDNN" not in err and "XNNPACK" not in err


def test_ctrl_c_inside_a_finaliser_still_stops_the_command(capsys):
    """Python raises a Ctrl-C's KeyboardInterrupt wherever the main thread is; in a finaliser (the
    `__del__`s TensorFlow runs all through an export) it was printed and lost, and `catdog export`
    went on to the end. Inside a command it reaches the command's own code instead."""
    import signal

    class Finalised:
        def __del__(self):
            raise KeyboardInterrupt  # what the SIGINT handler raises there

    # Python's own handler, as a catdog process started from a terminal has it (pytest-xdist's
    # workers ignore SIGINT, and a signal that is ignored is not delivered again)
    before = signal.signal(signal.SIGINT, signal.default_int_handler)
    went_on, hook = False, sys.unraisablehook
    try:
        with pytest.raises(KeyboardInterrupt):
            with interrupts_kept():
                thing = Finalised()
                del thing
                deadline = time.monotonic() + 5
                while time.monotonic() < deadline:  # the command's own work
                    pass
                went_on = True
    finally:
        signal.signal(signal.SIGINT, before)
    assert not went_on
    assert "Exception ignored" not in capsys.readouterr().err
    assert sys.unraisablehook is hook  # put back: the hook is the command's only


@needs_shared
def test_ctrl_c_says_whether_the_command_resumes(subset_run, train_subset, tmp_path):
    """Ctrl-C in the middle of `catdog cam` (a terminal's SIGINT to the process group): exit 130 and
    one line, which does not promise a resume that `cam` has no means of (features, export and run
    do; their line says so, `tests/test_kill.py`)."""
    import signal

    launch = "import os, signal, sys; signal.signal(signal.SIGINT, signal.SIG_DFL); os.execv(sys.executable, [sys.executable, *sys.argv[1:]])"
    proc = subprocess.Popen([sys.executable, "-c", launch, "-m", "catdog.cli", "cam", str(subset_run), str(train_subset), "--out", str(tmp_path)],
                            cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, start_new_session=True)
    first = proc.stdout.readline()  # the first overlay is written: the photos are under way
    assert "_cam.png" in first, first
    os.killpg(proc.pid, signal.SIGINT)
    out = proc.communicate(timeout=60)[0]
    assert proc.returncode == 130, out[-2000:]
    assert out.rstrip().splitlines()[-1] == "catdog: interrupted; run the command again to start it over"
    assert "Traceback" not in out


def test_warnings_become_one_catdog_line():
    site = "/venv/lib/python3.11/site-packages/keras/src/export/tf2onnx_lib.py"
    assert one_line_warning("np.object is deprecated", FutureWarning, site) is None
    tflite = "/venv/lib/python3.11/site-packages/tensorflow/lite/python/interpreter.py"
    text = "Warning: tf.lite.Interpreter is deprecated and is scheduled for deletion in TF 2.20."
    assert one_line_warning(text, UserWarning, tflite) is None  # a deprecation, announced as a UserWarning
    assert one_line_warning(text, UserWarning, "/work/catdog/catdog/export/x.py").startswith("catdog: note:")  # ours shows
    line = one_line_warning("weights are float16\nsecond line", UserWarning, site)
    assert line == "catdog: note: weights are float16 (UserWarning from keras)"
    coreml = one_line_warning("You will not be able to run predict() on this Core ML model. Underlying ...", RuntimeWarning, site)
    assert coreml.startswith("catdog: note: Core ML artefacts are written") and "\n" not in coreml


def test_every_catdog_progress_bar_sets_disable():
    """Library progress bars are silenced through tqdm's TQDM_DISABLE default (catdog.console);
    a catdog bar that did not pass disable= itself would vanish with them."""
    missing = []
    for path in (REPO / "catdog").rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Call) and getattr(node.func, "id", getattr(node.func, "attr", "")) == "tqdm":
                if "disable" not in {k.arg for k in node.keywords}:
                    missing.append(f"{path.relative_to(REPO)}:{node.lineno}")
    assert missing == []


def test_library_warnings_in_a_command_are_one_line(capsys):
    """Inside a command, a library's deprecation notice is dropped and other warnings print once, on one line."""
    from catdog.console import quiet

    with quiet():
        for _ in range(2):
            warnings.warn_explicit("old API\ndetails", FutureWarning, "/x/site-packages/tf2onnx/a.py", 1)
            warnings.warn_explicit("odd input\ndetails", UserWarning, "/x/site-packages/onnx/b.py", 2)
    err = capsys.readouterr().err
    assert err.count("catdog: note: odd input (UserWarning from onnx)") == 1
    assert "old API" not in err and "details" not in err


@needs_shared
def test_fp16_tflite_export_draws_no_library_bar(subset_run, capsys):
    """ai-edge-quantizer draws its own bar for a model over 100 tensors and ignores
    enable_progress_bar=False there: inside a command it is hidden, outside it shows."""
    from catdog.cam import cam_model
    from catdog.console import quiet
    from catdog.export.tflite import fp16_weights, fp32_model
    from catdog.training import load_run

    fp32 = fp32_model(cam_model(load_run(subset_run).model))
    capsys.readouterr()
    with quiet():
        fp16_weights(fp32, [])
    assert "Applying Transformations" not in capsys.readouterr().err
    fp16_weights(fp32, [])  # a library caller's view: the bar is the library's own
    assert "Applying Transformations" in capsys.readouterr().err


if __name__ == "__main__":
    pytest.main([__file__, "-q"])
