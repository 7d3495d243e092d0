"""Shared fixtures: real photos and real MobileNetV2 weights from ../shared, read in place.

Keras reads $KERAS_HOME when it is imported, so the offline weight cache is seeded here, at
import time, before any test module imports keras.
"""

from __future__ import annotations

import os
import re
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
NOT_PETS = SHARED / "data" / "not-pets"  # 93 COCO photos with no cat or dog
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
# not-pets: the first N_NEGATIVES (by name) train the pet detector; the rest are held out
N_NEGATIVES = 60
# ResNet50 (random weights: mechanics, not accuracy) runs at the smallest input size catdog takes: a
# 3x3 CAM grid tests the same contract as 7x7 at a fifth of 224's compute (CI time)
R50_SIZE = 96


def make_default(name: str) -> str:
    """A Makefile variable's default (`NAME ?= value`): what `make run` passes."""
    return re.search(rf"^{name}\s*\?=\s*(\S+)", (REPO / "Makefile").read_text(), re.M).group(1)


# `make run`'s model, read from the Makefile: verified_run trains it
SHIPPED_BACKBONE, SHIPPED_SIZE = make_default("BACKBONE"), int(make_default("SIZE"))


def not_pets(held_out: bool = False) -> list[str]:
    names = sorted(p.name for p in NOT_PETS.glob("*.jpg"))
    return names[N_NEGATIVES:] if held_out else names[:N_NEGATIVES]


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
def negatives(tmp_path_factory) -> Path:
    """A folder of the first N_NEGATIVES real photos with no cat or dog (../shared/data/not-pets)."""
    if not NOT_PETS.is_dir():
        pytest.skip(f"photos with no cat or dog not found at {NOT_PETS}")
    return copy_photos(tmp_path_factory.mktemp("negatives"), not_pets(), src=NOT_PETS)


@pytest.fixture(scope="session")
def subset_run(tmp_path_factory, train_subset, negatives) -> Path:
    """`catdog run` on the real subset with MobileNetV2 and the negatives: the RUN_DIR most tests read."""
    from catdog.cli import main

    run_dir = tmp_path_factory.mktemp("runs") / "mnv2"
    args = ["run", str(train_subset), "--backbone", "mobilenet_v2", "--negatives", str(negatives), "--out", str(run_dir), "--no-export"]
    assert main(args) == 0
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
    keras.applications.ResNet50(include_top=False, weights=None, input_shape=(R50_SIZE, R50_SIZE, 3)).save_weights(weights)
    data = copy_photos(root / "data", kaggle_names("cat", range(10)) + kaggle_names("dog", range(10)))
    run_dir = root / "run"
    args = ["run", "--views", "none", "--shift-photos", "0", str(data), "--backbone", "resnet50", "--weights", str(weights), "--image-size", str(R50_SIZE), "--out", str(run_dir), "--no-export",
            "--engine", "keras"]  # 20 photos: TensorFlow at once beats LiteRT's conversion of ResNet50 first (CI time)
    assert main(args) == 0
    return run_dir


@dataclass
class CliResult:
    returncode: int
    output: str  # stdout and stderr together, as a terminal shows them
    seconds: float


def process_group_ends(pgid: int, seconds: float = 30) -> bool:
    """Whether every process of group `pgid` (a command started with start_new_session, and what it
    started) is gone within `seconds`; where not, they are killed and False returned."""
    import signal
    import time

    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        try:
            os.killpg(pgid, 0)
        except ProcessLookupError:
            return True
        time.sleep(0.1)
    os.killpg(pgid, signal.SIGKILL)
    return False


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
    """`catdog run` as a user runs it (its own process) with `make run`'s model, MobileNet V1 + V2
    fused at 288, on 60 cats and 60 dogs and 30 photos with neither: features (and the default
    views), head, every format at fp32 (to keep CI short), parity and report.html. Returns RUN_DIR
    and the result."""
    if not HAVE_SHARED:
        pytest.skip(f"real photos not found at {SHARED}")
    root = tmp_path_factory.mktemp("verified")
    data = copy_photos(root / "data", kaggle_names("cat", range(200, 260)) + kaggle_names("dog", range(200, 260)))
    run_dir = root / "run"
    negatives = copy_photos(root / "negatives", not_pets()[:30], src=NOT_PETS)
    result = catdog_cli("run", str(data), "--out", str(run_dir), "--precision", "fp32", "--negatives", str(negatives),
                        "--backbone", SHIPPED_BACKBONE, "--image-size", str(SHIPPED_SIZE))
    assert (run_dir / "metrics.json").exists(), result.output[-3000:]
    return run_dir, result


