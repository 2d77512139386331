"""SupportSetHook with a fake runner on the synthetic dataset."""
import json
from collections import Counter
from types import SimpleNamespace

import pytest
import torch
from mmengine.logging import MMLogger

import mmdet_maskdiff  # noqa: F401
from mmdet_maskdiff.datasets import FewShotCocoDataset
from mmdet_maskdiff.datasets.synthetic_class_splits import \
    SYNTHETIC_CLASS_SPLITS
from mmdet_maskdiff.engine.hooks import SupportSetHook
from mmdet_maskdiff.models import SupportEncoder
from mmdet_maskdiff.structures import SupportBank

CROP = 16


class RecordingEncoder(SupportEncoder):
    """A support encoder that records every bank it is given."""

    def __init__(self):
        super().__init__(spec=None)
        self.banks = []
        self.stored_sets = []

    def use_bank(self, bank):
        self.banks.append(bank)

    def store(self, bank, info=None):
        self.stored_sets.append((bank, info))


class FakeModel:
    """A detector whose RoI head holds a :class:`RecordingEncoder`, the one
    thing the hook talks to."""

    def __init__(self):
        self.roi_head = SimpleNamespace(support_encoder=RecordingEncoder())
        self.banks = self.roi_head.support_encoder.banks
        self.stored = self.roi_head.support_encoder.stored_sets


def dataset_cfg(paths, **kwargs):
    cfg = dict(
        type='FewShotCocoDataset',
        data_root=paths['root'],
        ann_file='annotations/instances_train.json',
        data_prefix=dict(img='images/train/'),
        class_splits=SYNTHETIC_CLASS_SPLITS,
        pipeline=[])
    cfg.update(kwargs)
    return cfg


def k_shot_cfg(paths):
    return dataset_cfg(
        paths,
        few_shot_root='few_shot',
        num_base_shots=1,
        num_novel_shots=1,
        seed=0)


def fake_runner(paths, with_train_loader=True):
    runner = SimpleNamespace(
        model=FakeModel(), logger=MMLogger.get_instance('test_support_hook'))
    if with_train_loader:
        cfg = dataset_cfg(paths)
        cfg.pop('type')
        runner.train_dataloader = SimpleNamespace(
            dataset=FewShotCocoDataset(**cfg))
    return runner


def instances_per_class(dataset):
    counts = Counter()
    for i in range(len(dataset)):
        for instance in dataset.get_data_info(i)['instances']:
            if not instance.get('ignore_flag', 0):
                counts[instance['bbox_label']] += 1
    return counts


def test_banks_for_train_val_and_test(synthetic_data):
    runner = fake_runner(synthetic_data)
    hook = SupportSetHook(
        dataset=k_shot_cfg(synthetic_data),
        crop_size=CROP,
        max_train_per_class=3)
    model = runner.model

    hook.before_train(runner)
    train_bank = model.banks[-1]
    counts = instances_per_class(runner.train_dataloader.dataset)
    expected = torch.tensor([min(counts[c], 3) for c in range(8)])
    assert torch.equal(train_bank.num_per_class(), expected)
    assert train_bank.crop_size == CROP

    hook.before_val(runner)
    test_bank = model.banks[-1]
    assert test_bank is not train_bank
    # the 1-shot set of seed 0: one instance of each of the 8 classes
    assert torch.equal(test_bank.num_per_class(), torch.ones(8, dtype=int))
    assert test_bank.class_names == tuple(SYNTHETIC_CLASS_SPLITS['base'] +
                                          SYNTHETIC_CLASS_SPLITS['novel'])

    hook.after_val(runner)  # back to the training pool
    assert model.banks[-1] is train_bank

    hook.before_test(runner)  # built once, reused
    assert model.banks[-1] is test_bank
    assert len(model.banks) == 4


def test_checkpoints_get_the_test_bank_from_the_start(synthetic_data):
    """Before training, the model is given the K-shot test bank to keep
    with its weights (so every checkpoint carries it), with its
    provenance; a test run gives it again."""
    runner = fake_runner(synthetic_data)
    hook = SupportSetHook(
        dataset=k_shot_cfg(synthetic_data), crop_size=CROP, context=0.2)
    model = runner.model
    hook.before_train(runner)
    assert len(model.stored) == 1
    bank, info = model.stored[0]
    assert bank is hook.test_bank()
    assert bank is not model.banks[-1]  # training uses the pool
    assert info == dict(
        crop_size=CROP,
        context=0.2,
        dataset=dict(
            type='FewShotCocoDataset',
            ann_file='annotations/instances_train.json',
            few_shot_root='few_shot',
            seed=0,
            num_base_shots=1,
            num_novel_shots=1,
            class_splits=json.loads(json.dumps(SYNTHETIC_CLASS_SPLITS))))
    hook.before_test(runner)
    assert model.stored[-1][0] is bank and model.banks[-1] is bank


