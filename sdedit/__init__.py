"""SDEdit Studio: guided image synthesis and editing with pretrained diffusion models (Meng et al., 2022)."""

from .configs import ModelConfig, default_config, model_configs
from .errors import InputError, LimitError, ModelLoadError, ModelNotFoundError, SDEditError
from .pipeline import SDEditOutput, SDEditPipeline, load_default

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
