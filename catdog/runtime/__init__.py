"""Runtime: the one place that loads a catdog model and runs it.

`open_model(path)` takes any artefact (`.tflite`, `.onnx`, `.mlpackage`) or a RUN_DIR (its
Keras model) and returns a `Model`. `Model.run(images)` takes raw photos already squashed to
the model's input size, (N, S, S, 3) float32 0..255, and returns every output of the
contract by name, batch first: `probabilities` (N, 2) and `cam` (N, S/32, S/32, 2).

Engines, one per format:
    keras        the RUN_DIR's full model as a CAM model (temperature folded in if asked)
    tflite       LiteRT (XNNPACK); one interpreter per thread, so a Model is thread-safe
    onnx         ONNX Runtime (a session is thread-safe)
    coreml       Core ML itself (coremltools `predict`) on macOS; elsewhere, and on macOS when
                 asked (engine="interpreter"), catdog's ML Program interpreter
                 (`catdog.runtime.mlprogram`), which executes the package's program op by op

Nothing else in catdog constructs a LiteRT interpreter, an ONNX Runtime session or a Core ML
model (the batch feature engine in catdog.features keeps its own).
"""

from __future__ import annotations

import os
import platform
import threading
from pathlib import Path

import numpy as np

from catdog.contract import CAM, INPUT_NAME, MANIFEST, OUTPUTS, PET, PROBABILITIES, SUFFIXES, RunDir, check_artefact, exported_from, manifest_entry
from catdog.errors import CatdogError

SUFFIX_FORMAT = {suffix: fmt for fmt, suffix in SUFFIXES.items()}


def format_of(path: str | os.PathLike) -> str:
    """"keras" for a RUN_DIR, else the artefact's format by its suffix."""
    path = Path(path)
    if path.suffix in SUFFIX_FORMAT:
        return SUFFIX_FORMAT[path.suffix]
    if path.is_dir() and (path / RunDir.MODEL).is_file():
        return "keras"
    if path.is_dir() and (path / MANIFEST).is_file():  # as load_run says it: which RUN_DIR, which artefact
        source, artefact = exported_from(path)
        raise CatdogError(
            f"{path}: an ART_DIR (it holds manifest.json), not a RUN_DIR or an artefact; give the RUN_DIR it was exported from"
            + (f" ({source})" if source else "") + (f" or one of its artefacts ({artefact})" if artefact else "")
        )
    raise CatdogError(f"{path}: not a catdog artefact (.tflite, .onnx, .mlpackage) nor a RUN_DIR with model.keras")


def coreml_runs_here() -> bool:
    """Core ML itself predicts only on macOS."""
    return platform.system() == "Darwin"


class Model:
    """A loaded model: `run(images)` -> {output name: (N, ...) float32}; thread-safe."""

    format: str = ""
    engine: str = ""  # what computes the numbers, in words
    image_size: int = 0
    path: Path

    def run(self, images: np.ndarray) -> dict[str, np.ndarray]:
        images = np.ascontiguousarray(images, np.float32)
        if images.ndim != 4 or images.shape[1:] != (self.image_size, self.image_size, 3):
            raise CatdogError(f"{self.path}: expects photos of shape (N, {self.image_size}, {self.image_size}, 3), got {images.shape}")
        if len(images) == 0:
            raise CatdogError(f"{self.path}: no photo to run")
        return self._run(images)

    def __call__(self, image: np.ndarray) -> dict[str, np.ndarray]:
        """One photo (S, S, 3) -> each output without its batch dimension."""
        return {k: v[0] for k, v in self.run(np.asarray(image)[None]).items()}

    def _run(self, images: np.ndarray) -> dict[str, np.ndarray]:
        raise NotImplementedError

    def __repr__(self) -> str:
        return f"<{self.engine}: {self.path}>"


