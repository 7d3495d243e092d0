"""Stage 3, training: Dense(2, softmax) on cached features (settings by CV, refit on every photo,
nested-CV estimate), fine-tuning; the full model; evaluation and predictions.

Names are imported on first use (catdog.lazy), so the CLI can read the L2 grid without Keras.
"""

from catdog.lazy import lazy_exports

__getattr__, __dir__, __all__ = lazy_exports(
    __name__,
    {
        "catdog.training.cv": ["stratified_folds"],
        "catdog.training.pet": ["pet_outputs"],
        "catdog.training.metrics": ["accuracy", "log_loss"],
        "catdog.training.inference": [
            "Predictions",
            "Run",
            "calibrated_model",
            "evaluate",
            "load_run",
            "predict_batch",
            "predict_images",
            "predict_outputs",
            "run_photos",
            "submission_rows",
            "write_submission",
        ],
        "catdog.training.stage": ["evaluate_stage", "finetune_lines", "predict_stage", "predict_submission", "train_lines", "train_stage"],
        "catdog.training.train": [
            "HeadConfig",
            "TrainResult",
            "build_head",
            "full_model",
            "nested_estimate",
            "stratified_split",
            "train_head",
            "train_run",
        ],
    },
)
