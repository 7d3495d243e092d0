"""The contracts between catdog's stages, in one place, importable without numpy or TensorFlow.

* what every artefact takes and gives: the input name, the output names, the labels;
* the parity tolerances every artefact is judged by (and the mixed-precision analysis aims
  inside, by a safety margin);
* ART_DIR/manifest.json: its file name and how it is read.
"""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path

from catdog.errors import CatdogError

LABELS = ("cat", "dog")
INPUT_NAME = "image"
PROBABILITIES = "probabilities"
CAM = "cam"
PET = "pet"  # [N, 1]: the probability that the photo shows a cat or a dog at all
OUTPUTS = (PROBABILITIES, CAM, PET)
NEITHER = "neither"  # the verdict where pet < the manifest's pet_threshold
PET_THRESHOLD = "pet_threshold"  # manifest.json key (and metrics.json's): chosen by `catdog train`
NEITHER_TEXT = "No cat or dog here"  # what the phone apps say for a neither verdict (the web page: "No cat or dog found")

# parity, per precision: fp32 and fp16 by the largest differences from Keras over the parity
# photos; int8 by top-1 agreement and the accuracy drop on labelled photos. `pet` is held to the
# probabilities' tolerance, and every artefact's verdict (cat, dog or neither) to Keras' on 99.5 %.
TOLERANCES = {
    "fp32": {"prob_max_abs": 1e-4, "pet_max_abs": 1e-4, "cam_max_rel": 1e-3, "verdict_agreement": 0.995},
    "fp16": {"prob_max_abs": 5e-3, "pet_max_abs": 5e-3, "cam_max_rel": 5e-3, "verdict_agreement": 0.995},
    "int8": {"top1_agreement": 0.98, "accuracy_drop": 0.01, "verdict_agreement": 0.995},
}
TOLERANCE_TEXT = (
    "fp32 max |Δp| and |Δpet| ≤ 1e-4 and CAM max |Δ| ≤ 1e-3 of the largest |CAM|; fp16 all three ≤ 5e-3; "
    "int8 top-1 agreement ≥ 98 % and accuracy on labelled photos within 1 point of Keras; "
    "every artefact's verdict (cat, dog or neither) the same as Keras' on ≥ 99.5 % of the photos"
)

# the full Keras model's layer that joins the pooled features and the ImageNet top's dog-vs-cat
# log-odds into the head's input (training builds it; the CAM and export read it)
HEAD_FEATURES = "head_features"



def verdict(probabilities, pet: float, threshold: float, labels=LABELS) -> str:
    """The one answer catdog gives for a photo: NEITHER where `pet` < `threshold`, else the label
    of the first largest probability (a tie goes to the first label). The apps reproduce it."""
    if float(pet) < float(threshold):
        return NEITHER
    probabilities = [float(p) for p in probabilities]
    return labels[max(range(len(probabilities)), key=lambda i: (probabilities[i], -i))]


class RunDir:
    """What `catdog train` / `catdog run` write in a RUN_DIR."""

    MODEL = "model.keras"  # the full model: raw photo -> probabilities
    HEAD = "head.keras"
    METRICS = "metrics.json"
    FEATURES = "features.h5"
    CV_PREDICTIONS = "cv_predictions.csv"  # each photo's nested-CV P(dog): file,label,fold,p_dog (report.html's calibration and CAMs)
    PET_PREDICTIONS = "pet_predictions.csv"  # each photo's nested-CV P(pet), whether it was kept, and its fold's threshold
    NEGATIVES = "negatives.h5"  # features of photos with neither cat nor dog (`catdog run --negatives`)
    CACHE = "cache"  # the mixed-precision analysis, per model
    ARTEFACTS = "artefacts"  # the ART_DIR `catdog run` exports to
    REPORT = "report.html"
    REJECTED = "rejected.csv"  # the files of DATA that could not be used (file,reason)
    REJECTED_NEGATIVES = "rejected_negatives.csv"  # those of --negatives
    SPLIT = "split.json"  # which photos trained, validated, calibrated and checked parity
    CURVES = "curves.png"  # the L2 search's curves


