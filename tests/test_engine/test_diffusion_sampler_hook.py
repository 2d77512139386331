"""DiffusionSamplerHook with a fake runner around a tiny diffusion head."""
import copy
import dataclasses
import os.path as osp
from types import SimpleNamespace

import mmcv
import numpy as np
import pytest
import torch
from mmengine.config import ConfigDict
from mmengine.logging import MMLogger
from mmengine.structures import InstanceData
from torch import nn

import mmdet_maskdiff  # noqa: F401
from mmdet.models.roi_heads.mask_heads import FCNMaskHead
from mmdet.structures import DetDataSample
from mmdet_maskdiff.engine.hooks import DiffusionSamplerHook
from mmdet_maskdiff.models import DiffusionMaskHead, MaskCondition
from mmdet_maskdiff.models.roi_heads.few_shot_roi_head import (
    TRAJECTORY_REQUEST, TRAJECTORY_RESULT)
from mmdet_maskdiff.visualization.trajectory_panel import (HEADER, LABEL, NAME,
                                                           RIGHT)

M = 16


@pytest.fixture(autouse=True)
def _single_thread():
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


class FakeRoIHead(nn.Module):
    """What the hook sees of a FewShotRoIHead: the mask head, the test_cfg
    and its parsed ``diffusion_sampling``."""

    def __init__(self, mask_head, sampler=None):
        super().__init__()
        self.mask_head = mask_head
        self.test_cfg = ConfigDict(
            mask_thr_binary=0.5, diffusion_sampling=sampler or {})
        self.diffusion_sampling = mask_head.parse_test_cfg(self.test_cfg)


class FakeDetector(nn.Module):

    def __init__(self, mask_head, sampler=None):
        super().__init__()
        self.roi_head = FakeRoIHead(mask_head, sampler)


def tiny_head():
    torch.manual_seed(0)
    head = DiffusionMaskHead(
        num_classes=3,
        mask_size=M,
        denoiser=dict(
            type='MaskDenoisingUNet',
            base_channels=8,
            channel_mults=(1, 2),
            num_res_blocks=1,
            attention_channels=(),
            num_head_channels=8),
        use_prototypes=False,
        num_timesteps=50)
    with torch.no_grad():  # non-zero output layer: samples are not blank
        for p in head.parameters():
            p.add_(torch.randn(p.shape) * 0.1)
    return head.eval()


def fake_runner(tmp_path, head=None, sampler=None):
    model = FakeDetector(tiny_head() if head is None else head, sampler)
    return SimpleNamespace(
        model=model,
        logger=MMLogger.get_instance('test_diffusion_sampler_hook'),
        log_dir=str(tmp_path),
        iter=7)


def condition(num):
    g = torch.Generator().manual_seed(0)
    return MaskCondition(
        labels=torch.arange(num) % 3,
        region_image=torch.randn(num, 3, M, M, generator=g),
        shots=torch.randn(num, 1, 4, M, M, generator=g))


SETTINGS = dict(
    type='ddpm',
    steps=3,
    eta=0.5,
    guidance_weight=2.5,
    num_samples=2,
    seed=11,
    chunk_size=4)


def batch(num_images=2):
    """A data batch as the loops hand it to the hooks."""
    return dict(data_samples=[DetDataSample() for _ in range(num_images)])


def predict(runner, num, data_batch=None):
    """What FewShotRoIHead.predict_mask does: the mask head samples with the
    parsed settings, and keeps the reverse chain when the batch's samples
    ask for it (returned in the first output's pred_instances.metainfo)."""
    roi_head = runner.model.roi_head
    samples = (data_batch or batch())['data_samples']
    every = samples[0].metainfo.get(TRAJECTORY_REQUEST)
    out = roi_head.mask_head.predict(
        condition(num), roi_head.diffusion_sampling, trajectory_every=every)
    instances = InstanceData()
    if 'trajectory' in out:
        instances.set_metainfo({TRAJECTORY_RESULT: out['trajectory']})
    return out, [DetDataSample(pred_instances=instances)]


