"""Stage 4, CAM: the Class Activation Map model and heatmap overlays.

For a full model (image -> preprocess -> backbone -> gap -> dropout -> probabilities) with
Dense kernel W (C x 2) and bias b, the CAM model adds a 1x1 Conv2D without bias whose kernel is
W reshaped to (1, 1, C, 2), applied to the backbone's last conv block (G x G x C; G = 7 at 224). Because
global average pooling and the Dense layer are both linear,

    softmax(mean_{i,j}(cam[i, j, :]) + b) == probabilities

which `probabilities_from_cam` computes and the tests check on real photos. Where the head also
takes the ImageNet top's dog-vs-cat log-odds (layer HEAD_FEATURES, the kernel's last row), its
term is added to every cell of the conv's maps (`_cam`), and the identity still holds.
"""

from __future__ import annotations

import warnings
from pathlib import Path
from typing import TYPE_CHECKING

import cv2
import numpy as np

from catdog.contract import CAM, CAM_GRID, HEAD_FEATURES, PET, PROBABILITIES, RunDir
from catdog.atomic import staged
from catdog.data.limits import MAX_PIXELS
from catdog.errors import CatdogError

if TYPE_CHECKING:  # Keras (and TensorFlow) load only where a model is built: `overlay` and the
    import keras  # grid sheet stay light for `catdog serve`'s overlay of an ONNX/TFLite answer

PET_HEAD = "pet_head"  # the nested model: pooled features -> P(pet) (catdog.training.pet)
REQUIRED_LAYERS = ("preprocess", "backbone", "gap", "probabilities", PET_HEAD)


def check_catdog_model(full_model: keras.Model) -> None:
    """Raise CatdogError unless `full_model` has the layers of a catdog full model."""
    import keras

    names = {layer.name for layer in full_model.layers}
    missing = [n for n in REQUIRED_LAYERS if n not in names]
    if missing:
        raise CatdogError(
            f"model {full_model.name!r} is not a catdog model (no layer {', '.join(missing)}); "
            "export a RUN_DIR made by `catdog train` or `catdog run`"
        )
    dense = full_model.get_layer("probabilities")
    if not isinstance(dense, keras.layers.Dense) or dense.units != 2:
        raise CatdogError(f"model {full_model.name!r}: layer 'probabilities' is not Dense(2); not a catdog model")


def _dense_kernel(full_model: keras.Model) -> tuple[np.ndarray, np.ndarray]:
    kernel, bias = full_model.get_layer("probabilities").get_weights()
    return kernel, bias


def cam_conv_kernel(full_model: keras.Model) -> np.ndarray:
    """(C, 2): the Dense kernel's rows the CAM's 1x1 conv holds, C = the last conv block's channels
    (all rows, or all but the prior's last row, which `_cam` adds per photo instead)."""
    channels = int(full_model.get_layer("gap").input.shape[-1])
    return _dense_kernel(full_model)[0][:channels]


def _cam(feature_maps, kernel: np.ndarray, dog_log_odds=None):
    """The CAM: the 1x1 conv of the last conv block (N, G, G, C) with the Dense kernel's first C
    rows; where the head also takes the ImageNet top's dog-vs-cat log-odds (its last row), that
    term added in every cell. Its mean over the cells is then the head's logits less the bias, so
    softmax(mean(cam) + bias) stays the model's probabilities; the prior adds the same amount to
    every cell of a map, which the heatmap's min-max scaling removes."""
    channels = int(feature_maps.shape[-1])
    if dog_log_odds is None:
        return _cam_conv(kernel)(feature_maps)
    from catdog.cam.layers import PriorInEveryCell

    maps = _cam_conv(kernel[:channels], name="cam_maps")(feature_maps)
    return PriorInEveryCell(kernel[channels], name="cam")([maps, dog_log_odds])


