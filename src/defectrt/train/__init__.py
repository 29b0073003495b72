"""Compact YOLO11 trainer (PyTorch, CPU-friendly): `train(model, data, epochs, imgsz, ...) -> TrainResult`."""
from defectrt.train.trainer import TrainResult, fitness, train

__all__ = ["train", "TrainResult", "fitness"]
