"""The core of qc: everything a line PC needs to judge a frame, and nothing heavier.

Example::

    from pathlib import Path

    from inspection.detect.detector import Detector

    detector = Detector("model.onnx")
    detections = detector.predict_bytes(Path("frame.jpg").read_bytes())  # or .predict([bgr, ...])
    for box, score, name in zip(detections.xyxy, detections.confidence, detections.class_names):
        print(name, score, box)

This package imports neither torch nor ultralytics, nor anything from `serving` or `training`;
those import from here.
"""

__version__ = "0.1.0"