def test_test_bank_crops_are_the_k_shot_instances(synthetic_data):
    """The test bank holds exactly the K-shot file's instances."""
    runner = fake_runner(synthetic_data, with_train_loader=False)
    hook = SupportSetHook(dataset=k_shot_cfg(synthetic_data), crop_size=CROP)
    hook.before_val(runner)
    bank = runner.model.banks[-1]
    cfg = k_shot_cfg(synthetic_data)
    cfg.pop('type')
    k_shot = FewShotCocoDataset(**cfg)
    img_ids = sorted(
        k_shot.get_data_info(i)['img_id'] for i in range(len(k_shot))
        for _ in k_shot.get_data_info(i)['instances'])
    assert sorted(bank.img_ids.tolist()) == img_ids
    assert bank.crops.shape == (8, 3, CROP, CROP)
    assert bool((bank.masks.flatten(1).sum(1) > 0).all())


def test_after_val_before_training_keeps_the_test_bank(synthetic_data):
    runner = fake_runner(synthetic_data, with_train_loader=False)
    hook = SupportSetHook(dataset=k_shot_cfg(synthetic_data), crop_size=CROP)
    hook.before_val(runner)
    hook.after_val(runner)  # no training pool yet: nothing to restore
    assert len(runner.model.banks) == 1


def test_explicit_training_pool(synthetic_data):
    """``train_dataset`` replaces the runner's training set as the pool."""
    runner = fake_runner(synthetic_data, with_train_loader=False)
    hook = SupportSetHook(
        dataset=k_shot_cfg(synthetic_data),
        train_dataset=dataset_cfg(
            synthetic_data, ann_classes=SYNTHETIC_CLASS_SPLITS['novel']),
        crop_size=CROP,
        max_train_per_class=None)
    hook.before_train(runner)
    counts = runner.model.banks[-1].num_per_class()
    assert counts[:6].sum() == 0 and bool((counts[6:] > 0).all())


def test_missing_k_shot_data_raises(synthetic_data):
    runner = fake_runner(synthetic_data, with_train_loader=False)
    hook = SupportSetHook(
        dataset=dict(k_shot_cfg(synthetic_data), few_shot_root='nowhere'),
        crop_size=CROP)
    with pytest.raises(
            FileNotFoundError,
            match='few-shot split folder .*nowhere .*no such folder'):
        hook.before_val(runner)
    assert runner.model.banks == []


def stage2_runner(paths, **k_shot_overrides):
    """A runner whose training set is stage 2's: the base set plus the
    K-shot novel instances (a ConcatDataset)."""
    from mmengine.dataset import ConcatDataset
    runner = fake_runner(paths, with_train_loader=False)
    base = dataset_cfg(paths, ann_classes=SYNTHETIC_CLASS_SPLITS['base'])
    novel = dict(k_shot_cfg(paths), num_base_shots=0)
    novel.update(k_shot_overrides)
    members = [
        FewShotCocoDataset(**{
            k: v
            for k, v in cfg.items() if k != 'type'
        }) for cfg in (base, novel)
    ]
    runner.train_dataloader = SimpleNamespace(dataset=ConcatDataset(members))
    return runner


def test_same_k_shot_sample_passes(synthetic_data):
    runner = stage2_runner(synthetic_data)
    hook = SupportSetHook(dataset=k_shot_cfg(synthetic_data), crop_size=CROP)
    hook.before_train(runner)
    assert len(runner.model.banks) == 1


@pytest.mark.parametrize('override,train_says', [
    (dict(seed=1), 'seed=1, num_novel_shots=1'),
    (dict(num_novel_shots=2), 'seed=0, num_novel_shots=2'),
])
def test_training_and_support_from_other_samples_raise(synthetic_data,
                                                       override, train_says):
    """The seed (or K) overridden in one place only must not silently train
    on one K-shot sample and condition on another."""
    runner = stage2_runner(synthetic_data, **override)
    hook = SupportSetHook(dataset=k_shot_cfg(synthetic_data), crop_size=CROP)
    with pytest.raises(ValueError) as info:
        hook.before_train(runner)
    message = str(info.value)
    assert 'Support set' in message and 'seed=0, num_novel_shots=1' in message
    assert f'training set: {train_says}' in message
    assert 'few_shot.seed=N' in message and "hook's dataset unset" in message
    assert runner.model.banks == []


