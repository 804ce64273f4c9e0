"""SDEdit Studio: guided image synthesis and editing with pretrained diffusion models (Meng et al., 2022).

The public names load on first use, so that `import sdedit.threads` (and the CLI and app, which apply the
CPU thread policy first) can set OpenMP's variables before anything imports torch.
"""

from __future__ import annotations

from importlib import import_module
from typing import TYPE_CHECKING

from .errors import InputError, LimitError, ModelLoadError, ModelNotFoundError, SDEditError

if TYPE_CHECKING:
    from .configs import ModelConfig, default_config, model_configs
    from .pipeline import SDEditOutput, SDEditPipeline, load_default

_LAZY = {
    "ModelConfig": "configs",
    "default_config": "configs",
    "model_configs": "configs",
    "SDEditOutput": "pipeline",
    "SDEditPipeline": "pipeline",
    "load_default": "pipeline",
}

__all__ = [
    "InputError",
    "LimitError",
    "ModelConfig",
    "ModelLoadError",
    "ModelNotFoundError",
    "SDEditError",
    "SDEditOutput",
    "SDEditPipeline",
    "default_config",
    "load_default",
    "model_configs",
]
__version__ = "0.1.0"


def __getattr__(name: str):
    if name in _LAZY:
        value = getattr(import_module(f".{_LAZY[name]}", __name__), name)
        globals()[name] = value
        return value
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
