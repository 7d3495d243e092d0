"""Stage 3, training: Dense(2, softmax) on cached features, fine-tuning; the full model; evaluation and predictions."""

from catdog.training import metrics
from catdog.training.inference import (
    Predictions,
    Run,
    calibrated_model,
    evaluate,
    load_run,
    predict_images,
    submission_rows,
    write_submission,
)
from catdog.training.train import (
    HeadConfig,
    TrainResult,
    build_head,
    cross_validate,
    full_model,
    stratified_folds,
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
    "cross_validate",
    "evaluate",
    "full_model",
    "load_run",
    "metrics",
    "predict_images",
    "stratified_folds",
    "stratified_split",
    "submission_rows",
    "train_head",
    "train_run",
    "write_submission",
]