def test_support_set_defaults_to_the_training_k_shot_member(synthetic_data):
    """No dataset: the support set is the training set's K-shot member of
    the runner's config with K shots of every class (base and novel), same
    seed -- configured once."""
    runner = stage2_runner(synthetic_data, seed=1)
    novel = dict(k_shot_cfg(synthetic_data), num_base_shots=0, seed=1)
    runner.cfg = dict(
        train_dataloader=dict(dataset=dict(
            type='ConcatDataset',
            datasets=[dataset_cfg(synthetic_data), novel])))
    hook = SupportSetHook(crop_size=CROP)
    hook.before_train(runner)
    hook.before_val(runner)
    support = hook._support_dataset()
    assert (support.seed, support.num_base_shots,
            support.num_novel_shots) == (1, 1, 1)
    explicit = SupportSetHook(
        dataset=dict(k_shot_cfg(synthetic_data), seed=1), crop_size=CROP)
    explicit.before_val(runner)
    assert torch.equal(hook.test_bank().img_ids, explicit.test_bank().img_ids)
    assert torch.equal(hook.test_bank().masks, explicit.test_bank().masks)


def test_few_shot_seed_not_applied_is_an_error(synthetic_data):
    """A config naming few_shot.seed=1 built by a runner that did not apply
    it (the default Runner) would train on seed 0."""
    runner = stage2_runner(synthetic_data)
    runner.cfg = dict(few_shot=dict(seed=1))
    hook = SupportSetHook(dataset=k_shot_cfg(synthetic_data), crop_size=CROP)
    with pytest.raises(ValueError, match="few_shot.seed=1 but the training "
                       "set reads the K-shot sample seed=0: build the runner "
                       "with runner_type='FewShotRunner'"):
        hook.before_train(runner)


def test_check_sample_can_be_turned_off(synthetic_data):
    runner = stage2_runner(synthetic_data, seed=1)
    hook = SupportSetHook(
        dataset=k_shot_cfg(synthetic_data), crop_size=CROP, check_sample=False)
    hook.before_train(runner)
    assert len(runner.model.banks) == 1


def _rank_worker(rank, world_size, port, paths, out_dir, few_shot_roots):
    """One process of a 2-process gloo group: build the test bank through
    the hook, once per ``few_shot_roots`` entry, in one group; rank 1 must
    not decode any image."""
    import os
    import pickle

    import torch.distributed as dist

    from mmdet_maskdiff.engine.hooks import support_set_hook
    os.environ.update(MASTER_ADDR='127.0.0.1', MASTER_PORT=str(port))
    dist.init_process_group('gloo', rank=rank, world_size=world_size)
    if rank == 1:

        def refuse(*args, **kwargs):
            raise AssertionError('rank 1 decoded the support images')

        support_set_hook.build_support_bank = refuse
    results = []
    for few_shot_root in few_shot_roots:
        hook = SupportSetHook(
            dataset=dict(k_shot_cfg(paths), few_shot_root=few_shot_root),
            crop_size=CROP)
        try:
            results.append(hook.test_bank())
        except Exception as exc:
            results.append(f'{type(exc).__name__}: {exc}')
    with open(os.path.join(out_dir, f'rank{rank}.pkl'), 'wb') as f:
        pickle.dump(results, f)
    dist.destroy_process_group()


def _run_two_ranks(tmp_path, paths, few_shot_roots):
    """Both ranks' results, ``[rank 0's, rank 1's]``, each a list with one
    entry per ``few_shot_roots`` entry (one 2-process spawn for all)."""
    import os.path as osp
    import pickle
    import sys

    import torch.multiprocessing as mp
    sys.path.insert(
        0, osp.join(osp.dirname(osp.dirname(osp.abspath(__file__))),
                    'test_tools'))
    from _tool_helpers import free_port
    mp.spawn(
        _rank_worker,
        args=(2, free_port(), paths, str(tmp_path), few_shot_roots),
        nprocs=2)
    results = []
    for rank in range(2):
        with open(tmp_path / f'rank{rank}.pkl', 'rb') as f:
            results.append(pickle.load(f))
    return results


@pytest.mark.slow
def test_bank_is_built_on_rank_0_and_shared(synthetic_data, tmp_path):
    """Distributed: rank 0 reads the images (with a progress bar), the
    other ranks get its bank; an error on rank 0 stops every rank."""
    (ours, bad_ours), (theirs, bad_theirs) = _run_two_ranks(
        tmp_path, synthetic_data, ['few_shot', 'nowhere'])
    assert isinstance(ours, SupportBank) and len(ours) == 8
    assert isinstance(theirs, SupportBank), theirs
    for name in ('crops', 'masks', 'labels', 'img_ids'):
        assert torch.equal(getattr(ours, name), getattr(theirs, name))
    assert theirs.class_names == ours.class_names

    assert bad_ours.startswith('FileNotFoundError') and 'nowhere' in bad_ours
    assert bad_theirs == bad_ours
