"""Frames in, `Detections` out: decoding, letterbox, the ONNX model, boxes back in frame pixels.

Example::

    from pathlib import Path

    from inspection.detect.detector import Detector

    detector = Detector("model.onnx", conf=0.25)
    detections = detector.predict_bytes(Path("frame.jpg").read_bytes())
    print(detections.class_names, detections.xyxy)

This room imports only the shared top of `inspection` (detections, errors, settings) plus
numpy, OpenCV and ONNX Runtime; the ONNX Runtime session lives behind `backend.py` and nothing
outside this folder touches it.
"""
