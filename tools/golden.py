"""The phone apps' golden file: inputs a real catdog model gives, and the outputs catdog's own Python
code computes from them, for the Swift (ios_app/CatDogCore) and Kotlin (android_demo/core) tests to
reproduce.

    python -m tools.golden ART_DIR [--out tests/golden/apps.json]      (or `make golden`)

Inputs come from a real ART_DIR (its manifest, and its fp32 TFLite model run on three real photos
from ../shared/data/reference) and from real photos shrunk to a few pixels. Every expected output
is computed by catdog's own code: `catdog.cam.overlay` / `normalise` / `jet` / `label_text`,
`catdog.contract.verdict` (a photo's answer: "neither" where the model's `pet` output is under the
manifest's `pet_threshold`, else cat or dog; `answer` below says what the apps show for each),
`catdog.data.resize` (the squash), `catdog.data.open_rgb` (EXIF orientation, alpha over white),
Pillow's `thumbnail` sizing (as `catdog cam` shrinks a photo for display). `check(golden)` recomputes
every expected output from the golden's own inputs, so a checked-in file stays valid for the apps'
logic whichever model made it. `compare(golden, generate(ART_DIR))` says whether ART_DIR's model gives
the golden's numbers within parity's fp32 tolerances (how tests/test_golden.py matches the shipped
model: training is not bit-reproducible, so no hash of the weights matches another `make run`).
"""

from __future__ import annotations

import argparse
import base64
import hashlib
import io
import json
import os
import sys
from pathlib import Path

import numpy as np
from PIL import Image

from catdog.atomic import write_text
from catdog.errors import CatdogError

GOLDEN_VERSION = 2  # 2: the `pet` output, the manifest's pet_threshold, verdicts
REPO = Path(__file__).resolve().parents[1]
GOLDEN = REPO / "tests" / "golden" / "apps.json"
SHARED = Path(os.environ.get("CATDOG_SHARED", REPO.parent / "shared"))
REFERENCE = SHARED / "data" / "reference"
PHOTOS = ("coral_cat_720p.jpg", "test_509.jpg", "test_504.jpg")  # landscape cat, portrait, small (not shrunk)
OVERLAY_MAX_SIDE = 640  # the apps show overlays at most this many pixels on their longer side
ALPHA = 0.45
SAMPLES_PER_PHOTO = 12
MAX_BYTES = 50_000
# manifest keys the apps read (everything else in a manifest is left out of the golden file)
MANIFEST_KEYS = ("manifest_version", "backbone", "labels", "pet_threshold")
ARTEFACT_KEYS = ("file", "format", "precision", "sha256")
# tricky probability pairs for the per cent text: exact binary ties and values where a
# shortest-decimal-then-half-up formatter (Java's String.format) disagrees with C's printf
TEXT_CASES = ((0.5, 0.5), (0.0625, 0.9375), (0.3125, 0.6875), (0.99951171875, 0.00048828125), (0.00125, 0.99875),
              (0.0015, 0.9985), (0.25, 0.75), (1.0, 0.0))
# synthetic (probabilities, pet, threshold) for the verdict. Probabilities and pet are rounded to float32
# (what a model gives; the apps hold them as Float); thresholds stay doubles, as a manifest holds them, and
# the comparison pet < threshold is in double (Python's, reproduced by the apps), which matters only where
# the threshold is no float32 (the 0.9 case)
_F32 = np.float32


def _below(x: float) -> float:
    """The float32 just below float32(x): a pet the apps must call "neither" at threshold x."""
    return float(np.nextafter(_F32(x), _F32(0)))


