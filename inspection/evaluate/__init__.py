"""How good a model is: COCO mAP, per-class precision and recall, and scoring on a split.

Example::

    from inspection.detect.detector import Detector
    from inspection.evaluate.scoring import load_split, score

    detector = Detector("model.onnx", conf=0.001)
    names, samples = load_split("data/pcb/data.yaml", split="val")
    run = score(lambda pixels: detector.predict([pixels])[0], names=names, samples=samples)
    print(run.evaluation.map50, run.evaluation.map50_95)

`metrics.py` compares `Detections` with ground truth; `scoring.py` runs a model over a
labelled split (shared by `qc eval`, the promotion gate and the export check).
"""
