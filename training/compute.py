"""How a training run uses the machine: torch's threads and the data loaders beside them.

Example::

    from training.compute import ComputePlan

    plan = ComputePlan.choose("cpu", threads=0, workers=2)   # 0: every core this process may use
    plan.torch_threads, plan.loader_workers                  # (2, 0) on a 2-core machine
    plan.record()                                            # what the run writes in metrics.json

Why this exists: Ultralytics' `select_device` sets `torch.set_num_threads(min(8, cpu_count - 1))`
on CPU (one thread on a 2-core machine) and its trainer forces `workers = 0` on CPU, so images
were loaded and augmented between steps on the training thread itself. qc trained on one core
of two (../shared/MEASURED.md, 2026-12-07). qc gives torch every core the process may use, and
data-loader processes only the cores left over (at most the recipe's `workers`): on 2 cores,
loaders beside two torch threads made batches slower, not faster (BENCHMARKS.md, "Training on
every core"); QC_TRAIN_THREADS below the core count frees cores for them. The plan is applied
from Ultralytics' own callbacks, after it has chosen its device and before it builds its data
loaders, and again at each epoch and validation, since its validator calls `select_device` (and
so resets the threads) on its own.
The figures behind the default are in BENCHMARKS.md, "Training on every core".
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Any

from inspection.errors import ConfigError


def usable_cores() -> int:
    """The cores this process may run on (its CPU affinity, as a container's cpuset limits it)."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # not on Linux
        return max(1, os.cpu_count() or 1)


@dataclass(frozen=True)
class ComputePlan:
    """torch's intra-op threads and the data-loader processes of one training run."""

    device: str
    torch_threads: int
    loader_workers: int
    cores: int

    @classmethod
    def choose(cls, device: str, *, threads: int, workers: int) -> ComputePlan:
        """`threads` 0 means every usable core; `workers` is the recipe's data-loader count.

        On CPU the loaders get the cores torch leaves (at most `workers`). On a GPU torch's CPU
        threads only feed the device, so Ultralytics' own thread count stands there (recorded as
        0: not set) and the loaders are the recipe's."""
        if threads < 0:
            raise ConfigError(f"QC_TRAIN_THREADS={threads}: give 0 (every core) or a positive count")
        if workers < 0:
            raise ConfigError(f"workers: {workers}: give 0 (load on the training thread) or more")
        cores = usable_cores()
        on_cpu = device in ("cpu", "mps")
        if not on_cpu:
            return cls(device=device, torch_threads=0, loader_workers=workers, cores=cores)
        torch_threads = threads or cores
        loaders = min(workers, max(cores - torch_threads, 0))
        return cls(device=device, torch_threads=torch_threads, loader_workers=loaders, cores=cores)

    def record(self) -> dict[str, Any]:
        """The plan as the run's record keeps it (metrics.json, `compute`)."""
        return {"device": self.device, "torch_threads": self.torch_threads,
                "loader_workers": self.loader_workers, "cores": self.cores}

    def attach(self, model) -> dict[str, Any]:
        """Apply the plan through Ultralytics' callbacks on `model` (an ultralytics.YOLO).

        Returns a record that fills as training starts with what was in force: torch's threads
        and the training loader's worker processes, as read back from torch and the loader."""
        from training.ultralytics_env import set_torch_threads, torch_threads

        seen: dict[str, Any] = {}

        def threads(_component) -> None:
            if self.torch_threads:
                set_torch_threads(self.torch_threads)

        def before_loaders(trainer) -> None:
            # Runs after the trainer's `workers = 0` on CPU and before its loaders are built.
            trainer.args.workers = self.loader_workers
            threads(trainer)

        def first_batch(trainer) -> None:
            if not seen:
                seen["torch_threads"] = torch_threads()
                seen["loader_workers"] = int(getattr(trainer.train_loader, "num_workers", 0))

        model.add_callback("on_pretrain_routine_start", before_loaders)
        for event in ("on_train_start", "on_train_epoch_start", "on_val_start"):
            model.add_callback(event, threads)
        model.add_callback("on_train_batch_end", first_batch)
        return seen
