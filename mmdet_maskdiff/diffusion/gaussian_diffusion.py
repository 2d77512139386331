"""Model-agnostic Gaussian diffusion over masks scaled to [-1, 1].

Formulas follow Ho et al., "Denoising Diffusion Probabilistic Models",
NeurIPS 2020 (arXiv 2006.11239; "DDPM" below), which MaskDiff (Le et al.,
AAAI 2024, arXiv 2303.05105) uses for its mask distribution model. The
v-parameterisation is from Salimans & Ho, "Progressive Distillation for Fast
Sampling of Diffusion Models", ICLR 2022.

The class holds no network: methods that need one receive
``model_fn(x_t, t, **kwargs)`` where ``t`` holds the *original* training
timesteps (see :meth:`GaussianDiffusion.respace`).
"""
from __future__ import annotations

from typing import Callable, Mapping, Optional

import numpy as np
import torch
from torch import Tensor

from .schedules import StepSpec, space_timesteps

__all__ = ['GaussianDiffusion', 'PREDICTION_TYPES']

PREDICTION_TYPES = ('epsilon', 'x0', 'v')
ModelFn = Callable[..., Tensor]


class GaussianDiffusion:
    """Forward process, posterior, parameterisations and the training loss.

    q(x_t | x_0) = N(√ᾱ_t x_0, (1 − ᾱ_t) I), ᾱ_t = ∏_{s<=t} (1 − β_s)
    (DDPM Eq. 4). Indices t run over 0..T−1; t = 0 is one step of noise.
    All coefficient arrays are precomputed once in float64 numpy.

    Args:
        betas: (T,) noise variances, each in (0, 1).
        prediction_type: what the network predicts: ``'epsilon'`` (the
            noise, as in the paper), ``'x0'`` (the clean mask) or ``'v'``
            (√ᾱ_t ε − √(1 − ᾱ_t) x_0).
        timestep_map: (T,) original training timestep of each index;
            identity if None. Set by :meth:`respace`.
        clip_denoised: clamp predicted x_0 to [-1, 1] (masks live there).

    Attributes:
        num_timesteps (int): T.
        timestep_map (np.ndarray): (T,) int64.
    """

    def __init__(self,
                 betas: np.ndarray,
                 prediction_type: str = 'epsilon',
                 timestep_map: Optional[np.ndarray] = None,
                 clip_denoised: bool = True) -> None:
        betas = np.asarray(betas, dtype=np.float64)
        if betas.ndim != 1 or betas.size == 0:
            raise ValueError('betas must be a non-empty 1-D array, got '
                             f'shape {betas.shape}')
        if not np.all((betas > 0) & (betas < 1)):
            raise ValueError('betas must lie in the open interval (0, 1)')
        if prediction_type not in PREDICTION_TYPES:
            raise ValueError(f'prediction_type must be one of '
                             f'{PREDICTION_TYPES}, got {prediction_type!r}')
        self.betas = betas
        self.num_timesteps = len(betas)
        self.prediction_type = prediction_type
        self.clip_denoised = bool(clip_denoised)
        if timestep_map is None:
            timestep_map = np.arange(self.num_timesteps)
        self.timestep_map = np.asarray(timestep_map, dtype=np.int64)
        if (self.timestep_map.shape != betas.shape
                or np.any(self.timestep_map < 0)):
            raise ValueError(
                f'timestep_map must hold {self.num_timesteps} non-negative '
                f'ints, got shape {self.timestep_map.shape}')

        alphas = 1.0 - betas
        acp = np.cumprod(alphas)
        acp_prev = np.append(1.0, acp[:-1])
        self.alphas_cumprod = acp
        self.alphas_cumprod_prev = acp_prev
        self.one_minus_alphas_cumprod = 1.0 - acp
        self.sqrt_alphas_cumprod = np.sqrt(acp)
        self.sqrt_one_minus_alphas_cumprod = np.sqrt(1.0 - acp)
        self.log_one_minus_alphas_cumprod = np.log(1.0 - acp)
        self.sqrt_recip_alphas_cumprod = np.sqrt(1.0 / acp)
        self.sqrt_recipm1_alphas_cumprod = np.sqrt(1.0 / acp - 1.0)
        # Posterior q(x_{t-1} | x_t, x_0), DDPM Eq. 6-7.
        self.posterior_variance = betas * (1.0 - acp_prev) / (1.0 - acp)
        # The variance is 0 at t = 0: the log takes the t = 1 value there
        # (β_0 when T = 1) to stay finite.
        first = self.posterior_variance[1] if len(betas) > 1 else betas[0]
        self.posterior_log_variance_clipped = np.log(
            np.append(first, self.posterior_variance[1:]))
        self.posterior_mean_coef1 = betas * np.sqrt(acp_prev) / (1.0 - acp)
        self.posterior_mean_coef2 = ((1.0 - acp_prev) * np.sqrt(alphas) /
                                     (1.0 - acp))

        self._tables: dict[tuple, tuple[np.ndarray, Tensor]] = {}

    def __repr__(self) -> str:
        return (f'{type(self).__name__}(num_timesteps={self.num_timesteps}, '
                f'prediction_type={self.prediction_type!r}, '
                f'clip_denoised={self.clip_denoised})')

    # ---------------------------------------------------------------- helpers
    def _table(self, arr: np.ndarray, device: torch.device,
               dtype: torch.dtype) -> Tensor:
        """``arr`` as a tensor on ``device``, cached: copying a host array
        at every sampling step would synchronise CUDA."""
        key = (id(arr), torch.device(device), dtype)
        cached = self._tables.get(key)
        if cached is None:
            # the entry keeps ``arr`` alive, so its id cannot be reused
            cached = (arr, torch.from_numpy(arr).to(dtype=dtype).to(device))
            self._tables[key] = cached
        return cached[1]

    def _extract(self,
                 arr: np.ndarray,
                 t: Tensor,
                 shape: torch.Size,
                 dtype: torch.dtype = torch.float32) -> Tensor:
        """Gather ``arr[t]`` and reshape it to broadcast against ``shape``.

        Args:
            arr: (T,) one of this object's coefficient arrays.
            t: (N,) long indices in [0, T).
            shape: shape (N, ...) of the tensor the result multiplies.
            dtype: dtype of that tensor.

        Returns:
            Tensor: (N, 1, ..., 1) on ``t.device``.
        """
        values = self._table(arr, t.device, dtype)[t]
        return values.reshape(values.shape + (1, ) *
                              (len(shape) - values.ndim))

    def _coef(self, arr: np.ndarray, t: Tensor, x: Tensor) -> Tensor:
        return self._extract(arr, t, x.shape, x.dtype)

    def model_timesteps(self, t: Tensor) -> Tensor:
        """Map (possibly respaced) indices to original training timesteps.

        Args:
            t: (N,) long indices in [0, T).

        Returns:
            Tensor: (N,) long original timesteps.
        """
        return self._table(self.timestep_map, t.device, torch.long)[t]

    # -------------------------------------------------------- forward process
    def q_mean_variance(self, x0: Tensor,
                        t: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        """Moments of q(x_t | x_0) (DDPM Eq. 4).

        Args:
            x0: (N, ...) clean data.
            t: (N,) long indices.

        Returns:
            tuple: mean (N, ...), variance and log-variance (N, 1, ..., 1).
        """
        mean = self._coef(self.sqrt_alphas_cumprod, t, x0) * x0
        variance = self._coef(self.one_minus_alphas_cumprod, t, x0)
        log_variance = self._coef(self.log_one_minus_alphas_cumprod, t, x0)
        return mean, variance, log_variance

    def q_sample(self,
                 x0: Tensor,
                 t: Tensor,
                 noise: Optional[Tensor] = None) -> Tensor:
        """Draw x_t = √ᾱ_t x_0 + √(1 − ᾱ_t) ε ~ q(x_t | x_0) (DDPM Eq. 4).

        Args:
            x0: (N, ...) clean data.
            t: (N,) long indices.
            noise: (N, ...) ε; standard normal (global RNG) if None.

        Returns:
            Tensor: (N, ...) x_t.
        """
        if noise is None:
            noise = torch.randn_like(x0)
        return (self._coef(self.sqrt_alphas_cumprod, t, x0) * x0 +
                self._coef(self.sqrt_one_minus_alphas_cumprod, t, x0) * noise)

    def q_posterior_mean_variance(self, x0: Tensor, x_t: Tensor,
                                  t: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        """Moments of q(x_{t−1} | x_t, x_0) (DDPM Eq. 6-7).

        μ̃ = β_t √ᾱ_{t−1} / (1 − ᾱ_t) · x_0
            + (1 − ᾱ_{t−1}) √α_t / (1 − ᾱ_t) · x_t,
        β̃ = (1 − ᾱ_{t−1}) / (1 − ᾱ_t) · β_t.

        Args:
            x0: (N, ...) clean data (or its prediction).
            x_t: (N, ...) noisy data at index t.
            t: (N,) long indices.

        Returns:
            tuple: mean (N, ...), variance and clipped log-variance
            (N, 1, ..., 1).
        """
        mean = (
            self._coef(self.posterior_mean_coef1, t, x_t) * x0 +
            self._coef(self.posterior_mean_coef2, t, x_t) * x_t)
        variance = self._coef(self.posterior_variance, t, x_t)
        log_variance = self._coef(self.posterior_log_variance_clipped, t, x_t)
        return mean, variance, log_variance

    # ------------------------------------------------------ parameterisations
    def _x0_from_eps(self, x_t: Tensor, t: Tensor, eps: Tensor) -> Tensor:
        return (self._coef(self.sqrt_recip_alphas_cumprod, t, x_t) * x_t -
                self._coef(self.sqrt_recipm1_alphas_cumprod, t, x_t) * eps)

    def _eps_from_x0(self, x_t: Tensor, t: Tensor, x0: Tensor) -> Tensor:
        scaled_x_t = self._coef(self.sqrt_recip_alphas_cumprod, t, x_t) * x_t
        return ((scaled_x_t - x0) /
                self._coef(self.sqrt_recipm1_alphas_cumprod, t, x_t))

    def predict_x0(self,
                   model_output: Tensor,
                   x_t: Tensor,
                   t: Tensor,
                   clip: Optional[bool] = None) -> Tensor:
        """x_0 implied by the network output.

        ε: x_0 = (x_t − √(1 − ᾱ_t) ε) / √ᾱ_t (DDPM Eq. 4 inverted);
        v: x_0 = √ᾱ_t x_t − √(1 − ᾱ_t) v (Salimans & Ho 2022).

        Args:
            model_output: (N, ...) network output of ``prediction_type``.
            x_t: (N, ...) noisy input at index t.
            t: (N,) long indices.
            clip: clamp to [-1, 1]; defaults to ``clip_denoised``.

        Returns:
            Tensor: (N, ...) predicted x_0.
        """
        if self.prediction_type == 'epsilon':
            x0 = self._x0_from_eps(x_t, t, model_output)
        elif self.prediction_type == 'x0':
            x0 = model_output
        else:
            x0 = (
                self._coef(self.sqrt_alphas_cumprod, t, x_t) * x_t -
                self._coef(self.sqrt_one_minus_alphas_cumprod, t, x_t) *
                model_output)
        clip = self.clip_denoised if clip is None else clip
        return x0.clamp(-1.0, 1.0) if clip else x0

    def predict_eps(self,
                    model_output: Tensor,
                    x_t: Tensor,
                    t: Tensor,
                    clip: Optional[bool] = None,
                    pred_x0: Optional[Tensor] = None) -> Tensor:
        """ε implied by the network output, consistent with
        :meth:`predict_x0`.

        With clipping on, ε is recomputed from the clipped x_0 (as
        improved-diffusion's DDIM does), so x_t = √ᾱ_t x_0 + √(1 − ᾱ_t) ε
        holds for the returned pair; v: ε = √(1 − ᾱ_t) x_t + √ᾱ_t v.

        Args:
            model_output: (N, ...) network output of ``prediction_type``.
            x_t: (N, ...) noisy input at index t.
            t: (N,) long indices.
            clip: clamp x_0 to [-1, 1] first; defaults to ``clip_denoised``.
            pred_x0: (N, ...) ``predict_x0(model_output, x_t, t, clip)`` when
                the caller already has it (a sampler step); computed if None.

        Returns:
            Tensor: (N, ...) predicted ε.
        """
        clip = self.clip_denoised if clip is None else clip
        if not clip and self.prediction_type == 'epsilon':
            return model_output
        if not clip and self.prediction_type == 'v':
            return (
                self._coef(self.sqrt_one_minus_alphas_cumprod, t, x_t) * x_t +
                self._coef(self.sqrt_alphas_cumprod, t, x_t) * model_output)
        if pred_x0 is None:
            pred_x0 = self.predict_x0(model_output, x_t, t, clip=clip)
        return self._eps_from_x0(x_t, t, pred_x0)

    def training_target(self, x0: Tensor, noise: Tensor, t: Tensor) -> Tensor:
        """Regression target: ε, x_0, or v = √ᾱ_t ε − √(1 − ᾱ_t) x_0.

        Args:
            x0: (N, ...) clean data.
            noise: (N, ...) the ε used to build x_t.
            t: (N,) long indices.

        Returns:
            Tensor: (N, ...) target for ``prediction_type``.
        """
        if self.prediction_type == 'epsilon':
            return noise
        if self.prediction_type == 'x0':
            return x0
        return (self._coef(self.sqrt_alphas_cumprod, t, x0) * noise -
                self._coef(self.sqrt_one_minus_alphas_cumprod, t, x0) * x0)

    def training_losses(
            self,
            model_fn: ModelFn,
            x0: Tensor,
            t: Tensor,
            noise: Optional[Tensor] = None,
            model_kwargs: Optional[Mapping] = None) -> dict[str, Tensor]:
        """Simple loss ‖target − model(x_t, t)‖² (DDPM Eq. 14; the paper's
        training objective for ε).

        Args:
            model_fn: ``model_fn(x_t, t_original, **model_kwargs)`` returning
                (N, ...); gets the original timesteps (``timestep_map``).
            x0: (N, ...) clean masks in [-1, 1].
            t: (N,) long indices in [0, T).
            noise: (N, ...) ε; standard normal if None.
            model_kwargs: extra keyword arguments for ``model_fn``
                (conditioning).

        Returns:
            dict: ``loss`` (N,) mean squared error over the non-batch dims,
            ``model_output`` and ``target`` (N, ...).
        """
        if noise is None:
            noise = torch.randn_like(x0)
        x_t = self.q_sample(x0, t, noise)
        model_output = model_fn(x_t, self.model_timesteps(t),
                                **(model_kwargs or {}))
        if model_output.shape != x0.shape:
            raise ValueError(f'model output shape {tuple(model_output.shape)}'
                             f' != data shape {tuple(x0.shape)}')
        target = self.training_target(x0, noise, t)
        loss = (model_output - target).square().flatten(1).mean(dim=1)
        return dict(loss=loss, model_output=model_output, target=target)

    # -------------------------------------------------------------- respacing
    def respace(self, steps: StepSpec) -> 'GaussianDiffusion':
        """Diffusion over a subset of this one's steps (few-step sampling).

        Keeps indices k_0 < ... < k_{S−1} from :func:`space_timesteps` and
        sets β'_i = 1 − ᾱ_{k_i} / ᾱ_{k_{i−1}} (ᾱ_{k_{−1}} = 1), so that
        ᾱ'_i = ᾱ_{k_i} (Nichol & Dhariwal 2021, Sec. 4). ``timestep_map``
        composes: respacing a respaced diffusion still maps to the original
        training timesteps.

        Args:
            steps: see :func:`space_timesteps`.

        Returns:
            GaussianDiffusion: same prediction type and clipping, S steps.
        """
        kept = np.asarray(
            space_timesteps(self.num_timesteps, steps), dtype=np.int64)
        alphas_cumprod = self.alphas_cumprod[kept]
        betas = 1.0 - alphas_cumprod / np.append(1.0, alphas_cumprod[:-1])
        return GaussianDiffusion(
            betas,
            prediction_type=self.prediction_type,
            timestep_map=self.timestep_map[kept],
            clip_denoised=self.clip_denoised)
