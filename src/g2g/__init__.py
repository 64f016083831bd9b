"""G2G: class/content disentanglement by cross-training."""
from .inference import G2GModel, load

__all__ = ["G2GModel", "load"]
__version__ = "0.1.0"