def _cam_conv(kernel: np.ndarray, name: str = "cam") -> keras.layers.Conv2D:
    import keras

    conv = keras.layers.Conv2D(2, 1, use_bias=False, name=name)
    conv.build((None, None, None, kernel.shape[0]))
    conv.set_weights([kernel.reshape(1, 1, *kernel.shape)])
    return conv


def cam_model(full_model: keras.Model) -> keras.Model:
    """Raw RGB photo (SxSx3, 0..255) -> {"probabilities": (N, 2), "cam": (N, S/32, S/32, 2), "pet": (N, 1)}.

    S is the full model's input size (224 by default: 7 x 7 maps).

    Shares every layer (and weight) with `full_model`; only the 1x1 "cam" conv is new.
    """
    import keras

    check_catdog_model(full_model)
    kernel, _ = _dense_kernel(full_model)
    feature_maps = full_model.get_layer("gap").input
    names = {layer.name for layer in full_model.layers}
    dog_log_odds = full_model.get_layer(HEAD_FEATURES).input[1] if HEAD_FEATURES in names else None
    cam = _cam(feature_maps, kernel, dog_log_odds)
    outputs = {PROBABILITIES: full_model.output[PROBABILITIES], CAM: cam, PET: full_model.output[PET]}
    return keras.Model(full_model.input, outputs, name="catdog_cam")


def network_model(full_model: keras.Model) -> keras.Model:
    """Like `cam_model` but without the preprocessing layer: its input is the backbone's input.

    For Core ML, whose ImageType applies the preprocessing (scale, bias, colour layout) itself.
    """
    import keras

    check_catdog_model(full_model)
    kernel, _ = _dense_kernel(full_model)
    backbone = full_model.get_layer("backbone")
    x = keras.Input(shape=backbone.input.shape[1:], name="image")
    feature_maps = backbone(x)
    from catdog.training import pet_outputs

    pooled = y = full_model.get_layer("gap")(feature_maps)
    names = {layer.name for layer in full_model.layers}
    pet, dog_log_odds = pet_outputs(full_model.get_layer(PET_HEAD), pooled)
    if dog_log_odds is not None:  # the pet head gives it only where the head takes it (HEAD_FEATURES)
        y = full_model.get_layer(HEAD_FEATURES)([pooled, dog_log_odds])
    if "dropout" in names:
        y = full_model.get_layer("dropout")(y)
    probabilities = full_model.get_layer("probabilities")(y)
    cam = _cam(feature_maps, kernel, dog_log_odds)
    return keras.Model(x, {PROBABILITIES: probabilities, CAM: cam, PET: pet}, name="catdog_network")


def probabilities_from_cam(cam: np.ndarray, bias: np.ndarray) -> np.ndarray:
    """softmax(global average of the CAM maps + Dense bias): (N, G, G, 2) -> (N, 2)."""
    logits = cam.mean(axis=(1, 2)) + bias
    logits = logits - logits.max(axis=1, keepdims=True)
    e = np.exp(logits)
    return e / e.sum(axis=1, keepdims=True)


def normalise(cam_map: np.ndarray) -> np.ndarray:
    """Min-max scale one map to [0, 1] (a constant map becomes all zeros)."""
    lo, hi = float(cam_map.min()), float(cam_map.max())
    return np.zeros_like(cam_map, dtype=np.float32) if hi - lo < 1e-12 else ((cam_map - lo) / (hi - lo)).astype(np.float32)


def jet(values01: np.ndarray) -> np.ndarray:
    """OpenCV's jet colour map of [0, 1] values, as RGB uint8 (blue = low, red = high)."""
    bgr = cv2.applyColorMap(np.round(np.clip(values01, 0, 1) * 255).astype(np.uint8), cv2.COLORMAP_JET)
    return cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB)