def _require_contract(path: Path, inputs, outputs) -> None:
    """A one-line CatdogError for a model that does not keep catdog's contract (another tool's
    .onnx or .tflite): it takes INPUT_NAME and gives probabilities and cam (pet since the neither
    answer; callers that need it say so)."""
    if INPUT_NAME not in inputs or not {PROBABILITIES, CAM} <= set(outputs):
        raise CatdogError(
            f"{path}: not a catdog model (inputs {sorted(inputs)}, outputs {sorted(outputs)}; catdog's take "
            f"'{INPUT_NAME}' and give '{PROBABILITIES}' and '{CAM}'); make one with `catdog export`"
        )


def _batched(run_batch, images: np.ndarray, batch: int) -> dict[str, np.ndarray]:
    outs = [run_batch(images[i : i + batch]) for i in range(0, len(images), batch)]
    return {k: np.concatenate([o[k] for o in outs]).astype(np.float32, copy=False) for k in outs[0]}


class KerasModel(Model):
    format, engine = "keras", "Keras"

    def __init__(self, run_dir: Path, temperature: float | None = None, model=None):
        from catdog.cam import cam_model
        from catdog.features import input_size
        from catdog.training import calibrated_model, load_run

        self.path = Path(run_dir)
        if model is None:
            run = load_run(run_dir)
            t = run.temperature if temperature is None else temperature
            model = calibrated_model(run.model, t) if t != 1.0 else run.model
        self.keras_model = cam_model(model) if CAM not in getattr(model, "output_names", ()) else model
        self.image_size = input_size(self.keras_model)
        self._lock = threading.Lock()

    def _run(self, images):
        # predict_on_batch skips predict's per-call set-up (a tf.data pipeline): 5x faster for one
        # photo, and faster for a caller that passes a batch at a time (catdog inspect --run)
        def run_batch(batch):
            out = self.keras_model.predict_on_batch(batch)
            return {k: np.asarray(out[k], np.float32) for k in OUTPUTS if k in out}

        with self._lock:
            return _batched(run_batch, images, 16)


class LiteRTModel(Model):
    format, engine = "tflite", "LiteRT"

    def __init__(self, path: Path | None = None, threads: int | None = None, content: bytes | None = None):
        from ai_edge_litert.interpreter import Interpreter

        self.path = Path(path) if path else Path("<in memory>")
        self._content = None if path else bytes(content)
        self.threads = threads or os.cpu_count()
        self._local = threading.local()  # an interpreter is not thread-safe: one per thread
        probe = self._interpreter(Interpreter)
        signature = probe.get_signature_list().get("serving_default", {})
        _require_contract(self.path, signature.get("inputs", []), signature.get("outputs", []))
        self.image_size = int(probe.get_input_details()[0]["shape"][1])

    def _interpreter(self, Interpreter):
        if self._content is not None:
            return Interpreter(model_content=self._content, num_threads=self.threads)
        return Interpreter(model_path=str(self.path), num_threads=self.threads)

    def _run(self, images):
        if not hasattr(self._local, "runner"):
            from ai_edge_litert.interpreter import Interpreter

            self._local.runner = self._interpreter(Interpreter).get_signature_runner("serving_default")
        runner = self._local.runner
        return _batched(lambda x: runner(**{INPUT_NAME: x}), images, 1)


class OnnxModel(Model):
    format, engine = "onnx", "ONNX Runtime"

    def __init__(self, path: Path, threads: int | None = None):
        import onnxruntime as ort

        self.path = Path(path)
        options = ort.SessionOptions()
        if threads:
            options.intra_op_num_threads = threads
        # fold the int8 artefact's DequantizeLinear of constant weights when the session loads
        # (ONNX Runtime keeps them for its QDQ fusions otherwise, and dequantizes on every run)
        options.add_session_config_entry("session.disable_quant_qdq", "1")
        self.session = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
        self.output_names = [o.name for o in self.session.get_outputs()]
        _require_contract(self.path, [i.name for i in self.session.get_inputs()], self.output_names)
        self.image_size = int(self.session.get_inputs()[0].shape[1])

    def _run(self, images):
        return _batched(lambda x: dict(zip(self.output_names, self.session.run(None, {INPUT_NAME: x}))), images, 16)


