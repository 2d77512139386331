"""The COCO-shaped check: the real stage-2 configs on 3,000 annotation-only
images with COCO's 80 names, ids and proportions (issue: novel classes
starved in stage 2, self-support, one K-shot sample)."""
import json
import os.path as osp
import shutil

import pytest
import torch
from mmengine.config import Config
from mmengine.registry import init_default_scope

import mmdet_maskdiff  # noqa: F401
from mmdet_maskdiff.few_shot.data_check import (check_training_data,
                                                format_report, point_data_root)
from _tool_helpers import describe, run_tool, run_tool_here


def _config(name, root, **options):
    init_default_scope('mmdet')
    cfg = Config.fromfile(f'configs/maskdiff/{name}')
    point_data_root(cfg, root)
    cfg.merge_from_dict(options)
    return cfg


@pytest.mark.parametrize('name', ['coco_1shot.py', 'coco_1shot_fcn.py'])
def test_stage2_samples_novel_instances_at_the_configured_share(
        coco_shaped_data, name):
    cfg = _config(name, coco_shaped_data)
    share = cfg.train_dataloader.sampler.few_shot_share
    report = check_training_data(cfg, num_batches=1500)
    assert report['batch_size'] == 2
    assert report['novel_share'] >= 0.05
    assert report['novel_share'] == pytest.approx(share, abs=0.03)
    # every one of the 20 novel classes is sampled, often
    per_class = report['instances']['per_novel_class']
    assert len(per_class) == 20 and min(per_class.values()) >= 20


def test_uniform_concat_sampling_starves_the_novel_classes(coco_shaped_data):
    """What the check guards against: the old uniform sampler."""
    cfg = _config(
        'coco_1shot.py', coco_shaped_data,
        **{'train_dataloader.sampler': dict(_delete_=True, type='InfiniteSampler',
                                            shuffle=True)})
    report = check_training_data(cfg, num_batches=1500)
    assert report['novel_share'] < 0.01


def test_no_training_roi_gets_a_shot_from_its_own_image(coco_shaped_data):
    report = check_training_data(
        _config('coco_1shot.py', coco_shaped_data), num_batches=600)
    support = report['support']
    assert support['rois'] > 1000
    assert support['own_image_shots'] == 0
    # K = 1: a novel class's only instance is the query itself -> null shots
    assert support['null_shots']['novel'] > 0
    assert support['null_shots']['base'] == 0
    assert report['sample']['consistent']


def test_k_shot_sample_of_data_support_and_checkpoint_agree(
        coco_shaped_data, tmp_path):
    ckpt = str(tmp_path / 'stage1b.pth')

    def stage1b_trained_on(seed):
        text = ('train_dataloader = dict(dataset=dict(type='
                "'FewShotCocoDataset', few_shot_root='few_shot/', "
                f'seed={seed}, num_novel_shots=1))')
        torch.save(dict(meta=dict(cfg=text), state_dict={}), ckpt)

    stage1b_trained_on(0)
    cfg = _config('coco_1shot.py', coco_shaped_data, load_from=ckpt)
    report = check_training_data(cfg, num_batches=2)
    assert report['sample']['checkpoint']['sample']['seed'] == 0
    assert report['sample']['consistent']

    stage1b_trained_on(1)
    report = check_training_data(cfg, num_batches=2)
    assert not report['sample']['consistent']
    assert 'MISMATCH' in format_report(report)

    # a support set given to the hook by hand, of another K (another seed
    # is refused earlier, by few_shot: test_few_shot_runner.py)
    cfg = _config('coco_1shot.py', coco_shaped_data)
    cfg.custom_hooks[0].dataset = dict(
        cfg.train_dataloader.dataset.datasets[1], num_base_shots=5,
        num_novel_shots=5)
    assert not check_training_data(cfg, num_batches=2)['sample']['consistent']


def test_check_tool_prints_the_figures_and_fails_on_a_mismatch(
        coco_shaped_data):
    config = osp.join('configs', 'maskdiff', 'coco_1shot.py')
    # the figures themselves are checked above, in-process, on 600-1500
    # batches; here they are printed by the tool's command line
    proc = run_tool('analysis_tools/check_fsis_data.py',
                    [config, '--data-root', coco_shaped_data, '--batches',
                     '50'], cwd='.')
    assert proc.returncode == 0, describe(proc)
    assert 'novel share' in proc.stdout
    assert "shots from the RoI's own image: 0" in proc.stdout
    # the seed set by hand in one place: one line naming the key
    proc = run_tool_here('analysis_tools/check_fsis_data.py', [
        config, '--data-root', coco_shaped_data, '--batches', '5',
        '--cfg-options', 'train_dataloader.dataset.datasets.1.seed=1'
    ], cwd='.')
    assert proc.returncode == 2, describe(proc)
    assert proc.stderr.strip() == (
        'error: train_dataloader.dataset.datasets.1.seed=1 but '
        'few_shot.seed=0: the config names the K-shot sample twice (a seed '
        'written into a dataset by hand, or the config the Runner saved '
        "beside a checkpoint, which has its run's seed resolved into every "
        'dataset); take the config from configs/, whose datasets leave seed '
        'unset, and choose the sample only with --cfg-options '
        'few_shot.seed=N')
    proc = run_tool_here('analysis_tools/check_fsis_data.py',
                         [config, '--data-root', coco_shaped_data,
                          '--batches', '0'], cwd='.')
    assert proc.returncode == 2
    assert proc.stderr.strip() == 'error: --batches must be >= 1, got 0'


def test_check_loads_the_evaluation_data_with_the_data_rules(
        coco_shaped_data, tmp_path):
    """The validation / test set and the metric's file are loaded as a run
    loads them (no image read): figures from the json, and a file that
    breaks a data rule stops the tool with one line."""
    val_ann = osp.join(coco_shaped_data, 'annotations',
                       'instances_val2017.json')
    with open(val_ann) as f:
        val = json.load(f)
    report = check_training_data(
        _config('coco_1shot.py', coco_shaped_data), num_batches=2)
    assert report['evaluation'] == [
        dict(key='val_dataloader', ann_file=val_ann,
             images=len(val['images']), instances=len(val['annotations']),
             metric_files=[val_ann])
    ]
    assert (f"val_dataloader: {len(val['images'])} images, "
            f"{len(val['annotations'])} instances in {val_ann}; metric files "
            f'checked: {val_ann}') in format_report(report)

    # a copy of the set whose validation file repeats an image record
    root = str(tmp_path / 'coco_shaped')
    shutil.copytree(coco_shaped_data, root)
    bad = osp.join(root, 'annotations', 'instances_val2017.json')
    val['images'].append(dict(val['images'][0]))
    with open(bad, 'w') as f:
        json.dump(val, f)
    proc = run_tool_here('analysis_tools/check_fsis_data.py', [
        osp.join('configs', 'maskdiff', 'coco_1shot.py'), '--data-root',
        root, '--batches', '2'
    ], cwd='.')
    assert proc.returncode == 2, describe(proc)
    first = val['images'][0]['id']
    assert proc.stderr.strip() == (
        f'error: image id {first} appears twice in {bad} (images[0] and '
        f"images[{len(val['images']) - 1}]): every image record needs its "
        'own id, else its annotations and predictions are merged or scored '
        'twice')
