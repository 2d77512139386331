"""Training randomness that a resumed run reproduces exactly."""
from typing import Optional

import torch
from mmengine.dist import get_rank
from mmengine.hooks import Hook

from mmdet.registry import HOOKS
from mmdet_maskdiff.diffusion.keyed_noise import combine_keys, stable_key


def iteration_seed(seed: int, rank: int, iteration: int) -> int:
    """The 32-bit seed of training iteration ``iteration`` on ``rank``."""
    return combine_keys(
        combine_keys(stable_key(seed), rank), stable_key(iteration))


@HOOKS.register_module()
class IterationSeedHook(Hook):
    """Seed torch's global RNG before every training iteration from
    ``(runner.seed, rank, iteration)``.

    Every random draw of a training step comes from torch's global RNG: the
    RPN and RoI samplers' ``randperm`` (mmdet's ``RandomSampler``) and the
    mask head's timesteps, noise, class dropout, RoI subset and support
    shots. A checkpoint does not hold that RNG's state, so a run resumed from
    ``iter_N.pth`` used to draw different numbers from iteration N on than
    the uninterrupted run. Seeding each iteration from its index makes the
    draws a function of the iteration alone, and mmengine restores
    ``runner.iter`` and ``runner.seed`` on resume: a resumed run is
    bit-identical to the uninterrupted one on the CPU at a fixed thread count
    (on GPUs, up to non-deterministic kernels).

    Why not save the RNG state in the checkpoint instead: only rank 0 writes
    it (the other ranks' states would need gathering), and what runs between
    the save and the next iteration (validation, mmengine skipping the
    already-seen batches on resume) would also have to be replayed exactly;
    a per-iteration seed needs no state at all.

    The data pipeline is not affected: its numpy/random draws happen in the
    dataloader workers (seeded by mmengine per worker) or, with
    ``num_workers=0``, in the main process before this hook runs — and on
    resume mmengine re-reads the batches already trained on, replaying those
    draws. Validation and testing are not touched either (the mask head's
    test noise is keyed per RoI, see ``DiffusionMaskHead``).
    """

    priority = 'VERY_HIGH'

    def before_train_iter(self,
                          runner,
                          batch_idx: int,
                          data_batch: Optional[dict] = None) -> None:
        torch.manual_seed(iteration_seed(runner.seed, get_rank(), runner.iter))