VERDICT_CASES = (
    ((0.8, 0.2), 0.9, 0.5),  # cat
    ((0.3, 0.7), 0.9, 0.5),  # dog
    ((0.8, 0.2), 0.2, 0.5),  # neither, whatever the cat/dog probabilities say
    ((0.3, 0.7), 0.5, 0.5),  # pet exactly at the threshold: kept (only pet < threshold is neither)
    ((0.3, 0.7), _below(0.5), 0.5),  # one float32 step below: neither
    ((0.9, 0.1), float(_F32(0.07)), float(_F32(0.07))),  # pet at a float32 threshold, not a short decimal: kept
    ((0.9, 0.1), _below(0.07), float(_F32(0.07))),  # just below it: neither
    ((0.9, 0.1), float(_F32(0.9)), 0.9),  # float32(0.9) is just below the double 0.9: neither (a comparison
                                          # in float32 would round the threshold down to the pet and keep it)
    ((0.6, 0.4), 0.0, 0.0),  # threshold 0: nothing is neither, not even pet 0
    ((0.4, 0.6), 0.0, 0.07),  # pet 0: neither
    ((0.4, 0.6), 1.0, 0.07),  # pet 1: kept
    ((0.6, 0.4), 1.0, 1.0),  # pet 1 at threshold 1: kept
    ((0.5, 0.5), 0.9, 0.07),  # a probabilities tie goes to the first label
    ((0.5, 0.5), 0.01, 0.07),  # a tie under the threshold: neither
)
DISPLAY_CASES = ((1280, 720), (375, 499), (149, 150), (640, 640), (641, 480), (4000, 3000), (3000, 4000),
                 (24, 18), (1000, 1), (1, 1000), (1023, 768), (333, 1000))


def b64(a: np.ndarray) -> str:
    return base64.b64encode(np.ascontiguousarray(a, dtype=np.uint8).tobytes()).decode()


def unb64(s: str, shape) -> np.ndarray:
    return np.frombuffer(base64.b64decode(s), dtype=np.uint8).reshape(shape)


def manifest_subset(manifest: dict) -> dict:
    """The part of a catdog manifest.json the apps read."""
    sub = {k: manifest[k] for k in MANIFEST_KEYS}
    inp = manifest["input"]
    sub["input"] = {k: inp[k] for k in ("name", "shape", "channel_order", "value_range")}
    sub["outputs"] = [{"name": o["name"], "shape": o["shape"]} for o in manifest["outputs"]]
    sub["artefacts"] = [{k: a[k] for k in ARTEFACT_KEYS} for a in manifest["artefacts"] if a["format"] in ("coreml", "tflite")]
    return sub


def cam_shape(manifest: dict) -> list[int]:
    return next(o["shape"] for o in manifest["outputs"] if o["name"] == "cam")


def answer(probabilities, pet: float, threshold: float, labels) -> dict:
    """What the apps show for a photo, by catdog's rules: the verdict (`catdog.contract.verdict`), the
    text under the photo (NEITHER_TEXT for neither, no percentages; else `catdog.cam.label_text`), and
    which image: "overlay" (the CAM overlay) for cat or dog, "photo" (the plain photo, at the same
    display size) for neither, whose CAM is no evidence for either class."""
    from catdog.cam import label_text
    from catdog.contract import NEITHER, NEITHER_TEXT, verdict

    said = verdict(probabilities, pet, threshold, labels)
    neither = said == NEITHER
    return {"verdict": said, "text": NEITHER_TEXT if neither else label_text(probabilities, labels),
            "shown": "photo" if neither else "overlay"}


def verdict_cases(labels) -> list[dict]:
    """VERDICT_CASES with what the apps show for each (`answer`: verdict and text)."""
    cases = []
    for ps, pet, threshold in VERDICT_CASES:
        probabilities, pet = [_F32(p) for p in ps], _F32(pet)
        shown = answer(probabilities, pet, threshold, labels)
        cases.append({"probabilities": [float(p) for p in probabilities], "pet": float(pet), "threshold": float(threshold),
                      "verdict": shown["verdict"], "text": shown["text"]})
    return cases


# ---------- reference computations (catdog's own code) ----------

