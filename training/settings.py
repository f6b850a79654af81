"""How training uses this machine: QC_TRAIN_* variables (or QC_CONFIG's YAML).

Example::

    QC_TRAIN_THREADS=4 qc train --recipe recipes/synthetic-demo.yaml

    settings = TrainSettings()
    settings.train_threads       # 0: every core the process may use (os.sched_getaffinity)
"""

from __future__ import annotations

from pydantic import Field

from inspection.settings import Settings


class TrainSettings(Settings):
    train_threads: int = Field(
        default=0, ge=0,
        description="torch threads for CPU training; 0: every core this process may use (its CPU "
        "affinity). Ultralytics alone would use cores - 1 (one of two); see training/compute.py.")
