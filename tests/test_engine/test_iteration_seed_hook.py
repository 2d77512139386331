"""IterationSeedHook: a training iteration's draws depend on (seed, rank,
iteration) only, not on what ran before it."""
import types

import torch

from mmdet_maskdiff.engine import IterationSeedHook, iteration_seed


def draws_of_iteration(seed, iteration, noise_before=0):
    torch.rand(noise_before)  # whatever ran before this iteration
    runner = types.SimpleNamespace(seed=seed, iter=iteration)
    IterationSeedHook().before_train_iter(runner, batch_idx=iteration)
    return torch.randperm(50), torch.rand(3)


def test_iteration_draws_do_not_depend_on_the_past():
    first = draws_of_iteration(0, 7)
    again = draws_of_iteration(0, 7, noise_before=123)
    assert all(torch.equal(a, b) for a, b in zip(first, again))
    for other in (draws_of_iteration(0, 8), draws_of_iteration(1, 7)):
        assert not torch.equal(first[1], other[1])


def test_seeds_differ_per_rank_iteration_and_seed():
    seeds = {
        iteration_seed(seed, rank, it)
        for seed in (0, 1) for rank in range(4) for it in range(100)
    }
    assert len(seeds) == 2 * 4 * 100
    assert all(0 <= s < 2**32 for s in seeds)