def read_json(path: str | os.PathLike) -> dict | None:
    """The JSON object in `path`, or None if it is missing or unreadable (a run's metrics.json, say)."""
    try:
        value = json.loads(Path(path).read_text())
    except (OSError, ValueError):
        return None
    return value if isinstance(value, dict) else None


def rejected_beside(output: str | os.PathLike) -> Path:
    """Where `catdog predict` and `evaluate` list the files they could not use, unless told:
    NAME.rejected.csv beside their output NAME.csv or NAME.json. A shared rejected.csv was replaced
    by each output into the folder (a later predict with none rejected emptied an earlier one's
    list), and in a RUN_DIR or beside a feature file it is the run's or `catdog features`' own."""
    output = Path(output)
    return output.with_name(f"{output.stem}.{RunDir.REJECTED}")


def features_rejected(features: str | os.PathLike) -> Path:
    """Where `catdog features --out FEATURES.h5` lists the files it could not use, unless told: as a
    RUN_DIR names them (rejected.csv for features.h5, rejected_negatives.csv for negatives.h5),
    else NAME.rejected.csv beside NAME.h5: a second feature file into the same folder (the README's
    negatives recipe) had replaced the first one's list."""
    features = Path(features)
    if features.name == RunDir.FEATURES:
        return features.with_name(RunDir.REJECTED)
    if features.name == RunDir.NEGATIVES:
        return features.with_name(RunDir.REJECTED_NEGATIVES)
    return features.with_name(f"{features.stem}.{RunDir.REJECTED}")


def owned_file(path: str | os.PathLike) -> str | None:
    """What `path` is where it is one of the files a RUN_DIR or an ART_DIR holds for itself (its
    model, metrics, split, manifest, an artefact, ...), for a one-line refusal; None otherwise.
    Another command's output (a submission, evaluate's JSON) may go beside them, never over them:
    `--json RUN/metrics.json` had replaced the run's metrics, and the run was then unreadable."""
    path = Path(path)
    folder, name = path.parent, path.name
    # not the feature files: `catdog features --out RUN/negatives.h5` adds to that cache, as run does
    run_files = {v for k, v in vars(RunDir).items() if k.isupper() and k not in ("CACHE", "ARTEFACTS", "FEATURES", "NEGATIVES")}
    if (folder / RunDir.MODEL).is_file() and name in run_files:
        return f"the {name} of RUN_DIR {folder}"
    art_files = {v for k, v in vars(ArtDir).items() if k.isupper() and k != "UNIFORM"}
    if (folder / ArtDir.MANIFEST).is_file() and (name in art_files or path.suffix in SUFFIXES.values()):
        return f"the {name} of ART_DIR {folder}"
    return None


def negatives_csv(rejected: str | os.PathLike) -> Path:
    """Where the files of --negatives that could not be used go, beside `rejected` (the other files'):
    rejected_negatives.csv beside rejected.csv, NAME_negatives.csv beside NAME.csv."""
    rejected = Path(rejected)
    return rejected.with_name(f"{rejected.stem}_negatives{rejected.suffix or '.csv'}")


class ArtDir:
    """What `catdog export` and `catdog parity` write in an ART_DIR (the apps read MANIFEST and LABELS)."""

    MANIFEST = "manifest.json"
    LABELS = "labels.txt"
    PARITY_JSON = "parity.json"
    PARITY_MD = "parity.md"
    SENSITIVITY = "sensitivity.json"
    SENSITIVITY_PNG = "sensitivity.png"
    UNIFORM = "uniform"  # every-layer-reduced twins, for comparison


MANIFEST = ArtDir.MANIFEST
MANIFEST_VERSION = 1  # what export writes and the apps read (Manifest.swift's supportedVersion, Manifest.kt's SUPPORTED_VERSION)
CAM_GRID = "cam_grid.png"  # `catdog cam`'s sheet of its overlays, beside them: marks the folder as its output
ARTEFACT_KEYS = ("file", "format", "precision", "sha256")  # what every entry of the manifest's "artefacts" names
# each artefact format's file suffix (export's format table and the runtime both read it)
SUFFIXES = {"coreml": ".mlpackage", "tflite": ".tflite", "onnx": ".onnx"}


