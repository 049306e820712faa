"""Generator families behind one interface (see base.GenerativeModel). Importing this package registers them."""

from synthdata.models.base import MODEL_FAMILIES, GenerativeModel, build_model
from synthdata.models.diffusion import ConditionalDDPM, DiffusionConfig
from synthdata.models.gan import ConditionalGAN, GANConfig
from synthdata.models.vae import ConditionalVAE, VAEConfig

__all__ = [
    "MODEL_FAMILIES",
    "GenerativeModel",
    "build_model",
    "ConditionalGAN",
    "GANConfig",
    "ConditionalVAE",
    "VAEConfig",
    "ConditionalDDPM",
    "DiffusionConfig",
]
