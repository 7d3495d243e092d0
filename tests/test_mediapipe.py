"""The TFLite artefacts in MediaPipe Tasks (issue 19): standard TFLITE_METADATA, read and run by
the real MediaPipe `ImageClassifier` in its own venv (`make mediapipe-venv`, .cache/mediapipe-venv),
compared with LiteRT on real photos. tools/mediapipe_client.py is what runs inside that venv."""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest

from catdog.data import LABELS
from catdog.contract import load_manifest
from catdog.export.contract import cam_grid
from catdog.export.tflite_metadata import (
    LABELS_FILE,
    STANDARD_NAME,
    packed_files,
    read_metadata,
    read_standard_metadata,
    write_metadata,
)
from catdog.parity import TOLERANCES, load_images
from catdog.runtime import open_model
from conftest import REFERENCE, REPO, needs_shared

MEDIAPIPE_VERSION = "1.2.3"
MEDIAPIPE_VENV = Path(os.environ.get("CATDOG_MEDIAPIPE_VENV", REPO / ".cache" / "mediapipe-venv"))
CLIENT = Path(__file__).resolve().parents[1] / "tools" / "mediapipe_client.py"
# catdog/_vendor/README.md: the TFLite metadata schema module, a verbatim copy of the wheel's
VENDORED_SCHEMA = REPO / "catdog" / "_vendor" / "tflite_metadata_schema_py_generated.py"
WHEEL_SCHEMA = ("mediapipe", "tasks", "metadata", "metadata_schema_py_generated.py")  # its path inside the wheel
VENDORED_SCHEMA_SHA256 = "2c955700827b987555939cc645b834994185765a2a4ecebd0fdf6ad1f573f668"  # of MediaPipe 1.2.3's


def _tflite_artefacts(art_dir: Path) -> dict[str, Path]:
    """precision -> .tflite path, as the manifest lists them."""
    return {a["precision"]: art_dir / a["file"] for a in load_manifest(art_dir)["artefacts"] if a["format"] == "tflite"}


def expected_metadata_json(size: int, precision: str) -> dict:
    """Every field of the standard metadata of a catdog artefact, as MediaPipe's MetadataDisplayer
    prints it (its JSON omits empty fields)."""
    g = cam_grid(size)
    feature = {"content_properties_type": "FeatureProperties", "content_properties": {}}
    return {
        "name": f"catdog mobilenet_v2 cats-vs-dogs classifier with CAM ({precision})",
        "description": (
            "Classifies a photo as cat or dog (mobilenet_v2 ImageNet features, logistic head); also returns class "
            f"activation maps showing where each class was seen. Input {size}x{size} RGB, raw 0..255."
        ),
        "version": "0.1.0",
        "author": "catdog",
        "license": "Apache-2.0",
        "min_parser_version": "1.0.0",
        "subgraph_metadata": [
            {
                "input_tensor_metadata": [
                    {
                        "name": "image",
                        "description": f"RGB photo squashed to {size}x{size} (no crop), raw pixel values 0..255; preprocessing is inside the model.",
                        "content": {
                            "content_properties_type": "ImageProperties",
                            "content_properties": {"color_space": "RGB", "default_size": {"width": size, "height": size}},
                        },
                        "process_units": [{"options_type": "NormalizationOptions", "options": {"mean": [0.0] * 3, "std": [1.0] * 3}}],
                        "stats": {"max": [255.0] * 3, "min": [0.0] * 3},
                    }
                ],
                "output_tensor_metadata": [
                    {
                        "name": "probabilities",
                        "description": "Softmax probabilities of the classes, in the order of labels.txt (cat, dog).",
                        "content": feature,
                        "stats": {"max": [1.0], "min": [0.0]},
                        "associated_files": [
                            {"name": "labels.txt", "description": "Labels for categories that the model can recognize.", "type": "TENSOR_AXIS_LABELS"}
                        ],
                    },
                    {
                        "name": "cam",
                        "description": (
                            f"Class activation maps, a [1, {g}, {g}, 2] feature map (NHWC): one {g}x{g} map per class, channel i for "
                            "line i of labels.txt; unnormalised. Not scores: MediaPipe's ImageClassifier lists it as head 1, "
                            "unlabelled; the classification is head 0."
                        ),
                        "dimension_names": ["batch", "height", "width", "class"],
                        "content": feature,
                    },
                    {
                        "name": "pet",
                        "description": (
                            "P(the photo shows a cat or a dog), [1, 1]; under manifest.json's pet_threshold the answer is neither. "
                            "Not a class score: MediaPipe's ImageClassifier lists it as a head of its own, unlabelled."
                        ),
                        "content": feature,
                        "stats": {"max": [1.0], "min": [0.0]},
                    },
                ],
            }
        ],
    }