@pytest.fixture(scope="session")
def run_288(verified_run) -> Path:
    """verified_run's RUN_DIR: a 288 model exported to TFLite, ONNX and Core ML at fp32 (int8 parity is
    tested at 224): test_size_fusion's 288 contract, test_mobilenet_v1's fusion, test_golden's ART_DIR."""
    return verified_run[0]


# ---------- test tiers: `make test-fast` runs -m "not slow"; `make test` (CI) runs everything ----------

# A test is slow when it trains or exports a model, runs an ImageNet backbone, starts Ray, Chromium,
# MediaPipe or a `catdog` process on photos. Most get there through a fixture (any fixture a test
# uses, directly or through other fixtures): these make a trained RUN_DIR or ART_DIR, a server on
# one, a Ray instance or the MediaPipe venv (fixtures that depend on them, such as test_cv's
# real_data or test_serve's art_server, are covered through them).
SLOW_FIXTURES = frozenset({
    "subset_run", "subset_artefacts", "resnet50_run", "verified_run",  # this file's session fixtures (negatives is a copy)
    "run_288",  # verified_run's RUN_DIR (test_size_fusion, test_mobilenet_v1, test_golden)
    "v1_run", "fused_run", "resnet50_weights",  # test_mobilenet_v1, test_size_fusion: runs they train
    "uninterrupted",  # test_kill: a feature extraction to compare killed ones with
    "local_ray",  # test_ray: a local Ray instance
    "mediapipe_python",  # test_mediapipe: the MediaPipe venv (built by make if absent)
})
# The rest build or run a model inside the test itself (file::test, every parameter of it).
SLOW_TESTS = frozenset({
    "test_apps.py::test_swift_tests_build_again_after_the_repository_moved",  # two `swift build`s
    "test_cli_quiet.py::test_features_is_quiet_unless_verbose",  # `catdog features` processes
    "test_data.py::test_cli_run_goes_on_past_bad_files_and_lists_them",  # features with MobileNetV2
    "test_features.py::test_features_file_contents_and_cache_hit",
    "test_features.py::test_killed_feature_run_resumes_where_it_stopped",
    "test_features.py::test_resnet50_mechanics_with_weights_the_test_makes",
    "test_features.py::test_odd_file_names_are_used_or_named_in_one_line",  # a `catdog features` process
    "test_finetune.py::test_top_blocks_of_both_backbones",  # MobileNetV2 and ResNet50, built
    "test_fuzz.py::test_mutated_files_in_a_data_folder_are_each_rejected_once",  # catdog features
    "test_inspect.py::test_exclude_leaves_suspects_out",  # catdog run
    "test_mobilenet_v1.py::test_mobilenet_loads_the_shared_imagenet_weights_offline_at_any_size",
    "test_mobilenet_v1.py::test_v1_and_v2_fuse_with_one_preprocessing",
    "test_mobilenet_v1.py::test_finetune_finds_mobilenet_v1_blocks",
    "test_mobilenet_v1.py::test_view_features_are_the_features_of_the_changed_photo",
    "test_ray.py::test_ray_cli_starts_its_own_instance_and_is_quiet_unless_verbose",  # `catdog features --ray`
    "test_training.py::test_train_needs_labelled_photos",  # features with MobileNetV2
})


# ---------- `make test` runs on two pytest-xdist workers (--dist loadgroup) ----------

# Each worker builds the session fixtures its tests use. A test that uses one of the costliest goes
# to its group, so each of those is built by one worker only (and the MediaPipe venv, where make has
# not built it, by one at a time); every other test goes with its module, so module fixtures (test_ray's
# Ray instance) are built once too. subset_run alone (40 s) may be built by both: it balances the load.
SHARED_RUNS = (("verified_run", {"verified_run", "run_288"}), ("subset_artefacts", {"subset_artefacts", "mediapipe_python"}))


def xdist_group(item) -> str:
    used = set(getattr(item, "fixturenames", ()))
    return next((group for group, fixtures in SHARED_RUNS if used & fixtures), item.path.name)


@pytest.hookimpl(tryfirst=True)  # before xdist reads the groups
def pytest_collection_modifyitems(config, items):
    for item in items:
        name = f"{item.path.name}::{getattr(item, 'originalname', item.name)}"
        if name in SLOW_TESTS or SLOW_FIXTURES.intersection(getattr(item, "fixturenames", ())):
            item.add_marker(pytest.mark.slow)
        item.add_marker(pytest.mark.xdist_group(xdist_group(item)))
