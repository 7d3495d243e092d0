"""Shared fixtures: real photos and real MobileNetV2 weights from ../shared, read in place.

Keras reads $KERAS_HOME when it is imported, so the offline weight cache is seeded here, at
import time, before any test module imports keras.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
SHARED = Path(os.environ.get("CATDOG_SHARED", REPO.parent / "shared"))
TRAIN = SHARED / "data" / "dogs-vs-cats" / "train"
TEST = SHARED / "data" / "dogs-vs-cats" / "test"
REFERENCE = SHARED / "data" / "reference"
WEIGHTS = SHARED / "weights" / "keras" / "models"

HAVE_SHARED = TRAIN.is_dir() and WEIGHTS.is_dir()
needs_shared = pytest.mark.skipif(
    not HAVE_SHARED, reason=f"real photos and weights not found at {SHARED} (set CATDOG_SHARED to the shared folder)"
)

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
os.environ["HDF5_USE_FILE_LOCKING"] = "FALSE"
if HAVE_SHARED:
    _keras_home = Path(tempfile.mkdtemp(prefix="catdog-keras-home-"))
    (_keras_home / "models").mkdir()
    for f in WEIGHTS.glob("*.h5"):
        shutil.copy(f, _keras_home / "models" / f.name)
    os.environ["KERAS_HOME"] = str(_keras_home)

# Training subset for CI: the first N cats and dogs (by number); held-out photos come after.
N_PER_CLASS = 120
HELD_OUT = range(900, 940)


def kaggle_names(label: str, numbers) -> list[str]:
    return [f"{label}.{n}.jpg" for n in numbers]


def copy_photos(dest: Path, names: list[str], src: Path = TRAIN) -> Path:
    dest.mkdir(parents=True, exist_ok=True)
    for name in names:
        shutil.copy(src / name, dest / name)
    return dest


@pytest.fixture(scope="session")
def train_subset(tmp_path_factory) -> Path:
    """A Kaggle-layout folder of N_PER_CLASS real cats and dogs."""
    if not HAVE_SHARED:
        pytest.skip(f"real photos not found at {SHARED}")
    names = kaggle_names("cat", range(N_PER_CLASS)) + kaggle_names("dog", range(N_PER_CLASS))
    return copy_photos(tmp_path_factory.mktemp("train_subset"), names)


@pytest.fixture(scope="session")
def held_out(tmp_path_factory) -> Path:
    """Real labelled photos that no test trains on."""
    if not HAVE_SHARED:
        pytest.skip(f"real photos not found at {SHARED}")
    names = kaggle_names("cat", HELD_OUT) + kaggle_names("dog", HELD_OUT)
    return copy_photos(tmp_path_factory.mktemp("held_out"), names)


@pytest.fixture(scope="session")
def subset_run(tmp_path_factory, train_subset) -> Path:
    """`catdog run` on the real subset with MobileNetV2: the RUN_DIR most tests read."""
    from catdog.cli import main

    run_dir = tmp_path_factory.mktemp("runs") / "mnv2"
    assert main(["run", str(train_subset), "--backbone", "mobilenet_v2", "--out", str(run_dir), "--no-export"]) == 0
    return run_dir


@pytest.fixture(scope="session")
def subset_artefacts(tmp_path_factory, subset_run) -> Path:
    """Every format x precision exported from the MobileNetV2 subset run."""
    from catdog.cli import main

    art_dir = tmp_path_factory.mktemp("art") / "mnv2"
    assert main(["export", str(subset_run), "--out", str(art_dir)]) == 0
    return art_dir


@pytest.fixture(scope="session")
def resnet50_run(tmp_path_factory) -> Path:
    """A ResNet50 RUN_DIR from weights the test makes (random init): mechanics, not accuracy."""
    if not HAVE_SHARED:
        pytest.skip(f"real photos not found at {SHARED}")
    import keras

    from catdog.cli import main

    root = tmp_path_factory.mktemp("r50")
    weights = root / "resnet50_random_notop.weights.h5"
    keras.utils.set_random_seed(7)
    keras.applications.ResNet50(include_top=False, weights=None, input_shape=(224, 224, 3)).save_weights(weights)
    data = copy_photos(root / "data", kaggle_names("cat", range(10)) + kaggle_names("dog", range(10)))
    run_dir = root / "run"
    args = ["run", str(data), "--backbone", "resnet50", "--weights", str(weights), "--out", str(run_dir), "--no-export"]
    assert main(args) == 0
    return run_dir


@dataclass
class CliResult:
    returncode: int
    output: str  # stdout and stderr together, as a terminal shows them
    seconds: float


def catdog_cli(*args: str, timeout: float = 1200) -> CliResult:
    """Run `catdog ARGS` as a user does: a new process, the installed command, and none of this test
    session's TensorFlow settings (TF_CPP_MIN_LOG_LEVEL), so what it prints is what a user sees."""
    import time

    script = Path(sys.executable).with_name("catdog")
    command = [str(script)] if script.exists() else [sys.executable, "-m", "catdog.cli"]
    env = {k: v for k, v in os.environ.items() if k not in ("TF_CPP_MIN_LOG_LEVEL", "TQDM_DISABLE")}
    start = time.perf_counter()
    done = subprocess.run(
        command + list(args), stdout=subprocess.PIPE, stderr=subprocess.STDOUT, env=env, timeout=timeout, cwd=REPO
    )
    return CliResult(done.returncode, done.stdout.decode("utf-8", "replace"), time.perf_counter() - start)


@pytest.fixture(scope="session")
def verified_run(tmp_path_factory) -> tuple[Path, CliResult]:
    """`catdog run` as a user runs it (its own process) on 60 cats and 60 dogs: features, head,
    every format at fp32 (to keep CI short), parity and report.html. Returns RUN_DIR and the result."""
    if not HAVE_SHARED:
        pytest.skip(f"real photos not found at {SHARED}")
    root = tmp_path_factory.mktemp("verified")
    data = copy_photos(root / "data", kaggle_names("cat", range(200, 260)) + kaggle_names("dog", range(200, 260)))
    run_dir = root / "run"
    result = catdog_cli("run", str(data), "--out", str(run_dir), "--precision", "fp32")
    assert (run_dir / "metrics.json").exists(), result.output[-3000:]
    return run_dir, result
