"""Import Ultralytics (and torch) only through here: offline, quiet, and with its state under QC_HOME.

Why: left to itself Ultralytics pip-installs missing export packages (hiding a missing
dependency until a plant PC fails), downloads fonts for plots and `yolo26n.pt` for its AMP
check, checks for updates, and writes settings into ~/.config. Each environment variable
below must be set before the first `import ultralytics`, since it reads them at import.

Example::

    from training.ultralytics_env import load_ultralytics

    ultralytics = load_ultralytics(settings)
    model = ultralytics.YOLO("yolo26n.yaml")
"""

from __future__ import annotations

import os
import sys
from types import ModuleType

from inspection.errors import ConfigError
from inspection.settings import Settings

# Logger callbacks that would phone home or need packages a plant does not have.
_INTEGRATIONS = ("clearml", "comet", "dvc", "mlflow", "raytune", "tensorboard", "wandb")


def load_ultralytics(settings: Settings | None = None) -> ModuleType:
    settings = settings or Settings()
    config_dir = settings.ultralytics_dir
    if "ultralytics" not in sys.modules:
        config_dir.mkdir(parents=True, exist_ok=True)
        os.environ["YOLO_OFFLINE"] = "1"
        os.environ["YOLO_AUTOINSTALL"] = "false"
        os.environ["YOLO_CONFIG_DIR"] = str(config_dir)
        os.environ.setdefault("YOLO_VERBOSE", "false")
        os.environ["NO_ALBUMENTATIONS_UPDATE"] = "1"
    try:
        import ultralytics
        from ultralytics.engine import trainer
        from ultralytics.utils import SETTINGS
    except ImportError as error:
        raise ConfigError(
            "training needs the train extra: pip install 'qc[train,cpu]' "
            f"({error.name} is missing)"
        ) from error
    SETTINGS.update(
        {
            "sync": False,
            "runs_dir": str(settings.runs_dir),
            "weights_dir": str(config_dir / "weights"),
            "datasets_dir": str(settings.datasets_dir),
            "vscode_msg": False,
            **dict.fromkeys(_INTEGRATIONS, False),
        }
    )
    # check_amp() loads yolo26n.pt, downloading it when absent; offline that fails. Modern
    # GPUs run AMP fine, so skip the check (it only runs on CUDA devices).
    trainer.check_amp = lambda model: True
    return ultralytics


def cuda_available() -> bool:
    """Whether torch sees a CUDA device (torch is imported here, as Ultralytics is)."""
    import torch

    return bool(torch.cuda.is_available())


def set_torch_threads(count: int) -> None:
    """torch's intra-op threads for this process (training/compute.py decides how many)."""
    import torch

    if torch.get_num_threads() != count:
        torch.set_num_threads(count)


def torch_threads() -> int:
    import torch

    return int(torch.get_num_threads())