@pytest.mark.parametrize('stage', ['val', 'test'])
def test_the_hook_does_not_change_the_sampler(tmp_path, stage):
    runner = fake_runner(tmp_path, sampler=SETTINGS)
    roi_head = runner.model.roi_head
    before = (copy.deepcopy(roi_head.test_cfg), roi_head.diffusion_sampling)
    hook = DiffusionSamplerHook(save_trajectory=True)
    getattr(hook, f'before_{stage}_epoch')(runner)
    data_batch = batch()
    getattr(hook, f'before_{stage}_iter')(runner, 0, data_batch)
    probs = predict(runner, 3, data_batch)[0]['probs']
    getattr(hook, f'after_{stage}_iter')(runner, 0, None, None)
    getattr(hook, f'after_{stage}_epoch')(runner, {})
    assert (roi_head.test_cfg, roi_head.diffusion_sampling) == before
    # the head sampled with the parsed settings: 2 samples give fractions
    assert torch.equal(probs * 2, (probs * 2).round())
    head = roi_head.mask_head
    expected = head.predict(condition(3), head.parse_test_cfg(
        ConfigDict(diffusion_sampling=SETTINGS)))
    assert torch.equal(probs, expected['probs'])


def test_the_hook_takes_no_sampler_settings():
    with pytest.raises(TypeError, match='sampler'):
        DiffusionSamplerHook(sampler=SETTINGS)
    with pytest.raises(ValueError, match='trajectory_every must be an int'):
        DiffusionSamplerHook(trajectory_every=0)


@pytest.mark.parametrize('stage', ['val', 'test'])
def test_settings_are_added_to_the_metrics(tmp_path, stage):
    runner = fake_runner(tmp_path, sampler=SETTINGS)
    hook = DiffusionSamplerHook()
    getattr(hook, f'before_{stage}_epoch')(runner)
    metrics = {'coco/segm_mAP': 0.25}
    getattr(hook, f'after_{stage}_epoch')(runner, metrics)
    assert metrics['coco/segm_mAP'] == 0.25
    for key in ('steps', 'eta', 'guidance_weight', 'num_samples', 'seed',
                'chunk_size'):
        assert metrics[f'diffusion_sampling/{key}'] == SETTINGS[key]
    assert 'diffusion_sampling/trajectory_every' not in metrics
    # only numbers go to the metrics (they reach the scalar backends)
    assert all(isinstance(v, (int, float)) for v in metrics.values())
    getattr(hook, f'after_{stage}_epoch')(runner, None)  # no metrics: no-op


def detections(labels, scores):
    """One DetDataSample-like output per image with these detections."""
    return [
        SimpleNamespace(
            pred_instances=SimpleNamespace(
                labels=torch.tensor(lab), scores=torch.tensor(sc)))
        for lab, sc in zip(labels, scores)
    ]