@pytest.fixture(scope="session")
def mediapipe_python() -> Path:
    """The isolated venv's Python, built by `make mediapipe-venv` if missing; skip (with the
    reason) only where the MediaPipe wheel cannot be installed."""
    python = MEDIAPIPE_VENV / "bin" / "python"
    reason = "no output"
    if not python.exists():
        try:
            made = subprocess.run(["make", "-s", "mediapipe-venv", f"MEDIAPIPE_VENV={MEDIAPIPE_VENV}"], cwd=REPO, capture_output=True, text=True)
            reason = " | ".join(line.strip() for line in (made.stdout + made.stderr).strip().splitlines()[-3:]) or reason
        except FileNotFoundError:
            reason = "`make` not found"
    if not python.exists():
        pytest.skip(f"mediapipe=={MEDIAPIPE_VERSION} could not be installed in {MEDIAPIPE_VENV}: {reason}")
    return python


@pytest.fixture(scope="session")
def mediapipe_run(tmp_path_factory, mediapipe_python, subset_artefacts, held_out) -> dict:
    """One run of MediaPipe's ImageClassifier over every TFLite artefact in the manifest: on the
    parity reference photos already squashed to the input size (exactly what LiteRT is fed), and
    on the held-out photo files themselves (MediaPipe decodes and resizes them, as an app does)."""
    work = tmp_path_factory.mktemp("mediapipe")
    size = load_manifest(subset_artefacts)["input"]["shape"][1]
    images, _ = load_images(REFERENCE, size)
    np.save(work / "arrays.npy", images.arrays.astype(np.uint8))
    photos = sorted(held_out.iterdir())
    artefacts = _tflite_artefacts(subset_artefacts)
    request = {"models": [str(p) for p in artefacts.values()], "arrays": str(work / "arrays.npy"), "photos": [str(p) for p in photos]}
    (work / "request.json").write_text(json.dumps(request))
    done = subprocess.run([str(mediapipe_python), str(CLIENT), str(work / "request.json"), str(work / "result.json")], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr[-3000:]
    result = json.loads((work / "result.json").read_text())
    return {"artefacts": artefacts, "images": images, "photos": photos, "size": size, **result}


def _scores(heads_per_image: list[list[dict]]) -> np.ndarray:
    """Head 0's scores, by category index, one row per image."""
    return np.array([heads[0]["scores"] for heads in heads_per_image], np.float64)


@needs_shared
def test_image_classifier_agrees_with_litert_at_every_precision(mediapipe_run):
    assert mediapipe_run["mediapipe_version"] == MEDIAPIPE_VERSION
    assert set(mediapipe_run["artefacts"]) == {"fp32", "fp16", "int8"}
    g = cam_grid(mediapipe_run["size"])
    for precision, path in mediapipe_run["artefacts"].items():
        result = mediapipe_run["models"][str(path)]
        assert len(result["arrays"]) == len(mediapipe_run["images"].names) == 30
        for heads in result["arrays"]:
            # head 0 is the classification, labelled from the packed labels file; the CAM is head 1, pet head 2
            assert [h["name"] for h in heads] == ["probabilities", "cam", "pet"], [h["name"] for h in heads]
            assert heads[0]["labels"] == list(LABELS) and len(heads[1]["scores"]) == g * g * len(LABELS)
            assert len(heads[2]["scores"]) == 1
        mediapipe = _scores(result["arrays"])
        outputs = open_model(path).run(mediapipe_run["images"].arrays)
        litert = outputs["probabilities"].astype(np.float64)
        diff = float(np.abs(mediapipe - litert).max())
        agreement = float(np.mean(mediapipe.argmax(1) == litert.argmax(1)))
        # head 1's category index is the position in the flattened [1, G, G, 2] map: the CAM itself
        cam = np.array([heads[1]["scores"] for heads in result["arrays"]]).reshape(-1, g, g, len(LABELS))
        cam_rel = float(np.abs(cam - outputs["cam"]).max() / np.abs(outputs["cam"]).max())
        pet = np.array([heads[2]["scores"] for heads in result["arrays"]]).reshape(-1, 1)
        assert np.abs(pet - outputs["pet"]).max() <= (1e-5 if precision == "fp32" else 2 / 256), precision  # an int8 output: 1/256 steps
        print(f"{path.name}: MediaPipe vs LiteRT max |dp| {diff:.2e}, top-1 agreement {agreement:.0%}, CAM max rel diff {cam_rel:.2e}")
        assert cam_rel <= (1e-5 if precision == "fp32" else TOLERANCES["fp16"]["cam_max_rel"]), cam_rel
        if precision == "fp32":
            assert diff <= 1e-5, diff
        elif precision == "fp16":
            assert diff <= TOLERANCES["fp16"]["prob_max_abs"], diff
        else:
            assert agreement >= TOLERANCES["int8"]["top1_agreement"], agreement
        # softmax scores (an int8 output moves in steps of 1/256), and both classes among the answers
        assert np.allclose(mediapipe.sum(1), 1.0, atol=2 / 256) and len(set(litert.argmax(1))) == 2


@needs_shared
def test_image_classifier_on_photo_files_as_an_app_calls_it(mediapipe_run):
    """MediaPipe decodes and resizes the photo itself (its own resampling, not catdog's bilinear
    squash): the answers stay LiteRT's on the 80 held-out photos."""
    from catdog.data import open_rgb, resize

    size = mediapipe_run["size"]
    arrays = np.stack([resize(open_rgb(p), size) for p in mediapipe_run["photos"]]).astype(np.float32)
    labels = np.array([LABELS.index(p.name.split(".")[0]) for p in mediapipe_run["photos"]])
    for precision, path in mediapipe_run["artefacts"].items():
        mediapipe = _scores(mediapipe_run["models"][str(path)]["photos"])
        litert = open_model(path).run(arrays)["probabilities"]
        agreement = float(np.mean(mediapipe.argmax(1) == litert.argmax(1)))
        accuracy = float(np.mean(mediapipe.argmax(1) == labels))
        print(f"{path.name} on files: top-1 agreement {agreement:.1%}, accuracy {accuracy:.1%} (LiteRT {np.mean(litert.argmax(1) == labels):.1%})")
        assert len(mediapipe) == 80 and agreement >= TOLERANCES["int8"]["top1_agreement"], (precision, agreement)


@needs_shared
def test_mediapipe_reads_every_metadata_field(mediapipe_run):
    """MediaPipe's own MetadataDisplayer (its flatbuffers parser and schema) reads the metadata back."""
    for precision, path in mediapipe_run["artefacts"].items():
        result = mediapipe_run["models"][str(path)]
        assert result["metadata_json"] == expected_metadata_json(mediapipe_run["size"], precision)
        assert result["packed"] == {LABELS_FILE: "cat\ndog\n"}


def test_packed_files_do_not_depend_on_the_clock(tmp_path):
    """The zip after the model holds no time of writing: packing the same files seconds apart gives
    the same bytes (artefacts are reproducible; a rewrite across a zip 2-second tick once differed)."""
    import time

    from catdog.export.tflite_metadata import pack_associated_files

    model = b"TFL3" + bytes(range(256))
    first = pack_associated_files(model, {LABELS_FILE: b"cat\ndog\n"})
    time.sleep(2.1)
    assert pack_associated_files(model, {LABELS_FILE: b"cat\ndog\n"}) == first
    (tmp_path / "packed.tflite").write_bytes(first)
    assert first.startswith(model) and packed_files(tmp_path / "packed.tflite") == {LABELS_FILE: b"cat\ndog\n"}


def test_vendored_schema_is_unchanged():
    """The vendored copy still has the sha256 of the wheel's file (no MediaPipe needed: test-fast)."""
    assert hashlib.sha256(VENDORED_SCHEMA.read_bytes()).hexdigest() == VENDORED_SCHEMA_SHA256


@pytest.mark.slow
def test_vendored_schema_is_the_one_mediapipe_ships(mediapipe_python):
    """Byte-identical to the file in the installed MediaPipe wheel (found without importing
    mediapipe, so no model or photo is needed: `-k vendored_schema` runs this alone)."""
    where = subprocess.run(
        [str(mediapipe_python), "-c", "import importlib.metadata as m, importlib.util as u; "
         "print(m.version('mediapipe')); print(u.find_spec('mediapipe').submodule_search_locations[0])"],
        capture_output=True, text=True, check=True,
    ).stdout.splitlines()
    assert where[0] == MEDIAPIPE_VERSION
    wheel = Path(where[1]).parent.joinpath(*WHEEL_SCHEMA)
    assert VENDORED_SCHEMA.read_bytes() == wheel.read_bytes(), f"{VENDORED_SCHEMA} differs from {wheel}"
    assert hashlib.sha256(wheel.read_bytes()).hexdigest() == VENDORED_SCHEMA_SHA256


@needs_shared
def test_metadata_round_trips_in_the_project(subset_artefacts, tmp_path):
    """Both entries read back with catdog's reader; rewriting is idempotent and LiteRT is unaffected."""
    from ai_edge_litert.interpreter import Interpreter

    manifest = load_manifest(subset_artefacts)
    size = manifest["input"]["shape"][1]
    for precision, path in _tflite_artefacts(subset_artefacts).items():
        meta = read_standard_metadata(path)
        sub = meta.subgraphMetadata[0]
        image, (probabilities, cam, pet) = sub.inputTensorMetadata[0], sub.outputTensorMetadata
        norm = image.processUnits[0].options
        assert (meta.author, meta.license, meta.minParserVersion) == (b"catdog", b"Apache-2.0", b"1.0.0")
        assert list(norm.mean) == [0.0] * 3 and list(norm.std) == [1.0] * 3
        assert image.content.contentProperties.defaultSize.width == size and list(image.stats.max) == [255.0] * 3
        assert probabilities.name == b"probabilities" and probabilities.associatedFiles[0].name == LABELS_FILE.encode()
        assert cam.name == b"cam" and [d.decode() for d in cam.dimensionNames] == ["batch", "height", "width", "class"]
        assert pet.name == b"pet" and list(pet.stats.max) == [1.0]
        assert packed_files(path) == {LABELS_FILE: b"cat\ndog\n"}
        contract = read_metadata(path)
        assert contract["labels"] == list(LABELS) and contract["temperature"] == manifest["temperature"]
        assert [o["name"] for o in contract["outputs"]] == ["probabilities", "cam", "pet"]
        interpreter = Interpreter(str(path))
        assert interpreter.get_signature_list()["serving_default"] == {"inputs": ["image"], "outputs": ["cam", "pet", "probabilities"]}
        assert [tuple(d["shape"]) for d in interpreter.get_output_details()] == [(1, 2), (1, cam_grid(size), cam_grid(size), 2), (1, 1)]
    copy = tmp_path / "again.tflite"
    shutil.copy(path, copy)
    write_metadata(copy, "mobilenet_v2", precision, size, {"temperature": manifest["temperature"]})
    first = copy.read_bytes()
    write_metadata(copy, "mobilenet_v2", precision, size, {"temperature": manifest["temperature"]})
    assert copy.read_bytes() == first and packed_files(copy) == {LABELS_FILE: b"cat\ndog\n"}
    assert first.count(STANDARD_NAME.encode()) == 1 and not [p.name for p in tmp_path.iterdir() if ".tmp" in p.name]
