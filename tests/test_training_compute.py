"""How a training run is planned onto the machine (training/compute.py): every core the process
may use unless QC_TRAIN_THREADS says otherwise, the recipe's loaders kept on CPU."""

from __future__ import annotations

import os

import pytest

from inspection.errors import ConfigError
from training.compute import ComputePlan, usable_cores
from training.settings import TrainSettings


def test_by_default_cpu_training_uses_every_core_the_process_may_use():
    plan = ComputePlan.choose("cpu", threads=TrainSettings().train_threads, workers=2)
    assert plan.torch_threads == len(os.sched_getaffinity(0)) == usable_cores()
    assert plan.record() == {"device": "cpu", "torch_threads": usable_cores(), "loader_workers": 0,
                             "cores": usable_cores()}


def test_data_loaders_get_only_the_cores_torch_leaves(monkeypatch):
    """Loaders beside torch threads on every core made batches slower on 2 cores (BENCHMARKS.md)."""
    monkeypatch.setattr(os, "sched_getaffinity", lambda pid: set(range(8)))
    assert ComputePlan.choose("cpu", threads=0, workers=2).loader_workers == 0
    assert ComputePlan.choose("cpu", threads=6, workers=4).loader_workers == 2
    assert ComputePlan.choose("cpu", threads=4, workers=2).loader_workers == 2


def test_the_cores_come_from_the_affinity_not_the_machine(monkeypatch):
    """A container limited to a cpuset sees every core in os.cpu_count() but may run on few."""
    monkeypatch.setattr(os, "sched_getaffinity", lambda pid: {0})
    assert ComputePlan.choose("cpu", threads=0, workers=0).torch_threads == 1


def test_qc_train_threads_sets_the_count(monkeypatch):
    monkeypatch.setenv("QC_TRAIN_THREADS", "5")
    assert ComputePlan.choose("cpu", threads=TrainSettings().train_threads, workers=0).torch_threads == 5


def test_on_a_gpu_torchs_cpu_threads_are_left_as_ultralytics_sets_them():
    plan = ComputePlan.choose("0", threads=0, workers=4)
    assert plan.torch_threads == 0 and plan.loader_workers == 4


def test_a_negative_count_is_refused_with_the_fix(monkeypatch):
    monkeypatch.setenv("QC_TRAIN_THREADS", "-1")
    with pytest.raises(ConfigError, match="QC_TRAIN_THREADS"):
        TrainSettings()
    with pytest.raises(ConfigError, match="every core"):
        ComputePlan.choose("cpu", threads=-2, workers=0)