def parse_list(text: str, allowed: tuple[str, ...], what: str) -> list[str]:
    """The comma-separated items of `text` (--formats, --precision), each one of `allowed`, once each,
    in order; a one-line CatdogError naming the unknown ones. Here, light to import: the CLI checks
    them as the arguments are read, before a model loads."""
    items = [t.strip().lower() for t in text.split(",") if t.strip()]
    unknown = [t for t in items if t not in allowed]
    if unknown or not items:
        raise CatdogError(f"unknown {what} {', '.join(map(repr, unknown)) or '(none)'}; choose from {', '.join(allowed)} (comma-separated)")
    return list(dict.fromkeys(items))


def cam_grid(image_size: int) -> int:
    """Side of the CAM maps for an S x S input: the backbones' last conv block is S/32 x S/32."""
    return image_size // 32


def load_manifest(art_dir: str | os.PathLike) -> dict:
    """ART_DIR/manifest.json, or a one-line CatdogError saying what to do."""
    path = Path(art_dir) / MANIFEST
    if not Path(art_dir).is_dir():
        raise CatdogError(f"{art_dir}: no such ART_DIR; make one with `catdog export RUN_DIR --out {art_dir}`")
    if not path.is_file():
        raise CatdogError(f"{path}: missing; {art_dir} is not a catdog ART_DIR (run `catdog export` again)")
    try:
        manifest = json.loads(path.read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise CatdogError(f"{path}: not valid JSON ({exc}); run `catdog export` again") from None
    entries = manifest.get("artefacts") if isinstance(manifest, dict) else None
    if not isinstance(entries, list) or not all(isinstance(a, dict) and all(isinstance(a.get(k), str) for k in ARTEFACT_KEYS) for a in entries):
        raise CatdogError(f"{path}: not a catdog manifest (it needs a list of artefacts, each with its {', '.join(ARTEFACT_KEYS)}); "
                          "run `catdog export` again")
    for a in entries + [u for u in manifest.get("uniform_artefacts") or [] if isinstance(u, dict)]:
        if a.get("format") not in SUFFIXES or a.get("precision") not in TOLERANCES:  # hand-edited ("FP32"): a KeyError in parity
            raise CatdogError(f"{path}: {a.get('file')}'s format {a.get('format')!r} or precision {a.get('precision')!r} is not one catdog "
                              f"writes ({', '.join(SUFFIXES)}; {', '.join(TOLERANCES)}); run `catdog export` again")
    return manifest


def exported_from(art_dir: str | os.PathLike) -> tuple[Path | None, Path | None]:
    """(the RUN_DIR an ART_DIR's manifest.json names as its keras_model's, its `desktop_artefact`
    else its first), each None where the manifest does not say: what to point a user to who named
    an ART_DIR where a RUN_DIR belongs."""
    art_dir = Path(art_dir)
    try:
        manifest = load_manifest(art_dir)
    except CatdogError:
        return None, None
    run_dir = artefact = None
    try:
        run_dir = Path(os.path.normpath(art_dir / manifest["keras_model"]["path"] / ".."))
    except (KeyError, TypeError):
        pass
    try:
        files = [a["file"] for a in manifest["artefacts"]]
        artefact = art_dir / (desktop_artefact(manifest) or files[0])
    except (KeyError, IndexError, TypeError):
        pass
    return run_dir, artefact


# The artefact that stands for an ART_DIR on a computer (`catdog serve ART_DIR` serves it; an ART_DIR
# given to predict, evaluate or cam names it): ONNX fp32, else TFLite fp32.
DESKTOP_ARTEFACTS = (("onnx", "fp32"), ("tflite", "fp32"))


def desktop_artefact(manifest: dict) -> str | None:
    """The file (relative to its ART_DIR) of the manifest's first DESKTOP_ARTEFACTS entry, or None."""
    listed = {(a.get("format"), a.get("precision")): a.get("file") for a in manifest.get("artefacts", []) if isinstance(a, dict)}
    return next((listed[key] for key in DESKTOP_ARTEFACTS if isinstance(listed.get(key), str)), None)


def pet_threshold(model_path: str | os.PathLike) -> float:
    """The threshold on P(pet) under which a model's answer is neither (`verdict`): from a
    RUN_DIR's metrics.json, an ART_DIR's manifest.json, or for an artefact file the manifest.json
    beside it. A one-line CatdogError where there is none or it is not within 0..1 (as the apps'
    cores refuse it)."""
    path = Path(model_path)
    if (path / RunDir.MODEL).is_file():
        source, remedy = path / RunDir.METRICS, "train the run again"
    else:
        art_dir = path if (path / MANIFEST).is_file() else path.parent
        if not (art_dir / MANIFEST).is_file() and (art_dir.parent / MANIFEST).is_file():  # a uniform/ twin: its ART_DIR's
            art_dir = art_dir.parent
        source, remedy = art_dir / MANIFEST, "run `catdog export` again (manifest.json beside the artefact holds it)"
    try:
        doc = json.loads(source.read_text())
    except FileNotFoundError:
        raise CatdogError(f"{source}: missing, so the threshold of the neither answer is unknown; {remedy}") from None
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise CatdogError(f"{source}: unreadable ({exc}); {remedy}") from None
    value = doc.get(PET_THRESHOLD) if isinstance(doc, dict) else None
    if value is None:
        raise CatdogError(f"{source}: no {PET_THRESHOLD} (made by a catdog without the neither answer); {remedy}")
    if not isinstance(value, (int, float)) or isinstance(value, bool):
        raise CatdogError(f"{source}: {PET_THRESHOLD} {value!r} is not a number (edited?); {remedy}")
    if not 0.0 <= value <= 1.0:  # NaN too: P(pet) < NaN is never true, so nothing would be neither
        raise CatdogError(f"{source}: {PET_THRESHOLD} {value} is not a probability within 0..1 (edited?); {remedy}")
    return float(value)


def sha256_path(path: str | os.PathLike) -> str:
    """sha256 of a file, or of a directory (an .mlpackage) as sorted relative paths + contents:
    what manifest.json records for every artefact. In a directory, macOS Finder's `.DS_Store`
    (added where a user opens the folder; never part of a model) is not counted."""
    path = Path(path)
    h = hashlib.sha256()
    files = [path] if path.is_file() else sorted(p for p in path.rglob("*") if p.is_file() and p.name != ".DS_Store")
    for f in files:
        if f != path:
            h.update(f.relative_to(path).as_posix().encode() + b"\0")
        with open(f, "rb") as fh:
            while block := fh.read(1 << 20):
                h.update(block)
    return h.hexdigest()


def manifest_entry(artefact: str | os.PathLike) -> dict | None:
    """The manifest.json entry of an artefact file, from the ART_DIR it sits in (or, for a
    uniform/ twin, the one above); None where no readable manifest lists it."""
    artefact = Path(artefact).absolute()
    for art_dir in (artefact.parent, artefact.parent.parent):
        try:
            manifest = json.loads((art_dir / MANIFEST).read_text())
            entries = manifest.get("artefacts", []) + manifest.get("uniform_artefacts", [])
        except (OSError, UnicodeDecodeError, ValueError, AttributeError, TypeError):
            continue
        for entry in entries:
            if isinstance(entry, dict) and isinstance(entry.get("file"), str) and art_dir / entry["file"] == artefact:
                return entry
    return None


def check_artefact(artefact: str | os.PathLike) -> None:
    """A one-line CatdogError where the artefact is not the file its manifest.json lists (its
    sha256 differs: changed, truncated or half-copied since export), or where the manifest.json
    beside it does not list it (an earlier export's file, of another model perhaps); silent for a
    file with no manifest beside it (the callers that need its threshold say so)."""
    entry = manifest_entry(artefact)
    if entry is None and (Path(artefact).absolute().parent / MANIFEST).is_file():
        raise CatdogError(
            f"{artefact}: the manifest.json beside it does not list it (left by an earlier export, perhaps of another model); "
            "pass an artefact it lists, or run `catdog export` again"
        )
    if entry is not None and not isinstance(entry.get("sha256"), str):  # without it no change could be seen
        raise CatdogError(f"{artefact}: manifest.json lists it without its sha256, so it cannot be checked; run `catdog export` again")
    if entry and sha256_path(artefact) != entry["sha256"]:
        raise CatdogError(
            f"{artefact}: not the file manifest.json lists (sha256 differs: changed, truncated or half-copied "
            "since export); copy the ART_DIR again or run `catdog export` again"
        )


# The precision each app takes, first listed first (the iOS app's Core ML runs fp16 on the Neural
# Engine; the Android demo's LiteRT fp32): Manifest.swift and Manifest.kt choose the same, tested
# against tests/golden/apps.json's `choice`, which tools/golden.py makes with `chosen_artefact`.
APP_PRECISIONS = {"coreml": ("fp16", "fp32", "int8"), "tflite": ("fp32", "fp16", "int8")}


def chosen_artefact(manifest: dict, fmt: str) -> dict | None:
    """The manifest entry of the artefact an app of format `fmt` takes (APP_PRECISIONS), or None."""
    listed = {a.get("precision"): a for a in manifest.get("artefacts", []) if isinstance(a, dict) and a.get("format") == fmt}
    return next((listed[p] for p in APP_PRECISIONS[fmt] if p in listed), None)


def app_artefact(art_dir: str | os.PathLike, fmt: str) -> Path:
    """The artefact of format `fmt` an app ships from ART_DIR (`chosen_artefact`), checked against
    the manifest's sha256. The apps' add_model.sh call this with the Python on PATH: this module
    needs nothing outside the standard library. A one-line CatdogError where the app would refuse
    the manifest (`app_problem`), there is no such artefact, it is missing, or it changed since export."""
    manifest = load_manifest(art_dir)
    entry = chosen_artefact(manifest, fmt)
    if entry is None:
        raise CatdogError(f"{Path(art_dir) / MANIFEST}: no {fmt} artefact; export with --formats {fmt}")
    if problem := app_problem(manifest, fmt):  # it had replaced a working model
        raise CatdogError(f"{Path(art_dir) / MANIFEST}: {problem}; the app would refuse it (its model is unchanged): "
                          "run `catdog export` again with the catdog beside this app")
    path = Path(art_dir) / str(entry.get("file"))
    if not path.exists():
        raise CatdogError(f"{path}: missing, though manifest.json lists it; copy the ART_DIR again or run `catdog export` again")
    check_artefact(path)
    return path


def app_problem(manifest: dict, fmt: str) -> str | None:
    """Why the app of format `fmt` (coreml: the iOS app; tflite: the Android demo) would refuse this
    manifest, in the words of its `Manifest.problem()` (Manifest.swift, Manifest.kt), or None where it
    takes it. add_model.sh asks before it copies anything: a manifest the app refuses had replaced a
    working model. Where the apps read a field differently, the stricter reading is taken."""
    supported = MANIFEST_VERSION

    def whole(v):  # a JSON integer: Swift decodes no 1.0, "1" or true as an Int, Kotlin one over 32 bits as a Long
        return isinstance(v, int) and not isinstance(v, bool) and -2**31 <= v < 2**31

    def number(v):
        return isinstance(v, (int, float)) and not isinstance(v, bool)

    def dims(v):  # a shape: numbers, or names of dynamic dimensions ("batch")
        return isinstance(v, list) and all(whole(d) or isinstance(d, str) for d in v)

    def dim(shape, i):  # its i-th size; None for a name
        return shape[i] if i < len(shape) and whole(shape[i]) else None

    if not isinstance(manifest, dict):
        return "not a JSON object"
    if fmt == "coreml":  # Swift's JSONDecoder reads no NaN or Infinity anywhere in the file
        try:
            json.dumps(manifest, allow_nan=False)
        except ValueError:
            return "it holds NaN or Infinity, which the iOS app cannot read"
    # the fields and types the apps decode (Swift throws on a missing or mistyped one)
    version, labels, threshold = manifest.get("manifest_version"), manifest.get("labels"), manifest.get(PET_THRESHOLD)
    inp, outputs, artefacts = manifest.get("input"), manifest.get("outputs"), manifest.get("artefacts")
    if not whole(version):
        return "manifest_version missing or not a whole number"
    if manifest.get("backbone") is not None and not isinstance(manifest["backbone"], str):
        return "backbone is not text"
    if not isinstance(labels, list) or not all(isinstance(label, str) for label in labels):
        return "labels missing or not a list of names"
    if not (isinstance(inp, dict) and isinstance(inp.get("name"), str) and dims(inp.get("shape"))
            and isinstance(inp.get("channel_order"), str)
            and isinstance(inp.get("value_range"), list) and all(number(v) for v in inp["value_range"])):
        return "input missing or without its name, shape, channel_order and value_range"
    if not isinstance(outputs, list) or not all(isinstance(o, dict) and isinstance(o.get("name"), str) and dims(o.get("shape"))
                                                for o in outputs):
        return "outputs missing or not a list of outputs, each with its name and shape"
    if not isinstance(artefacts, list) or not all(isinstance(a, dict) and all(isinstance(a.get(k), str) for k in ARTEFACT_KEYS)
                                                  for a in artefacts):
        return f"artefacts missing or not a list, each with its {', '.join(ARTEFACT_KEYS)}"
    if threshold is not None and not number(threshold):
        return f"{PET_THRESHOLD} {threshold!r} is not a number"
    # problem(), check for check
    if version != supported:
        return f"manifest version {version} is not {supported}, the version this app reads"
    if threshold is None:
        return f"no {PET_THRESHOLD} (an older catdog exported this model)"
    if not 0.0 <= threshold <= 1.0:  # NaN too
        return f"{PET_THRESHOLD} {threshold} is not within 0..1"
    if len(labels) != 2:
        return f"expected 2 labels, found {len(labels)}"
    shape = inp["shape"]
    side = dim(shape, 1)
    if len(shape) != 4 or dim(shape, 3) != 3 or side is None or side <= 0 or dim(shape, 2) != side:
        return f"input shape {shape} is not [1, N, N, 3]"
    if inp["channel_order"] != "RGB":
        return f"channel order {inp['channel_order']} is not RGB"
    if [float(v) for v in inp["value_range"]] != [0.0, 255.0]:
        return f"input range {inp['value_range']} is not 0..255"
    names = [o["name"] for o in outputs]
    for needed in OUTPUTS:
        if needed not in names:
            return f"output {needed} missing"
        if names.count(needed) > 1:  # Swift reads the first, Kotlin the last
            return f"output {needed} listed {names.count(needed)} times"
    shapes = {o["name"]: o["shape"] for o in outputs}
    if len(shapes[PET]) != 2 or dim(shapes[PET], 1) != 1:
        return f"pet shape {shapes[PET]} is not [1, 1]"
    cam, side = shapes[CAM], dim(shapes[CAM], 1)
    if len(cam) != 4 or side is None or side <= 0 or dim(cam, 2) != side or dim(cam, 3) != len(labels):
        return f"cam shape {cam} is not [1, G, G, {len(labels)}]"
    chosen = chosen_artefact(manifest, fmt)
    if chosen is None:
        return f"no {fmt} artefact ({', '.join(APP_PRECISIONS[fmt])}) listed"
    file = chosen["file"]
    if "/" in file or "\\" in file or file in ("", ".", ".."):  # the app loads it by name, beside manifest.json
        return f"its {fmt} artefact {file!r} is not a file name in ART_DIR (export lists the apps' artefacts at its top)"
    return None
