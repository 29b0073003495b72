"""Datasets and validation, without torch (Python 3.8): synthetic defect datasets (`synth`), YOLO
dataset reading and label checks (`dataset`), COCO-style metrics via pycocotools (`metrics`) and
running a detector over a split (`val`)."""