class CoreMLModel(Model):
    """Core ML itself (macOS): the image input takes the S x S RGB photo as a PIL image."""

    format, engine = "coreml", "Core ML"

    def __init__(self, path: Path):
        import coremltools as ct

        self.path = Path(path)
        self.mlmodel = ct.models.MLModel(str(path))
        spec = self.mlmodel.get_spec()
        image = next(i for i in spec.description.input if i.name == INPUT_NAME)
        self.image_size = int(image.type.imageType.width)
        self._lock = threading.Lock()

    def _run(self, images):
        from PIL import Image

        from catdog.data import LABELS

        probs, cams, pets = [], [], []
        for image in images:
            with self._lock:
                out = self.mlmodel.predict({INPUT_NAME: Image.fromarray(np.clip(image, 0, 255).astype(np.uint8))})
            probs.append([out[PROBABILITIES][label] for label in LABELS])
            cams.append(np.asarray(out[CAM], np.float32).reshape(1, *np.shape(out[CAM])[-3:]))
            if PET in out:
                pets.append(np.asarray(out[PET], np.float32).reshape(1, 1))
        outputs = {PROBABILITIES: np.asarray(probs, np.float32), CAM: np.concatenate(cams)}
        return {**outputs, PET: np.concatenate(pets)} if pets else outputs


def open_model(
    path: str | os.PathLike,
    *,
    engine: str | None = None,
    threads: int | None = None,
    temperature: float | None = None,
) -> Model:
    """Load a model to run. path: an artefact or a RUN_DIR. engine: for Core ML, "coreml"
    (Core ML itself, macOS only) or "interpreter" (catdog's ML Program interpreter); by default
    Core ML where it runs, else the interpreter. threads: LiteRT / ONNX Runtime threads (default:
    every core). temperature: for a RUN_DIR, fold this temperature in (default: the run's own).
    An artefact that the manifest.json of its ART_DIR lists must still have the sha256 listed
    there; that, and a file the engine cannot load, is a one-line CatdogError."""
    path = Path(path)
    if not path.exists():
        if manifest_entry(path) is not None:  # an ART_DIR copied in part
            raise CatdogError(f"{path}: missing, though manifest.json lists it; copy the ART_DIR again or run `catdog export` again")
        raise CatdogError(f"{path}: no such model file or RUN_DIR")
    fmt = format_of(path)
    if fmt == "keras":
        return KerasModel(path, temperature)
    check_artefact(path)  # a file changed since export is refused before anything runs it
    if fmt == "coreml":
        engine = engine or ("coreml" if coreml_runs_here() else "interpreter")
        if engine == "coreml" and not coreml_runs_here():
            raise CatdogError(f"{path}: Core ML itself runs only on macOS; use engine 'interpreter' here")
        if engine not in ("coreml", "interpreter"):
            raise CatdogError(f"unknown Core ML engine {engine!r}; choose coreml or interpreter")
        if engine == "coreml":
            cls, args = CoreMLModel, ()
        else:
            from catdog.runtime.mlprogram import MLProgramModel

            cls, args = MLProgramModel, (threads,)
    else:
        cls, args = (LiteRTModel if fmt == "tflite" else OnnxModel), (threads,)
    try:
        return cls(path, *args)
    except CatdogError:
        raise
    except Exception as exc:  # a truncated or foreign file: the engine's own words, on one line
        words = " ".join(str(exc).split())[:300] or type(exc).__name__
        raise CatdogError(f"{path}: {cls.engine} cannot load it ({words}); run `catdog export` again") from None


def keras_model(model, name: str = "Keras model") -> Model:
    """Wrap an in-memory Keras full or CAM model (not yet saved to a RUN_DIR)."""
    return KerasModel(Path(name), model=model)


def tflite_bytes(content: bytes, threads: int | None = None) -> Model:
    """A TFLite model held in memory (the mixed-precision analysis patches weights in place)."""
    return LiteRTModel(content=content, threads=threads)


__all__ = ["OUTPUTS", "Model", "coreml_runs_here", "format_of", "keras_model", "open_model", "tflite_bytes"]
