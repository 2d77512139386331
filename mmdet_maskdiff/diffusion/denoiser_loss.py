"""The training loss of a conditional mask denoiser, with its mixed-precision
rule. Torch only (no mmdet), so one stage-2 training step can be timed on a
bare GPU box with the same code the mask head trains with."""
from typing import Optional

import torch
from torch import Tensor, nn

from .gaussian_diffusion import GaussianDiffusion

__all__ = ['denoiser_loss']


def denoiser_loss(denoiser: nn.Module, diffusion: GaussianDiffusion,
                  cond: Tensor, cond_vector: Optional[Tensor], labels: Tensor,
                  x0: Tensor) -> Tensor:
    """The simple loss ‖target − denoiser(y_t, t, x, k, c)‖² of N RoIs
    (Ho et al. 2020, DDPM Eq. 14) at random timesteps, in float32.

    Mixed precision (``--amp`` / ``AmpOptimWrapper`` with
    ``dtype='bfloat16'``): only the denoiser runs under the caller's
    autocast; the forward process q(y_t | y_0), the regression target and
    the squared error are computed in float32 with autocast off, and the
    denoiser's output is cast to float32 before the loss.

    Args:
        denoiser (nn.Module): A
            :class:`~mmdet_maskdiff.networks.MaskDenoisingUNet`.
        diffusion (GaussianDiffusion): The training diffusion (T steps).
        cond (Tensor): (N, cond_channels, m, m) condition [x, k].
        cond_vector (Tensor, optional): (N, D) prototypes, or None.
        labels (Tensor): (N,) long classes (null class after dropout).
        x0 (Tensor): (N, 1, m, m) masks scaled to {-1, 1}.

    Returns:
        Tensor: (N,) float32 per-RoI losses.
    """
    device_type = x0.device.type
    amp_enabled = torch.is_autocast_enabled(device_type)
    amp_dtype = torch.get_autocast_dtype(device_type)

    with torch.autocast(device_type, dtype=amp_dtype, enabled=amp_enabled):
        encoding = denoiser.encode_condition(cond, cond_vector)

    def model_fn(x_t: Tensor, t_model: Tensor) -> Tensor:
        with torch.autocast(
                device_type, dtype=amp_dtype, enabled=amp_enabled):
            out = denoiser(x_t, t_model, encoding, labels)
        return out.float()

    t = torch.randint(
        0, diffusion.num_timesteps, (x0.shape[0], ), device=x0.device)
    with torch.autocast(device_type, enabled=False):
        losses = diffusion.training_losses(model_fn, x0.float(), t)
    return losses['loss']