def display_size(width: int, height: int, max_side: int = OVERLAY_MAX_SIDE) -> tuple[int, int]:
    """The size `catdog cam` shows a photo at: Pillow's thumbnail((max_side, max_side)) sizing."""
    im = Image.new("L", (width, height))
    im.thumbnail((max_side, max_side))
    return im.size


def heat_and_overlay(display_rgb: np.ndarray, cam_map: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The normalised, bilinearly upsampled map and `catdog.cam.overlay` of it over the image."""
    import cv2

    from catdog.cam import normalise, overlay

    h, w = display_rgb.shape[:2]
    heat = cv2.resize(normalise(cam_map), (w, h), interpolation=cv2.INTER_LINEAR)
    return heat, overlay(display_rgb, cam_map, alpha=ALPHA)


def overlay_samples(display_rgb: np.ndarray, cam_map: np.ndarray, positions) -> list[dict]:
    from catdog.cam import jet

    heat, blended = heat_and_overlay(display_rgb, cam_map)
    colours = jet(heat)
    return [{"x": int(x), "y": int(y), "photo": display_rgb[y, x].tolist(), "heat": float(heat[y, x]),
             "jet": colours[y, x].tolist(), "overlay": blended[y, x].tolist()} for x, y in positions]


def sample_positions(width: int, height: int, n: int, seed: int) -> list[tuple[int, int]]:
    """The four corners, the centre, and seeded random pixels."""
    fixed = [(0, 0), (width - 1, 0), (0, height - 1), (width - 1, height - 1), (width // 2, height // 2)]
    rng = np.random.default_rng(seed)
    rest = [(int(rng.integers(width)), int(rng.integers(height))) for _ in range(n - len(fixed))]
    return fixed + rest


def oriented(raw: np.ndarray, exif_orientation: int) -> np.ndarray:
    """What catdog decodes from a file holding `raw` with that EXIF orientation tag."""
    from catdog.data import open_rgb

    im = Image.fromarray(raw)
    exif = Image.Exif()
    exif[0x0112] = exif_orientation
    buf = io.BytesIO()
    im.save(buf, format="PNG", exif=exif)
    return np.asarray(open_rgb(buf.getvalue()))


def over_white(rgba: np.ndarray) -> np.ndarray:
    """What catdog decodes from an RGBA file: alpha composited over white."""
    from catdog.data import open_rgb

    buf = io.BytesIO()
    Image.fromarray(rgba, "RGBA").save(buf, format="PNG")
    return np.asarray(open_rgb(buf.getvalue()))


def squash(rgb: np.ndarray, side: int) -> np.ndarray:
    from catdog.data import resize

    return resize(Image.fromarray(rgb), side)


def choose(manifest: dict, fmt: str) -> str:
    """The file the app of format `fmt` takes (catdog.contract.chosen_artefact), or ""."""
    from catdog.contract import chosen_artefact

    entry = chosen_artefact(manifest, fmt)
    return entry["file"] if entry else ""


# ---------- generation ----------

def small_photo(name: str, size: tuple[int, int]) -> np.ndarray:
    from catdog.data import open_rgb

    return np.asarray(open_rgb(REFERENCE / name).resize(size, Image.BILINEAR))


def run_tflite(path: Path, images: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Probabilities [N, C], CAM maps [N, G, G, C] and pet [N] of one run of the model."""
    from catdog.contract import CAM, PET, PROBABILITIES
    from catdog.runtime import open_model

    outputs = open_model(path, threads=2).run(images)
    if PET not in outputs:
        raise SystemExit(f"{path} has no `{PET}` output: export it again with this catdog version")
    return outputs[PROBABILITIES], outputs[CAM], np.asarray(outputs[PET], np.float32).reshape(len(images))


def weights_sha256(path: Path) -> str:
    """sha256 of a TFLite model's buffers (graph constants, weights), metadata left out: two exports
    of the same model agree on it while their metadata (the .keras file's sha256, zip times) differ."""
    from ai_edge_litert import schema_py_generated as schema

    model = schema.ModelT.InitFromPackedBuf(bytearray(Path(path).read_bytes()), 0)
    metadata = {m.buffer for m in (model.metadata or [])}
    digest = hashlib.sha256()
    for i, buffer in enumerate(model.buffers or []):
        if i not in metadata and buffer.data is not None:
            digest.update(np.asarray(buffer.data, np.uint8).tobytes())
    return digest.hexdigest()


def sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


# ---------- comparing two models' numbers ----------

CONTRACT_KEYS = ("manifest_version", "backbone", "labels", "input", "outputs")  # of the manifest subset
# pet_threshold is compared as a number (within the probabilities' tolerance): a retrained model picks its own


def fp32_tolerances() -> dict:
    """`catdog parity`'s fp32 tolerances (catdog.contract.TOLERANCES): max |dp| and CAM max |d| over the
    largest |CAM| of the set."""
    from catdog.contract import TOLERANCES

    return TOLERANCES["fp32"]


def compare(expected: dict, made: dict, tolerances: dict | None = None) -> list[str]:
    """Where `made` (a golden document generated from an ART_DIR) gives other numbers than `expected`
    (a golden file): the manifest contract the apps read, their artefact choice, the photos, each
    photo's answer (top label and verdict), and the model's outputs within parity's fp32 tolerances,
    measured as `catdog parity` measures an artefact against Keras (max |dp| over photos and classes,
    and likewise for `pet` and the manifest's pet_threshold; CAM max |d| over the largest |CAM| of the
    whole set). Returns the mismatches; an empty list when they agree."""
    tol = tolerances or fp32_tolerances()
    bad = []
    for key in CONTRACT_KEYS:
        if made["manifest"][key] != expected["manifest"][key]:
            bad.append(f"manifest {key}: {made['manifest'][key]!r} != the golden's {expected['manifest'][key]!r}")
    if made["choice"] != expected["choice"]:
        bad.append(f"artefact choice {made['choice']} != the golden's {expected['choice']}")
    names = [p["name"] for p in expected["photos"]]
    if [p["name"] for p in made["photos"]] != names:
        return bad + [f"photos {[p['name'] for p in made['photos']]} != the golden's {names}"]
    if bad:  # another model contract: its numbers are not comparable
        return bad
    p_ref = np.array([p["probabilities"] for p in expected["photos"]], np.float64)
    p_out = np.array([p["probabilities"] for p in made["photos"]], np.float64)
    c_ref = np.array([p["cam"] for p in expected["photos"]], np.float64)
    c_out = np.array([p["cam"] for p in made["photos"]], np.float64)
    prob_max_abs = float(np.abs(p_out - p_ref).max())
    cam_max_rel = float(np.abs(c_out - c_ref).max() / (float(np.abs(c_ref).max()) or 1.0))
    if not prob_max_abs <= tol["prob_max_abs"]:
        bad.append(f"probabilities: max |dp| {prob_max_abs:.3g} > {tol['prob_max_abs']:g}")
    if not cam_max_rel <= tol["cam_max_rel"]:
        bad.append(f"CAM: max |d| {cam_max_rel:.3g} of the largest |CAM| > {tol['cam_max_rel']:g}")
    pet_max_abs = max(abs(float(got["pet"]) - float(want["pet"])) for want, got in zip(expected["photos"], made["photos"]))
    if not pet_max_abs <= tol["prob_max_abs"]:
        bad.append(f"pet: max |dp| {pet_max_abs:.3g} > {tol['prob_max_abs']:g}")
    threshold_diff = abs(float(made["manifest"]["pet_threshold"]) - float(expected["manifest"]["pet_threshold"]))
    if not threshold_diff <= tol["prob_max_abs"]:
        bad.append(f"manifest pet_threshold: {made['manifest']['pet_threshold']!r} != the golden's "
                   f"{expected['manifest']['pet_threshold']!r} (|d| {threshold_diff:.3g} > {tol['prob_max_abs']:g})")
    for want, got in zip(expected["photos"], made["photos"]):
        if got["index"] != want["index"]:
            bad.append(f"{want['name']}: answer {got['label']} != the golden's {want['label']}")
        if got["verdict"] != want["verdict"]:
            bad.append(f"{want['name']}: verdict {got['verdict']} != the golden's {want['verdict']}")
    return bad


def generate(art_dir: Path, photos_dir: Path = REFERENCE) -> dict:
    """The golden document for ART_DIR (its fp32 TFLite model on PHOTOS from photos_dir)."""
    from catdog.cam import label_text
    from catdog.contract import PET, PET_THRESHOLD
    from catdog.data import open_rgb, resize

    manifest = json.loads((art_dir / "manifest.json").read_text())
    if PET_THRESHOLD not in manifest or PET not in {o["name"] for o in manifest["outputs"]}:
        raise SystemExit(f"{art_dir}/manifest.json has no {PET_THRESHOLD} or no `{PET}` output: "
                         "export it again with this catdog version")
    sub = manifest_subset(manifest)
    tflite = next((a["file"] for a in manifest["artefacts"] if (a["format"], a["precision"]) == ("tflite", "fp32")), "")
    if not tflite:
        raise SystemExit(f"{art_dir}/manifest.json lists no fp32 TFLite artefact; export with --formats tflite --precision fp32")
    side = manifest["input"]["shape"][1]
    labels, threshold = manifest["labels"], manifest[PET_THRESHOLD]
    photos = [open_rgb(photos_dir / name) for name in PHOTOS]
    probabilities, cams, pets = run_tflite(art_dir / tflite, np.stack([resize(p, side) for p in photos]).astype(np.float32))
    photo_docs = []
    for i, (name, photo) in enumerate(zip(PHOTOS, photos)):
        index = int(np.argmax(probabilities[i]))
        w, h = display_size(*photo.size)
        display = np.asarray(photo.resize((w, h), Image.BILINEAR)) if (w, h) != photo.size else np.asarray(photo)
        photo_docs.append({
            "name": name, "width": photo.size[0], "height": photo.size[1],
            "probabilities": [float(p) for p in probabilities[i]],
            "cam": [float(v) for v in cams[i].ravel()],  # NHWC, as the model's output buffer
            "pet": float(pets[i]),
            "index": index, "label": labels[index], "label_text": label_text(probabilities[i], labels),
            **answer(probabilities[i], pets[i], threshold, labels),  # verdict, text, shown
            "display": {"width": w, "height": h},
            "samples": overlay_samples(display, cams[i][..., index], sample_positions(w, h, SAMPLES_PER_PHOTO, seed=i)),
        })
    squash_src = small_photo(PHOTOS[0], (48, 36))
    tall_src = small_photo(PHOTOS[0], (10, 36))  # Pillow 13 resizes it vertically first (Resample.c)
    alpha_rgb = small_photo(PHOTOS[1], (16, 12))
    alpha = np.tile(np.linspace(0, 255, 16).round().astype(np.uint8), (12, 1))  # transparent .. opaque, left to right
    alpha_src = np.dstack([alpha_rgb, alpha])
    orient_src = small_photo(PHOTOS[1], (5, 3))
    return {
        "golden_version": GOLDEN_VERSION,
        "about": "made by tools/golden.py from a real ART_DIR; every expected value is catdog's Python output "
                 "(tests/test_golden.py checks it); the Swift and Kotlin tests reproduce them",
        "source": {"backbone": manifest["backbone"], "catdog_version": manifest.get("catdog_version"),
                   "manifest_sha256": sha256(art_dir / "manifest.json"), "tflite": tflite,
                   "tflite_sha256": sha256(art_dir / tflite), "tflite_weights_sha256": weights_sha256(art_dir / tflite)},
        "manifest": sub,
        "choice": {"coreml": choose(sub, "coreml"),
                   "tflite": choose(sub, "tflite")},
        "alpha": ALPHA,
        "overlay_max_side": OVERLAY_MAX_SIDE,
        "photos": photo_docs,
        "label_text_cases": [{"probabilities": [float(np.float32(p)) for p in ps],
                              "text": label_text([np.float32(p) for p in ps], labels)} for ps in TEXT_CASES],
        "verdict_cases": verdict_cases(labels),
        "display_sizes": [{"width": w, "height": h, "expected": list(display_size(w, h))} for w, h in DISPLAY_CASES],
        "squash": {"width": 48, "height": 36, "rgb": b64(squash_src),
                   "cases": [{"side": s, "rgb": b64(squash(squash_src, s))} for s in (16, 40)]},  # down; down x, up y
        # the height shrinks by more than twice the width's change: Pillow's vertical pass runs first
        "squash_tall": {"width": 10, "height": 36, "rgb": b64(tall_src),
                        "cases": [{"side": s, "rgb": b64(squash(tall_src, s))} for s in (8, 16)]},  # down; up x, down y
        "over_white": {"width": 16, "height": 12, "rgba": b64(alpha_src), "rgb": b64(over_white(alpha_src))},
        "orientation": {"width": 5, "height": 3, "rgb": b64(orient_src),
                        "cases": [_orientation_case(orient_src, k) for k in range(1, 9)]},
    }


def _orientation_case(raw: np.ndarray, k: int) -> dict:
    up = oriented(raw, k)
    return {"exif": k, "width": up.shape[1], "height": up.shape[0], "rgb": b64(up)}


# ---------- checking ----------

def check(golden: dict) -> list[str]:
    """Recompute every expected output of `golden` from its inputs with catdog's code; return the
    mismatches (an empty list when the file is right)."""
    from catdog.cam import label_text

    bad = []
    m = golden["manifest"]
    labels, g = m["labels"], cam_shape(m)
    threshold = m.get("pet_threshold")
    if threshold is None:
        return [f"manifest has no pet_threshold: a golden file older than version {GOLDEN_VERSION} (run `make golden`)"]
    if not isinstance(threshold, (int, float)) or not 0 <= threshold <= 1:
        return [f"manifest pet_threshold {threshold!r} is not a number in 0..1"]
    for want, got in ((golden["choice"]["coreml"], choose(m, "coreml")),
                      (golden["choice"]["tflite"], choose(m, "tflite"))):
        if want != got:
            bad.append(f"artefact choice {want!r} != {got!r}")
    for p in golden["photos"]:
        cam = np.asarray(p["cam"], dtype=np.float32).reshape(g[1:])
        probs = np.asarray(p["probabilities"], dtype=np.float32)
        if p["index"] != int(np.argmax(probs)) or p["label"] != labels[p["index"]]:
            bad.append(f"{p['name']}: label {p['label']} is not the argmax")
        if p["label_text"] != label_text(probs, labels):
            bad.append(f"{p['name']}: label_text {p['label_text']!r} != {label_text(probs, labels)!r}")
        shown = answer(probs, np.float32(p["pet"]), threshold, labels)
        if {k: p.get(k) for k in shown} != shown:
            bad.append(f"{p['name']}: shown {({k: p.get(k) for k in shown})} != catdog's {shown}")
        if [p["display"]["width"], p["display"]["height"]] != list(display_size(p["width"], p["height"], golden["overlay_max_side"])):
            bad.append(f"{p['name']}: display size")
        w, h = p["display"]["width"], p["display"]["height"]
        image = np.zeros((h, w, 3), np.uint8)
        for s in p["samples"]:
            image[s["y"], s["x"]] = s["photo"]
        positions = [(s["x"], s["y"]) for s in p["samples"]]
        for want, got in zip(p["samples"], overlay_samples(image, cam[..., p["index"]], positions)):
            if want != got:
                bad.append(f"{p['name']} at ({want['x']}, {want['y']}): {want} != catdog's {got}")
    for case in golden["label_text_cases"]:
        if case["text"] != label_text(np.asarray(case["probabilities"], np.float32), labels):
            bad.append(f"label text of {case['probabilities']}")
    for case in golden["verdict_cases"]:
        want = answer(np.asarray(case["probabilities"], np.float32), np.float32(case["pet"]), case["threshold"], labels)
        if (case["verdict"], case["text"]) != (want["verdict"], want["text"]):
            bad.append(f"verdict of {case['probabilities']}, pet {case['pet']!r}, threshold {case['threshold']!r}: "
                       f"{case['verdict']!r} != catdog's {want['verdict']!r}")
    for case in golden["display_sizes"]:
        if case["expected"] != list(display_size(case["width"], case["height"], golden["overlay_max_side"])):
            bad.append(f"display size of {case['width']}x{case['height']}")
    for sq in (golden["squash"], golden["squash_tall"]):
        src = unb64(sq["rgb"], (sq["height"], sq["width"], 3))
        for case in sq["cases"]:
            if not np.array_equal(unb64(case["rgb"], (case["side"], case["side"], 3)), squash(src, case["side"])):
                bad.append(f"squash {sq['width']}x{sq['height']} to {case['side']}")
    ow = golden["over_white"]
    if not np.array_equal(unb64(ow["rgb"], (ow["height"], ow["width"], 3)), over_white(unb64(ow["rgba"], (ow["height"], ow["width"], 4)))):
        bad.append("alpha over white")
    o = golden["orientation"]
    raw = unb64(o["rgb"], (o["height"], o["width"], 3))
    for case in o["cases"]:
        if not np.array_equal(unb64(case["rgb"], (case["height"], case["width"], 3)), oriented(raw, case["exif"])):
            bad.append(f"EXIF orientation {case['exif']}")
    return bad


def write(golden: dict, out: Path) -> int:
    """Write atomically; refuse (exit 1) a file over MAX_BYTES."""
    text = json.dumps(golden, indent=1, separators=(",", ": ")) + "\n"
    if len(text.encode()) > MAX_BYTES:
        print(f"golden: {out} would be {len(text.encode()):,} bytes, over {MAX_BYTES:,}; not written", file=sys.stderr)
        return 1
    write_text(out, text)
    print(f"golden: {out} ({len(text.encode()):,} bytes) from {golden['source']['tflite']} ({golden['source']['backbone']})")
    return 0


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("art_dir", type=Path, metavar="ART_DIR")
    parser.add_argument("--out", type=Path, default=GOLDEN)
    parser.add_argument("--photos", type=Path, default=REFERENCE, help=f"folder holding {', '.join(PHOTOS)}")
    args = parser.parse_args(argv)
    if not (args.art_dir / "manifest.json").is_file():
        print(f"golden: {args.art_dir}/manifest.json not found; run `make run` (or catdog export) first", file=sys.stderr)
        return 2
    missing = [n for n in PHOTOS if not (args.photos / n).is_file()]
    if missing:
        print(f"golden: {', '.join(missing)} not found in {args.photos}; pass --photos DIR", file=sys.stderr)
        return 2
    try:
        golden = generate(args.art_dir, args.photos)
    except CatdogError as exc:  # an artefact changed since export, a RUN_DIR gone: one line, as catdog says it
        print(f"golden: {exc}", file=sys.stderr)
        return 2
    bad = check(golden)
    if bad:
        print("golden: self-check failed: " + "; ".join(bad[:5]), file=sys.stderr)
        return 1
    return write(golden, args.out)


if __name__ == "__main__":
    sys.exit(main())
