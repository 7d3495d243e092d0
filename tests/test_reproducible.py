"""Runs are reproducible to the byte: the same model saves to the same .keras bytes, and exports to
the same artefacts (same sha256 in the manifest) in another process, although Keras writes the save
time and object ids into a .keras file, tf2onnx numbers names from a process-wide counter, and
coremltools draws random package ids, writes protobuf maps in no fixed order and dates each conversion."""

from __future__ import annotations

import json
import time

import keras
import numpy as np

from catdog.contract import RunDir
from catdog.data import sha256_file
from catdog.training.train import save_model
from conftest import catdog_cli, needs_shared


@needs_shared
def test_the_same_model_saves_to_the_same_bytes(subset_run, tmp_path):
    saved = []
    for i in range(2):  # fresh objects each time (new ids), a second apart (a new save time)
        model = keras.models.load_model(subset_run / "model.keras", compile=False)
        save_model(model, tmp_path / f"{i}.keras")
        saved.append(sha256_file(tmp_path / f"{i}.keras"))
        time.sleep(1.1)
    assert saved[0] == saved[1]
    again = keras.models.load_model(tmp_path / "1.keras", compile=False)
    photo = np.random.default_rng(0).uniform(0, 255, (1, *model.input.shape[1:])).astype("float32")
    for a, b in zip(keras.tree.flatten(model(photo)), keras.tree.flatten(again(photo))):
        np.testing.assert_array_equal(np.asarray(a), np.asarray(b))


@needs_shared
def test_training_twice_saves_the_same_model_bytes(subset_run, tmp_path):
    from catdog.cli import main

    args = ["train", str(subset_run / RunDir.FEATURES), "--negatives", str(subset_run / RunDir.NEGATIVES), "--out"]
    # one in this process, which has built other models before (Keras numbers unnamed layers per
    # process), one in a fresh process
    assert main([*args, str(tmp_path / "a")]) == 0
    result = catdog_cli(*args, str(tmp_path / "b"))
    assert result.returncode == 0, result.output[-3000:]
    for saved in (RunDir.MODEL, RunDir.HEAD):
        assert sha256_file(tmp_path / "a" / saved) == sha256_file(tmp_path / "b" / saved), saved
    assert json.loads((tmp_path / "a" / RunDir.METRICS).read_text())["model_sha256"] == sha256_file(tmp_path / "b" / RunDir.MODEL)


@needs_shared
def test_export_in_another_process_makes_the_same_artefacts(subset_run, subset_artefacts, tmp_path):
    out = tmp_path / "art"
    result = catdog_cli("export", str(subset_run), "--out", str(out), "--precision", "fp32,int8")
    assert result.returncode == 0, result.output[-3000:]
    first = {(a["format"], a["precision"]): a["sha256"] for a in json.loads((subset_artefacts / "manifest.json").read_text())["artefacts"]}
    second = {(a["format"], a["precision"]): a["sha256"] for a in json.loads((out / "manifest.json").read_text())["artefacts"]}
    assert set(second) == {(f, p) for f in ("coreml", "tflite", "onnx") for p in ("fp32", "int8")}
    assert {key: first[key] for key in second} == second


@needs_shared
def test_a_core_ml_package_made_on_another_day_has_the_same_bytes(subset_run, subset_artefacts, tmp_path, monkeypatch):
    import datetime

    from coremltools.converters import _converters_entry

    from catdog.cli import main

    class AnotherDay(datetime.date):
        @classmethod
        def today(cls):
            return cls(2031, 2, 3)

    monkeypatch.setattr(_converters_entry, "date", AnotherDay)  # what coremltools dates its conversions by
    out = tmp_path / "art"
    assert main(["export", str(subset_run), "--out", str(out), "--formats", "coreml", "--precision", "fp32"]) == 0
    first = json.loads((subset_artefacts / "manifest.json").read_text())["artefacts"]
    second = json.loads((out / "manifest.json").read_text())["artefacts"]
    assert [a["sha256"] for a in second] == [a["sha256"] for a in first if (a["format"], a["precision"]) == ("coreml", "fp32")]


@needs_shared
def test_the_fp32_onnx_is_the_same_bytes_whatever_the_process_traced_before(subset_run):
    """tf2onnx's graph doc string named TensorFlow's traced function, numbered by a process-wide
    counter: one model's ONNX artefacts differed between a 1-core machine (converted after the
    TFLite analysis) and a 2-core one (converted first, in export's second process)."""
    import tensorflow as tf

    from catdog.cam import cam_model
    from catdog.export import converted
    from catdog.export.onnx import fp32_onnx
    from catdog.training import load_run

    net = cam_model(load_run(subset_run).model)
    made = ("onnx_fp32", converted.model_key(net))
    converted._made.pop(made, None)  # converted afresh each time, not taken from this process's cache
    first = fp32_onnx(net)
    converted._made.pop(made)
    tf.function(lambda x: x + 1)(tf.constant(1.0))  # the process traces something else in between
    assert fp32_onnx(net) == first