@pytest.mark.parametrize('stage', ['val', 'test'])
def test_trajectory_panel(tmp_path, stage):
    runner = fake_runner(
        tmp_path,
        sampler=dict(type='ddim', steps=3, guidance_weight=1.0, seed=0))
    head = runner.model.roi_head.mask_head
    hook = DiffusionSamplerHook(
        save_trajectory=True, num_trajectory_rois=2, cell_size=32)
    getattr(hook, f'before_{stage}_epoch')(runner)
    first = batch()
    getattr(hook, f'before_{stage}_iter')(runner, 0, first)
    assert all(s.metainfo[TRAJECTORY_REQUEST] == 1
               for s in first['data_samples'])
    out, outputs = predict(runner, 3, first)  # the first batch
    probs, trajectory = out['probs'], out['trajectory']
    labelled = detections([[2, 0], [1]], [[0.9, 0.5], [0.25]])
    for output, shown in zip(outputs + [None], labelled):
        if output is not None:
            shown.pred_instances = SimpleNamespace(
                labels=shown.pred_instances.labels,
                scores=shown.pred_instances.scores,
                metainfo=output.pred_instances.metainfo)
    getattr(hook, f'after_{stage}_iter')(runner, 0, None, labelled)

    path = osp.join(str(tmp_path), 'trajectory', f'{stage}_7.png')
    assert hook.saved_paths == [path] and osp.isfile(path)
    panel = mmcv.imread(path, flag='grayscale')
    cell = M * 2 + 2  # 2x upscaled 16-px tiles, 2-px gutter
    top, left = HEADER, LABEL  # column titles above, row titles left
    # per RoI two rows (x_t, predicted x_0); columns: y_T, the 2 later
    # steps, the mask
    assert panel.shape == (top + 2 * 2 * cell, left + 4 * cell + RIGHT)
    assert np.all(panel[top:top + cell - 2,
                        left + cell - 2:left + cell] == 255)  # gutter
    for row in range(2):
        y = top + row * 2 * cell
        for s in range(3):
            x = left + s * cell
            for sub, key in enumerate(('x_t', 'pred_x0')):
                tile = panel[y + sub * cell:y + sub * cell + 2 * M:2,
                             x:x + 2 * M:2]
                value = trajectory[key][row, s, 0]
                expected = ((value.clamp(-1, 1) + 1) * 127.5).round()
                assert np.array_equal(tile, expected.byte().numpy())
        last = panel[y:y + 2 * M:2, left + 3 * cell:left + 3 * cell + 2 * M:2]
        assert np.array_equal(last > 127, probs[row, 0].numpy() > 0.5)
        # the row title (class, score) is drawn left of the tiles
        assert panel[y:y + 2 * cell, :left - NAME].min() < 128
    for col in range(4):  # a title above every column
        assert panel[:top,
                     left + col * cell:left + (col + 1) * cell].min() < 128

    # later batches run without trajectory capture and write nothing
    later = batch()
    getattr(hook, f'before_{stage}_iter')(runner, 1, later)
    assert TRAJECTORY_REQUEST not in later['data_samples'][0].metainfo
    out, outputs = predict(runner, 3, later)
    assert 'trajectory' not in out
    getattr(hook, f'after_{stage}_iter')(runner, 1, None, outputs)
    assert hook.saved_paths == [path]


def test_row_titles_are_the_detections_in_roi_order(tmp_path):
    """Rows are titled with class and score of the RoIs the head sampled:
    the batch's detections, image after image."""
    runner = fake_runner(tmp_path)
    runner.val_dataloader = SimpleNamespace(
        dataset=SimpleNamespace(metainfo=dict(classes=('a', 'b', 'c'))))
    outputs = detections([[2, 0], [1]], [[0.9, 0.5], [0.25]])
    hook = DiffusionSamplerHook()
    assert hook._row_labels(runner, 'val',
                            outputs) == ['c\n0.90', 'a\n0.50', 'b\n0.25']
    # no class names anywhere: indices
    assert hook._row_labels(runner, 'test', outputs)[0] == ('class 2\n0.90')
    assert hook._row_labels(runner, 'val', None) is None
    # the trajectory holds the first chunk: so many rows
    runner.model.roi_head.diffusion_sampling = dataclasses.replace(
        runner.model.roi_head.diffusion_sampling, chunk_size=2)
    assert len(hook._row_labels(runner, 'val', outputs)) == 2


def test_no_panel_without_save_trajectory(tmp_path):
    runner = fake_runner(tmp_path)
    hook = DiffusionSamplerHook()
    hook.before_val_epoch(runner)
    data_batch = batch()
    hook.before_val_iter(runner, 0, data_batch)
    out, outputs = predict(runner, 2, data_batch)
    assert 'trajectory' not in out
    hook.after_val_iter(runner, 0, None, outputs)
    assert hook.saved_paths == []
    assert not osp.exists(osp.join(str(tmp_path), 'trajectory'))


def test_model_without_a_diffusion_head_raises(tmp_path):
    fcn = FCNMaskHead(num_convs=0, in_channels=4, num_classes=3)
    runner = fake_runner(tmp_path)
    runner.model.roi_head.mask_head = fcn
    with pytest.raises(TypeError, match='DiffusionMaskHead'):
        DiffusionSamplerHook().before_val_epoch(runner)
    runner.model = nn.Linear(2, 2)  # no roi_head at all
    with pytest.raises(TypeError, match='DiffusionMaskHead'):
        DiffusionSamplerHook().before_test_epoch(runner)
