"""Core ML export (ML program, .mlpackage): image input with the preprocessing as ImageType
scale / bias / colour layout, a classifier over (cat, dog), and the CAM maps as a second output."""

from __future__ import annotations

import contextlib
import os
import shutil
import warnings
from pathlib import Path

import keras

from catdog import __version__
from catdog.cam import network_model
from catdog.data import LABELS
from catdog.export.contract import CAM, INPUT_NAME, PET, PROBABILITIES, cam_grid, pet_output
from catdog.export.sensitivity import Unit, coreml_op_selector, matches
from catdog.features import BGR_MEAN, get_spec, input_size

AUTHOR = "catdog"
CONVERSION_DATE = "com.github.apple.coremltools.conversion_date"  # coremltools writes str(date.today())
LICENSE = "Apache-2.0 (model code); weights: see the backbone's ImageNet weights licence"


def image_preprocessing(backbone: str) -> dict:
    """The ImageType settings that reproduce the backbone's preprocess_input.

    ResNet50 ("caffe"): BGR channel order, minus the BGR mean, scale 1.
    MobileNetV2 ("tf"): RGB, x / 127.5 - 1.
    A fusion ("raw"): RGB 0..255 as is; each branch's preprocessing is inside the network.
    """
    mode = get_spec(backbone).preprocess_mode
    if mode == "caffe":
        return {"color_layout": "BGR", "scale": 1.0, "bias": [-m for m in BGR_MEAN]}
    if mode == "raw":
        return {"color_layout": "RGB", "scale": 1.0, "bias": [0.0, 0.0, 0.0]}
    return {"color_layout": "RGB", "scale": 1.0 / 127.5, "bias": [-1.0, -1.0, -1.0]}


@contextlib.contextmanager
def _classifier_with_extra_outputs():
    """Work around coremltools 9.0 failing on a classifier with an extra output at fp16.

    Its fp16 pass records one output type per program output before the classifier op adds
    classLabel and the probability dictionary; the exporter then indexes past that list
    (IndexError in get_func_output). Output types are re-derived from the program when the
    list is absent, so it is dropped for classifiers while the exporter runs.
    """
    from coremltools.converters.mil.backend.mil import load

    original = load.CoreMLProtoExporter.get_func_output

    def get_func_output(self, func):
        if self.classifier_config is not None and func.output_types is not None and len(func.output_types) != len(func.outputs):
            func.output_types = None
        return original(self, func)

    load.CoreMLProtoExporter.get_func_output = get_func_output
    try:
        yield
    finally:
        load.CoreMLProtoExporter.get_func_output = original


def _compute_precision(precision: str, keep: list[Unit]):
    """float32 for fp32; else float16 except the kept units' ops: each kept conv (matched by its
    own name, not its inputs') and the ops after it up to the next conv (`coreml_op_selector`)."""
    import coremltools as ct

    if precision == "fp32":
        return ct.precision.FLOAT32
    return ct.transform.FP16ComputePrecision(op_selector=coreml_op_selector(keep))


def _pass_pipeline(precision: str, unquantised_ops: list[str] = ()):
    """The default conversion passes; for int8, weight quantisation runs inside the conversion,
    skipping the weights of `unquantised_ops` (op names as the pass sees them).

    (`linear_quantize_weights` on the converted classifier fails in coremltools 9.0 when it
    re-serialises the class-label list, so the same pass runs before the classifier is added.)
    """
    import coremltools as ct

    pipeline = ct.PassPipeline.DEFAULT
    if precision == "int8":
        pipeline.append_pass("compression::linear_quantize_weights")
        pipeline.set_options(
            "compression::linear_quantize_weights",
            {
                "config": ct.optimize.coreml.OptimizationConfig(
                    global_config=ct.optimize.coreml.OpLinearQuantizerConfig(mode="linear_symmetric", dtype="int8"),
                    op_name_configs={name: None for name in unquantised_ops},
                )
            },
        )
    return pipeline


def _convert(concrete, image, graph_names, precision: str, keep: list[Unit], unquantised_ops=()):
    import coremltools as ct

    with warnings.catch_warnings(), _classifier_with_extra_outputs():
        warnings.simplefilter("ignore")
        return ct.convert(
            [concrete],
            source="tensorflow",
            convert_to="mlprogram",
            inputs=[image],
            classifier_config=ct.ClassifierConfig(list(LABELS), predicted_probabilities_output=graph_names[PROBABILITIES]),
            compute_precision=_compute_precision(precision, keep),
            minimum_deployment_target=ct.target.iOS16,
            pass_pipeline=_pass_pipeline(precision, unquantised_ops),
        )


