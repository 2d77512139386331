"""Stage-2 data mix: the K-shot novel images at a fixed share of instances.

Stage 2 trains the mask head on the base training set *and* the K-shot
novel instances. Concatenated and sampled uniformly, COCO's ~98k base images
drown the 20 × K novel images: at K = 1 about 0.01 % of the sampled instances
are novel, so the novel rows of the class embedding (and the novel channels
of a class-specific FCN mask head) barely train. :class:`FewShotShareSampler`
draws the images so that a chosen share of the sampled *instances* comes from
the K-shot member, whatever the sizes of the two sets. It is the image-level
analogue of TFA's balanced fine-tuning set, kept separate from the dataset so
the data list (and what a ``ConcatDataset`` index means) is unchanged.
"""
import itertools
from typing import Iterator, List, Optional, Sequence, Tuple

import numpy as np
import torch
from mmengine.dataset import ConcatDataset
from mmengine.dist import get_dist_info, sync_random_seed
from torch.utils.data import Sampler

from mmdet.registry import DATA_SAMPLERS


def _is_k_shot(dataset) -> bool:
    """Whether ``dataset`` is built from K-shot split files."""
    return bool(getattr(dataset, 'few_shot_root', None))


def count_instances(dataset) -> np.ndarray:
    """Non-ignored instances of every image of a (fully initialised)
    dataset, int64 (len(dataset), ) — what reaches the mask loss."""
    if hasattr(dataset, 'full_init'):
        dataset.full_init()
    return np.array([
        sum(not inst.get('ignore_flag', 0)
            for inst in dataset.get_data_info(i)['instances'])
        for i in range(len(dataset))
    ],
                    dtype=np.int64)


def k_shot_image_probability(share: float, mean_k_shot: float,
                             mean_rest: float) -> float:
    """Probability p of drawing an image from the K-shot member so that its
    instances are a fraction ``share`` of all sampled instances.

    With m_k and m_r the mean instances per image of the two sources, the
    expected share is p·m_k / (p·m_k + (1 − p)·m_r); solving for p gives
    p = s·m_r / (s·m_r + (1 − s)·m_k).
    """
    return share * mean_rest / (share * mean_rest + (1 - share) * mean_k_shot)


@DATA_SAMPLERS.register_module()
class FewShotShareSampler(Sampler):
    """Infinite sampler in which the K-shot member of a ``ConcatDataset``
    supplies a fixed share of the sampled instances.

    Every draw picks the K-shot member with probability
    :func:`k_shot_image_probability` (from the mean instance counts of the
    two sources, computed once) and otherwise the other members, pooled;
    within a source, images come from a fresh random permutation each time
    the source is exhausted (every image is seen before any repeats). As
    with mmengine's ``InfiniteSampler``, every rank generates the same
    stream from one seed and takes every ``world_size``-th index, so ranks
    see disjoint images and the stream does not depend on the number of
    data-loader workers. It works under mmdet's ``AspectRatioBatchSampler``.

    Args:
        dataset (ConcatDataset): The stage-2 training set: exactly one member
            is a K-shot dataset (``few_shot_root`` set, e.g. the novel shots
            of a ``FewShotCocoDataset``); the others (the base training set)
            are pooled.
        few_shot_share (float): Target fraction of sampled instances that
            come from the K-shot member, in (0, 1). Defaults to 0.25
            (chosen by measurement, ``docs/defaults.md``).
        seed (int, optional): Seed of the stream; None draws one and shares
            it between ranks. Defaults to None.

    Raises:
        ValueError: ``dataset`` is not a ``ConcatDataset`` with exactly one
            K-shot member and at least one other non-empty member, or the
            share is outside (0, 1).
    """

    def __init__(self,
                 dataset: ConcatDataset,
                 few_shot_share: float = 0.25,
                 seed: Optional[int] = None) -> None:
        if not (isinstance(few_shot_share, (int, float))
                and 0.0 < few_shot_share < 1.0):
            raise ValueError('FewShotShareSampler: few_shot_share must be in '
                             f'(0, 1), got {few_shot_share!r}')
        members = getattr(dataset, 'datasets', None)
        if not isinstance(dataset, ConcatDataset) or not members:
            raise ValueError(
                'FewShotShareSampler needs a ConcatDataset of the base '
                'training set and the K-shot set, got '
                f'{type(dataset).__name__}')
        k_shot = [i for i, m in enumerate(members) if _is_k_shot(m)]
        if len(k_shot) != 1:
            raise ValueError(
                'FewShotShareSampler: exactly one member of the '
                'ConcatDataset must be a K-shot dataset (few_shot_root set), '
                f'found {len(k_shot)}')
        self.dataset = dataset
        self.few_shot_share = float(few_shot_share)
        self.rank, self.world_size = get_dist_info()
        self.seed = sync_random_seed() if seed is None else int(seed)

        offsets = np.cumsum([0] + [len(m) for m in members])
        k = k_shot[0]
        self.k_shot_indices = np.arange(offsets[k], offsets[k + 1])
        self.rest_indices = np.concatenate([
            np.arange(offsets[i], offsets[i + 1]) for i in range(len(members))
            if i != k
        ])
        if len(self.k_shot_indices) == 0 or len(self.rest_indices) == 0:
            raise ValueError(
                'FewShotShareSampler: the K-shot member and the other '
                f'members must be non-empty, got {len(self.k_shot_indices)} '
                f'K-shot and {len(self.rest_indices)} other images')
        counts = [count_instances(m) for m in members]
        mean_k = float(counts[k].mean())
        mean_rest = float(
            np.concatenate([c for i, c in enumerate(counts) if i != k]).mean())
        self.mean_instances: Tuple[float, float] = (mean_k, mean_rest)
        self.k_shot_probability = k_shot_image_probability(
            self.few_shot_share, max(mean_k, 1e-6), max(mean_rest, 1e-6))

    def _stream(self) -> Iterator[int]:
        """The global index stream (identical on every rank)."""
        generator = torch.Generator()
        generator.manual_seed(self.seed)
        sources: List[Sequence[int]] = [self.k_shot_indices, self.rest_indices]
        queues: List[List[int]] = [[], []]
        block = 1024
        while True:
            picks = torch.rand(block, generator=generator) < \
                self.k_shot_probability
            for pick in picks.tolist():
                source = 0 if pick else 1
                if not queues[source]:
                    order = torch.randperm(
                        len(sources[source]), generator=generator).tolist()
                    queues[source] = [int(sources[source][i]) for i in order]
                    queues[source].reverse()  # pop() from the end
                yield queues[source].pop()

    def __iter__(self) -> Iterator[int]:
        yield from itertools.islice(self._stream(), self.rank, None,
                                    self.world_size)

    def __len__(self) -> int:
        """The size of the dataset (the sampler itself is infinite)."""
        return len(self.dataset)

    def set_epoch(self, epoch: int) -> None:
        """Not used: the stream is infinite (as mmengine's
        ``InfiniteSampler``)."""
