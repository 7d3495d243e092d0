"""Stage 3, training: Dense(2, softmax) on cached features (settings by CV, refit on every photo,
nested-CV estimate), fine-tuning; the full model; evaluation and predictions."""

from catdog.training import cv, metrics
from catdog.training.cv import stratified_folds
from catdog.training.inference import (
    Predictions,
    Run,
    calibrated_model,
    evaluate,
    load_run,
    predict_images,
    run_photos,
    submission_rows,
    write_submission,
)
from catdog.training.train import (
    HeadConfig,
    TrainResult,
    build_head,
    full_model,
    nested_estimate,
    stratified_split,
    train_head,
    train_run,
)

__all__ = [
    "HeadConfig",
    "Predictions",
    "Run",
    "TrainResult",
    "build_head",
    "calibrated_model",
    "cv",
    "evaluate",
    "full_model",
    "load_run",
    "metrics",
    "nested_estimate",
    "predict_images",
    "run_photos",
    "stratified_folds",
    "stratified_split",
    "submission_rows",
    "train_head",
    "train_run",
    "write_submission",
]