def overlay(image: np.ndarray, cam_map: np.ndarray, alpha: float = 0.45) -> np.ndarray:
    """Blend the jet heatmap of one G x G map over an RGB uint8 image of any size.

    The map is min-max normalised, upsampled bilinearly to the image size, coloured with jet,
    and blended: (1 - alpha) * image + alpha * heatmap.
    """
    h, w = image.shape[:2]
    up = cv2.resize(normalise(cam_map), (w, h), interpolation=cv2.INTER_LINEAR)
    blended = (1.0 - alpha) * image.astype(np.float32) + alpha * jet(up).astype(np.float32)
    return np.clip(np.round(blended), 0, 255).astype(np.uint8)


def label_text(probabilities, labels) -> str:
    """What the phone apps show under a photo: "It's a cat" and, on a second line, each label's
    probability in per cent to one decimal, e.g. "cat 99.6 %   dog 0.4 %".

    The predicted label is the first largest probability (a tie goes to the first label). The
    per cent value is 100 * p in double precision, rounded correctly (half to even on an exact
    tie), as C's printf("%.1f") does; Swift and Kotlin reproduce it (tests/golden/apps.json).
    """
    probabilities = [float(p) for p in probabilities]
    top = max(range(len(probabilities)), key=lambda i: (probabilities[i], -i))
    line = "   ".join(f"{label} {100.0 * p:.1f} %" for label, p in zip(labels, probabilities))
    return f"It's a {labels[top]}\n{line}"