def export_coreml(
    full_model: keras.Model, backbone: str, precision: str, path: Path, metadata: dict | None = None, keep: list[Unit] = ()
) -> dict:
    """Write the .mlpackage at `path`. keep: units left in float32 (mixed precision): their ops
    compute in float32 and, for int8, their weights stay unquantised."""
    import coremltools as ct
    import tensorflow as tf

    keep = list(keep)
    net = network_model(full_model)
    size, grid = input_size(full_model), cam_grid(input_size(full_model))
    fn = tf.function(
        lambda x: net(x, training=False),
        input_signature=[tf.TensorSpec([1, size, size, 3], tf.float32, name=INPUT_NAME)],
    )
    concrete = fn.get_concrete_function()
    graph_names = {key: t.name.split(":")[0] for key, t in concrete.structured_outputs.items()}
    pre = image_preprocessing(backbone)
    image = ct.ImageType(
        name=INPUT_NAME,
        shape=(1, size, size, 3),
        scale=pre["scale"],
        bias=pre["bias"],
        color_layout=ct.colorlayout.BGR if pre["color_layout"] == "BGR" else ct.colorlayout.RGB,
    )
    # the quantisation pass names each conv after the TF op it came from (the BatchNorm's
    # `.../<bn>_1/batchnorm/add_1` once folded); a name it does not see is silently ignored, so
    # every TF op name of a kept unit is listed (parity checks the weights in the spec)
    unquantised = [op.name for op in concrete.graph.get_operations() if any(matches(u, [op.name]) for u in keep)]
    mlmodel = _convert(concrete, image, graph_names, precision, keep, unquantised)
    spec = mlmodel.get_spec()
    # the classifier's label -> probability dictionary is named "<classLabel>_probs" by the converter
    ct.utils.rename_feature(spec, spec.description.predictedProbabilitiesName, PROBABILITIES)
    ct.utils.rename_feature(spec, graph_names[CAM], CAM)
    ct.utils.rename_feature(spec, graph_names[PET], PET)
    mlmodel = ct.models.MLModel(spec, weights_dir=mlmodel.weights_dir, skip_model_load=True)
    mlmodel.author = AUTHOR
    mlmodel.license = LICENSE
    mlmodel.version = __version__
    mlmodel.short_description = (
        f"catdog {backbone} cats-vs-dogs classifier with Class Activation Maps ({precision}). "
        f"Input: a {size}x{size} photo (squashed, not cropped); preprocessing is built in."
    )
    mlmodel.input_description[INPUT_NAME] = f"photo, {size}x{size}, any orientation already applied; squash the whole photo"
    mlmodel.output_description[PROBABILITIES] = "probability of each class (cat, dog)"
    mlmodel.output_description["classLabel"] = "the most likely class: cat or dog"
    mlmodel.output_description[CAM] = f"class activation maps [1, {grid}, {grid}, 2]: one {grid}x{grid} map per class (cat, dog), unnormalised"
    mlmodel.output_description[PET] = "P(the photo shows a cat or a dog) [1, 1]; under manifest.json's pet_threshold the answer is neither"
    mlmodel.user_defined_metadata.update({k: str(v) for k, v in (metadata or {}).items()})
    mlmodel.user_defined_metadata.update(
        {"backbone": backbone, "labels": ",".join(LABELS), "precision": precision, "catdog_version": __version__}
    )
    staged = path.with_name(path.stem + ".partial.mlpackage")  # coremltools insists on the suffix
    shutil.rmtree(staged, ignore_errors=True)
    mlmodel.save(str(staged))
    stable_package(staged)
    shutil.rmtree(path, ignore_errors=True)
    os.replace(staged, path)
    return _coreml_entry(spec, size, grid, pre)


def stable_package(package: Path) -> None:
    """Rewrite a saved .mlpackage so one model always makes the same bytes: coremltools draws a
    random id (uuid4) for each item of Manifest.json on every save, replaced here by a uuid5 of the
    item's path (the ids only link the manifest's entries to its root model), serialises the
    model spec with protobuf maps in no fixed order, re-serialised here with sorted keys, and writes
    the day of the conversion into the spec's metadata, dropped here (manifest.json records when
    each artefact was made), so a package made on another day has the same bytes too."""
    import json
    import uuid

    from coremltools.proto import Model_pb2

    manifest = package / "Manifest.json"
    doc = json.loads(manifest.read_text())
    items = doc["itemInfoEntries"]
    ids = {old: str(uuid.uuid5(uuid.NAMESPACE_URL, f"catdog:mlpackage/{item['path']}")).upper() for old, item in items.items()}
    spec_path = package / "Data" / items[doc["rootModelIdentifier"]]["path"]
    spec = Model_pb2.Model()
    spec.ParseFromString(spec_path.read_bytes())
    if CONVERSION_DATE in spec.description.metadata.userDefined:
        del spec.description.metadata.userDefined[CONVERSION_DATE]
    spec_path.write_bytes(spec.SerializeToString(deterministic=True))
    doc["itemInfoEntries"] = {ids[old]: item for old, item in items.items()}
    doc["rootModelIdentifier"] = ids[doc["rootModelIdentifier"]]
    manifest.write_text(json.dumps(doc, indent=4, sort_keys=True) + "\n")


def write(full_model: keras.Model, precision: str, path: Path, options) -> dict:
    """The format table's exporter (`catdog.export.formats`)."""
    return export_coreml(full_model, options.backbone, precision, path, options.metadata, list(options.keep))


def _coreml_entry(spec, size: int, grid: int, pre: dict) -> dict:
    import coremltools as ct

    cam_type = next(o.type.multiArrayType for o in spec.description.output if o.name == CAM)
    cam_dtype = ct.proto.FeatureTypes_pb2.ArrayFeatureType.ArrayDataType.Name(cam_type.dataType).lower()
    pet_type = next(o.type.multiArrayType for o in spec.description.output if o.name == PET)
    pet_dtype = ct.proto.FeatureTypes_pb2.ArrayFeatureType.ArrayDataType.Name(pet_type.dataType).lower()
    return {
        "input": {
            "name": INPUT_NAME,
            "type": "image",
            "shape": [1, size, size, 3],
            "width": size,
            "height": size,
            "channel_order": "RGB",
            "value_range": [0, 255],
            "resize": f"squash the whole photo to {size}x{size} (no crop)",
            "normalisation": "inside the model (ImageType)",
            "image_type": pre,
        },
        "outputs": [
            {"name": "classLabel", "type": "string", "labels": list(LABELS)},
            {"name": PROBABILITIES, "type": "dictionary", "labels": list(LABELS), "meaning": "label -> probability"},
            {"name": CAM, "shape": [1, grid, grid, 2], "dtype": cam_dtype, "layout": "NHWC", "labels": list(LABELS)},
            {**pet_output(1), "dtype": pet_dtype},
        ],
        "minimum_deployment_target": "iOS16",
    }
