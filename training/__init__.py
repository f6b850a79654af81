"""Training: dataset versions in, trained, evaluated, exported and registered models out.

Everything here imports torch and Ultralytics, through `training.ultralytics_env`, which makes
them run offline first. Install with `pip install "qc[train,cpu]"`.
"""