def grid_sheet(overlays: list[np.ndarray], titles: list[str], path, columns: int = 4) -> None:
    """Save the overlays as one sheet of titled tiles (a PNG)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows = (len(overlays) + columns - 1) // columns
    cols = min(columns, len(overlays))
    fig, axes = plt.subplots(rows, cols, figsize=(3.2 * cols, 3.4 * rows), squeeze=False)
    for ax in axes.ravel():
        ax.axis("off")
    for ax, img, title in zip(axes.ravel(), overlays, titles):
        ax.imshow(img)
        ax.set_title(title, fontsize=9)
    with warnings.catch_warnings():  # a name in a script the font lacks (猫.jpg): boxes in its title, not a note per glyph
        warnings.filterwarnings("ignore", message="Glyph .* missing from font")
        fig.tight_layout()
        with staged(path) as tmp:
            fig.savefig(tmp, dpi=100)
    plt.close(fig)



def cam_photos(model_path, images, out, size: int, max_pixels: int = MAX_PIXELS) -> list[tuple]:
    """`catdog cam`: for each photo of `images` (files, or folders of photos), the overlay of the
    predicted class's CAM on the photo shrunk to fit `size` x `size`, saved as OUT/<stem>_cam.png
    (<stem>_2_cam.png, … for a name met again in another folder), and OUT/cam_grid.png, the sheet
    of them all; prints a line per photo (and per skipped file).

    model_path: a RUN_DIR (its model as saved: the calibration temperature is not folded in) or an
    artefact, loaded and run by `catdog.runtime.open_model`; its threshold of the neither answer
    from `catdog.contract.pet_threshold`. A photo over `max_pixels` is skipped,
    named. Returns (photo path, answer: cat, dog or neither, the mapped class's probability, overlay
    path) per photo done; CatdogError when none is usable."""
    from PIL import Image

    from catdog.contract import NEITHER, PET, pet_threshold, verdict
    from catdog.data import LABELS, ImageError, open_rgb, resize, shown
    from catdog.features.stage import scan_printing
    from catdog.runtime import CAM, PROBABILITIES, SUFFIX_FORMAT, open_model

    model_path, out = Path(model_path), Path(out)
    grid = out / CAM_GRID
    for item in map(Path, images):  # overlays are PNG photos: inside IMAGES, the next run scored them as photos
        if item.is_dir() and out.resolve().is_relative_to(item.resolve()):
            raise CatdogError(f"--out {out}: inside the IMAGES folder {item}, where the overlays would be read as photos next time; "
                              "give a folder outside it")
    if model_path.suffix not in SUFFIX_FORMAT and not (model_path / RunDir.MODEL).is_file():
        from catdog.training import load_run

        load_run(model_path)  # raises load_run's own one-line error: no such RUN_DIR, or an unfinished one
    model = open_model(model_path, temperature=1.0)
    threshold = pet_threshold(model_path)  # a photo of neither is not called a cat or a dog here either
    paths = []
    for item in map(Path, images):
        if not item.exists() and not item.is_symlink():
            print(f"skipped {shown(item)}: no such file or folder")
            continue
        if not item.is_dir():
            paths.append(item)
            continue
        if (item / CAM_GRID).is_file():  # scored its overlays and grid sheet as photos
            print(f"skipped {shown(item)}: an output of `catdog cam` ({CAM_GRID}), not photos")
            continue
        try:  # a folder is read as every command reads DATA: class folders and subfolders too
            paths.extend(s.path for s in scan_printing(item, any_name=True)[0])  # no label needed: any name
        except CatdogError as exc:
            print(f"skipped {exc}")  # its own words name the folder
    targets = overlay_paths(paths, out)
    inputs = {p.resolve() for p in paths}
    if clash := next((t for t in targets if t.resolve() in inputs), None):  # it wrote the overlay over that photo
        raise CatdogError(f"--out {out}: the overlay {clash.name} would replace the photo {shown(clash)}, one of the IMAGES; "
                          "give another folder")
    out.mkdir(parents=True, exist_ok=True)
    overlays, titles, done = [], [], []
    for path, target in zip(paths, targets):
        try:
            photo = open_rgb(path, max_pixels)
        except ImageError as exc:
            print(f"skipped {shown(path)}: {exc}")
            continue
        result = model(resize(photo, model.image_size))
        probs, cam = result[PROBABILITIES], result[CAM]
        cls = int(probs.argmax())
        pet = float(np.ravel(result[PET])[0])
        answer = verdict(probs, pet, threshold, LABELS)
        title = f"{LABELS[cls]} {probs[cls]:.1%}" if answer != NEITHER else NEITHER
        said = title if answer != NEITHER else f"{NEITHER} (P(cat or dog) {pet:.1%}, under {threshold:.1%}; the map is {LABELS[cls]}'s, {probs[cls]:.1%})"
        photo.thumbnail((size, size))
        image = overlay(np.asarray(photo), cam[..., cls])
        with staged(target) as tmp:
            Image.fromarray(image).save(tmp)
        overlays.append(image)
        titles.append(f"{shown(path.name)}: {title}")
        done.append((path, answer, float(probs[cls]), target))
        print(f"{shown(path)}: {said} -> {shown(target)}")
    if not overlays:
        raise CatdogError("no usable image among the IMAGES given; pass photo files or folders of photos")
    # one photo's too: it marks the folder as cam's output (read as no photos), and an earlier
    # run's sheet of other photos is not left beside this run's overlay
    grid_sheet(overlays, titles, grid)
    print(f"grid sheet: {grid}")
    return done


def overlay_paths(paths: list[Path], out: Path) -> list[Path]:
    """OUT/<stem>_cam.png per photo; <stem>_2_cam.png, … for a name met again (photos of one name
    from different folders: every overlay kept); a stem too long for the file system's 255 bytes
    cut, with a hash of the whole name (it ended the run at that photo)."""
    import hashlib
    import os

    taken, targets = set(), []
    for path in paths:
        n, target = 1, None
        while target is None or target in taken:
            tail = "_cam.png" if n == 1 else f"_{n}_cam.png"
            stem = path.stem
            if len(os.fsencode(stem + tail)) > 255:
                tag = "-" + hashlib.sha256(os.fsencode(stem)).hexdigest()[:8]
                stem = os.fsencode(stem)[: 255 - len(tail) - len(tag)].decode("utf-8", "ignore") + tag
            target = out / f"{stem}{tail}"
            n += 1
        taken.add(target)
        targets.append(target)
    return targets
