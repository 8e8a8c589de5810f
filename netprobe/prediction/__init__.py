"""Predicting a step's time and memory on a GPU one does not have (issue 26): GPUs as data, a
time model fitted on third-party measurements, memory counted. Every figure here is a prediction."""

from netprobe.prediction.gpus import GPU, find_gpus, gpu_table, load_gpu_spec
from netprobe.prediction.predict import Prediction, StagePrediction, predict, predict_all

__all__ = ["GPU", "Prediction", "StagePrediction", "find_gpus", "gpu_table", "load_gpu_spec", "predict", "predict_all"]
