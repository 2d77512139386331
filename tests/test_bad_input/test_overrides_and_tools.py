"""Overrides that cannot be mistyped, and smaller bad inputs of the tools
(issue 20, items 2 and 4): each stops with exit status 2 and one line naming
the key or file, or, for a damaged image among others, one line naming it.

Tools run in this process (``run_tool_here``): each stops before anything
heavy is built, and their command lines are tested in tests/test_tools. The
image-demo cases that need a trained checkpoint (an FCN
config with a MaskDiff checkpoint, a negative ``--guidance-weight``) are in
tests/test_tools/test_image_demo.py, beside its ``trained`` fixture.
"""
import os.path as osp
import sys

import cv2
import numpy as np
import pytest
from mmengine.config import Config

sys.path.insert(0, osp.join(osp.dirname(osp.dirname(__file__)), 'test_tools'))
from _tool_helpers import REPO, describe, run_tool_here  # noqa: E402

from mmdet_maskdiff.diffusion import parse_sampler_settings  # noqa: E402
from mmdet_maskdiff.few_shot.sample import apply_few_shot_seed  # noqa: E402
from mmdet_maskdiff.testing import cpu_scale_options  # noqa: E402
from mmdet_maskdiff.utils import InputError, merge_cfg_options  # noqa: E402
from mmdet_maskdiff.utils.config_overrides import (  # noqa: E402
    split_cfg_options, unknown_key_error)

STAGE_2 = osp.join(REPO, 'configs', 'maskdiff', 'coco_1shot.py')
STAGE_1B = osp.join(REPO, 'configs', 'maskdiff',
                    'maskdiff_r101_fpn_8xb2-tfa_coco-1shot-det.py')
FCN = osp.join(REPO, 'configs', 'maskdiff', 'coco_1shot_fcn.py')
SAMPLER = 'model.test_cfg.rcnn.diffusion_sampling'


def one_error_line(proc) -> str:
    """The run's only stderr line (exit status 2, no traceback)."""
    assert proc.returncode == 2, describe(proc)
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1, describe(proc)
    return lines[0]


def unknown(key: str, missing: str, closest: str) -> str:
    return (f'error: --cfg-options {key}: the config has no key {missing} '
            f'(did you mean {closest}?); a new key on purpose: +{key}=...')


# ------------------------------------------------------ unknown keys, tools
# (tool, arguments before --cfg-options, key, missing path, closest key)
MISSPELT = {
    'few_shots': ('train.py', [STAGE_2], 'few_shots.seed=1', 'few_shots',
                  'few_shot.seed'),
    'samplng': ('test.py', [STAGE_2, 'CKPT'],
                'model.test_cfg.rcnn.diffusion_samplng.steps=8',
                'model.test_cfg.rcnn.diffusion_samplng', f'{SAMPLER}.steps'),
    'mask_thr_binery':
    ('test.py', [STAGE_2, 'CKPT'], 'model.test_cfg.rcnn.mask_thr_binery=0.9',
     'model.test_cfg.rcnn.mask_thr_binery',
     'model.test_cfg.rcnn.mask_thr_binary'),
    'test_dataloder': ('test.py', [STAGE_2, 'CKPT'],
                       'test_dataloder.batch_size=1', 'test_dataloder',
                       'test_dataloader.batch_size'),
    'mask_quality': ('analysis_tools/mask_quality.py', [FCN, 'CKPT'],
                     'few_shot.sed=1', 'few_shot.sed', 'few_shot.seed'),
    'check_fsis_data': ('analysis_tools/check_fsis_data.py', [STAGE_2],
                        'train_dataloader.sampler.few_shot_shar=0.1',
                        'train_dataloader.sampler.few_shot_shar',
                        'train_dataloader.sampler.few_shot_share'),
    'image_demo': ('image_demo.py', ['query.jpg', STAGE_2, '--weights', 'CKPT'],
                   'model.test_cfg.rcnn.max_per_im=1',
                   'model.test_cfg.rcnn.max_per_im',
                   'model.test_cfg.rcnn.max_per_img'),
    'tfa_novel_init': ('model_converters/tfa_novel_init.py',
                       [STAGE_1B, 'CKPT'],
                       'model.roi_head.bbox_head.num_clases=3',
                       'model.roi_head.bbox_head.num_clases',
                       'model.roi_head.bbox_head.num_classes'),
}


@pytest.mark.parametrize('case', sorted(MISSPELT))
def test_a_misspelt_key_is_refused_naming_the_closest(case, tmp_path):
    tool, args, option, missing, closest = MISSPELT[case]
    checkpoint = tmp_path / 'any.pth'
    checkpoint.write_bytes(b'')  # the keys are checked before it is read
    args = [str(checkpoint) if a == 'CKPT' else a for a in args]
    if tool in ('train.py', 'test.py'):
        args += ['--work-dir', str(tmp_path)]
    proc = run_tool_here(tool, args + ['--cfg-options', option],
                         str(tmp_path))
    key = option.split('=')[0]
    assert one_error_line(proc) == unknown(key, missing, closest)


def test_benchmark_and_fsis_seeds_refuse_a_key_no_config_has(tmp_path):
    """They give each option to the configs that have its key: a key that
    none has is refused (fsis_seeds before any stage runs; benchmark in the
    child process that measures a config, run here as the parent runs it,
    whose one-line error the parent repeats)."""
    proc = run_tool_here('analysis_tools/fsis_seeds.py', [
        'run', STAGE_2, '--seeds', '0', '--with-fcn', '--cfg-options',
        'few_shots.seed=1'
    ], str(tmp_path))
    assert one_error_line(proc) == unknown('few_shots.seed', 'few_shots',
                                           'few_shot.seed')
    proc = run_tool_here('analysis_tools/benchmark.py', [
        STAGE_2, '--work-dir',
        str(tmp_path), '--child-config', FCN, '--child-out',
        str(tmp_path / 'row.json'), '--cfg-options',
        'model.test_cfg.rcnn.diffusion_samplng.steps=8'
    ], str(tmp_path))
    assert one_error_line(proc) == unknown(
        'model.test_cfg.rcnn.diffusion_samplng.steps',
        'model.test_cfg.rcnn.diffusion_samplng', f'{SAMPLER}.steps')


def test_fsis_seeds_demo_checks_maskdiff_options_up_front(tmp_path):
    """Before the base detector and the fine-tuning train (minutes)."""
    proc = run_tool_here('analysis_tools/fsis_seeds.py', [
        'demo', '--seeds', '0', '--work-dir',
        str(tmp_path), '--maskdiff-options',
        'model.roi_head.mask_head.region_sorce=both'
    ], str(tmp_path))
    key = 'model.roi_head.mask_head.region_sorce'
    assert one_error_line(proc) == (
        f'error: --maskdiff-options {key}: the config has no key {key} (did '
        'you mean model.roi_head.mask_head.region_source?); a new key on '
        f'purpose: +{key}=...')
    assert not (tmp_path / 'shared').exists()


def test_keys_of_some_configs_go_to_those_only():
    configs = {path: Config.fromfile(path) for path in (STAGE_1B, STAGE_2)}
    split = split_cfg_options(
        configs, {
            f'{SAMPLER}.steps': 8,
            'custom_hooks.0.crop_size': 32,
            'few_shot.seed': 3,
            '+extra': 1
        })
    assert split[STAGE_2] == {
        f'{SAMPLER}.steps': 8,
        'custom_hooks.0.crop_size': 32,
        'few_shot.seed': 3,
        '+extra': 1
    }
    # stage 1b has no custom hooks (its model config has the sampler of the
    # shared _base_ model, unused without a diffusion head)
    assert split[STAGE_1B] == {
        f'{SAMPLER}.steps': 8,
        'few_shot.seed': 3,
        '+extra': 1
    }


# --------------------------------------------- what passes, what is refused
@pytest.fixture(scope='module')
def stage_2():
    return Config.fromfile(STAGE_2)


def merged(cfg: Config, options: dict) -> Config:
    cfg = cfg.copy()
    merge_cfg_options(cfg, options)
    return cfg


def test_real_keys_pass_and_merge(stage_2):
    cfg = merged(
        stage_2, {
            'few_shot.seed': 3,  # the keys mmengine's own tools take
            f'{SAMPLER}.steps': 8,
            f'{SAMPLER}.fast.enabled': True,
            'custom_hooks.0.crop_size': 32,  # a list item by index
            'model.backbone.depth': 50,  # inherited from a _base_ file
            'param_scheduler.0.end': 10,
            'work_dir': 'w',  # read by the Runner, absent from the file
            'randomness.deterministic': True,
            'test_dataloader.pin_memory': True,  # a DataLoader argument
            'few_shot.check_checkpoint': False,  # read with a default
            # a constructor argument of the dict's type, left at its default
            'model.roi_head.mask_head.loss_weight': 2.0,
            'default_hooks.checkpoint.save_best': 'auto',
            '+my_note.sub': 1,  # new on purpose
        })
    assert cfg.few_shot == dict(seed=3, check_checkpoint=False)
    assert cfg.model.test_cfg.rcnn.diffusion_sampling.steps == 8
    assert cfg.model.test_cfg.rcnn.diffusion_sampling.fast.enabled is True
    assert cfg.custom_hooks[0].crop_size == 32
    assert cfg.model.backbone.depth == 50
    assert cfg.work_dir == 'w' and cfg.randomness.deterministic is True
    assert cfg.test_dataloader.pin_memory is True
    assert cfg.model.roi_head.mask_head.loss_weight == 2.0
    assert cfg.my_note == dict(sub=1)


def test_sampler_keys_a_config_leaves_out_pass(tmp_path):
    """A config whose sampler dict names one key, or none: the other
    sampler keys, and those of ``fast``, exist with their defaults."""
    path = tmp_path / 'partial_sampler.py'
    path.write_text(f'_base_ = [{STAGE_2!r}]\n'
                    'model = dict(test_cfg=dict(rcnn=dict('
                    'diffusion_sampling=dict(_delete_=True, steps=1))))\n')
    cfg = Config.fromfile(str(path))
    assert dict(cfg.model.test_cfg.rcnn.diffusion_sampling) == dict(steps=1)
    cfg = merged(cfg, {
        f'{SAMPLER}.num_samples': 4,
        f'{SAMPLER}.fast.compile': False
    })
    assert cfg.model.test_cfg.rcnn.diffusion_sampling == dict(
        steps=1, num_samples=4, fast=dict(compile=False))
    # no sampler dict at all: the defaults, and the keys pass
    del cfg.model.test_cfg.rcnn['diffusion_sampling']
    assert merged(cfg, {f'{SAMPLER}.steps': 4}).model.test_cfg.rcnn == dict(
        cfg.model.test_cfg.rcnn, diffusion_sampling=dict(steps=4))
    assert unknown_key_error(cfg, f'{SAMPLER}.fast.compiel') == (
        f'--cfg-options {SAMPLER}.fast.compiel: the config has no key '
        f'{SAMPLER}.fast.compiel (did you mean {SAMPLER}.fast.compile?); a '
        f'new key on purpose: +{SAMPLER}.fast.compiel=...')


@pytest.mark.parametrize('key, message', [
    ('custom_hooks.5.crop_size', 'custom_hooks has 2 items (indices 0-1)'),
    ('custom_hooks.support.crop_size',
     "custom_hooks is a list, so 'support' must be an item index (2 items)"),
    (f'{SAMPLER}.fast.compile.0', f'{SAMPLER}.fast.compile is a '
     "bool, not a dict, so it has no key '0'; set "
     f'{SAMPLER}.fast.compile itself'),
    ('model.roi_head.mask_roi_extractor.out_channels',
     'model.roi_head.mask_roi_extractor is None, not a dict, so it has no '
     "key 'out_channels'; set model.roi_head.mask_roi_extractor itself"),
    ('+load_from.x', "load_from is a str, not a dict, so it has no key 'x'; "
     'set load_from itself'),
    ('model.roi_head.mask_head.init_cfg.type',
     'the config leaves model.roi_head.mask_head.init_cfg out (the '
     "code's default applies), so 'type' cannot be checked; add it on "
     'purpose: +model.roi_head.mask_head.init_cfg.type=...'),
])
def test_keys_below_lists_and_values(stage_2, key, message):
    assert unknown_key_error(stage_2, key) == f'--cfg-options {key}: {message}'
    with pytest.raises(InputError):
        merged(stage_2, {key: 1})


def test_no_close_key_lists_what_is_there(stage_2):
    assert unknown_key_error(stage_2, 'model.test_cfg.rcnn.zzz') == (
        '--cfg-options model.test_cfg.rcnn.zzz: the config has no key '
        'model.test_cfg.rcnn.zzz (model.test_cfg.rcnn has: '
        'diffusion_sampling, mask_thr_binary, max_per_img, nms, score_thr); '
        'a new key on purpose: '
        '+model.test_cfg.rcnn.zzz=...')


def test_a_misspelt_type_argument_is_refused(stage_2):
    """Below a dict with a ``type`` only the constructor's arguments pass."""
    assert unknown_key_error(
        stage_2, 'model.roi_head.mask_head.max_train_roi') == (
            '--cfg-options model.roi_head.mask_head.max_train_roi: the config '
            'has no key model.roi_head.mask_head.max_train_roi (did you mean '
            'model.roi_head.mask_head.max_train_rois?); a new key on purpose: '
            '+model.roi_head.mask_head.max_train_roi=...')


def test_a_typo_at_two_levels_is_corrected_at_both(stage_2):
    assert unknown_key_error(stage_2, 'few_shots.sed') == (
        '--cfg-options few_shots.sed: the config has no key few_shots (did '
        'you mean few_shot.seed?); a new key on purpose: +few_shots.sed=...')


# ------------------------------------------- variables of the config files
def variable(key: str, variable: str, instead: str) -> str:
    return (f'--cfg-options {key}: {variable} is a variable of the config '
            'file, already used when the file was read (changing it does not '
            f're-interpolate the keys built from it); {instead}; to set it '
            f'anyway: +{key}=...')


def test_mmengine_keeps_a_variable_as_a_key_that_nothing_reads(stage_2):
    """Why a variable is refused: mmengine 0.10.7 keeps ``data_root`` as a
    key of the parsed config, and merging a new value leaves the dataset
    keys built from it as they were."""
    assert stage_2.data_root == 'data/coco/'
    cfg = stage_2.copy()
    cfg.merge_from_dict({'data_root': '/x/'})
    assert cfg.data_root == '/x/'
    assert cfg.test_dataloader.dataset.data_root == 'data/coco/'


@pytest.mark.parametrize('key, name, instead', [
    ('data_root', 'data_root', 'set the keys that took its value instead: '
     'train_dataloader.dataset.datasets.0.data_root, '
     'train_dataloader.dataset.datasets.1.data_root, '
     'val_dataloader.dataset.data_root, test_dataloader.dataset.data_root, '
     'val_evaluator.ann_file, test_evaluator.ann_file'),
    # a key inside a variable: the keys that took that key's value
    ('test_dataset.ann_file', 'test_dataset',
     'set the keys that took its value instead: '
     'val_dataloader.dataset.ann_file, test_dataloader.dataset.ann_file, '
     'val_evaluator.ann_file, test_evaluator.ann_file'),
    ('support_set_hook.crop_size', 'support_set_hook',
     'set the keys that took its value instead: custom_hooks.0.crop_size'),
    # a number: the keys of its name among those equal to it
    ('mask_size', 'mask_size', 'set the keys that took its value instead: '
     'model.roi_head.mask_head.mask_size, model.train_cfg.rcnn.mask_size'),
    ('vis_backends', 'vis_backends',
     'set the keys that took its value instead: visualizer.vis_backends'),
    ('backend_args', 'backend_args',
     'set the keys that took its value instead (its value, None, is too '
     'common to find them)'),
    ('lite_model', 'lite_model', 'no key the run reads holds its value (it '
     'has no effect)'),
])
def test_a_variable_of_the_config_file_is_refused(stage_2, key, name,
                                                  instead):
    assert unknown_key_error(stage_2, key) == variable(key, name, instead)
    with pytest.raises(InputError):
        merged(stage_2, {key: 1})


def test_a_variable_set_on_purpose_merges(stage_2):
    assert merged(stage_2, {'+data_root': '/x/'}).data_root == '/x/'


@pytest.mark.parametrize('tool', ['train.py', 'test.py', 'image_demo.py'])
def test_tools_refuse_a_variable_naming_the_keys_to_set(tool, tmp_path):
    checkpoint = str(tmp_path / 'any.pth')
    open(checkpoint, 'wb').close()  # the keys are checked before it is read
    args = {
        'train.py': [STAGE_2, '--work-dir', str(tmp_path)],
        'test.py': [STAGE_2, checkpoint, '--work-dir', str(tmp_path)],
        'image_demo.py': ['query.jpg', STAGE_2, '--weights', checkpoint],
    }[tool]
    proc = run_tool_here(tool, args + ['--cfg-options', 'few_shot_root=/x'],
                         str(tmp_path))
    assert one_error_line(proc) == 'error: ' + variable(
        'few_shot_root', 'few_shot_root',
        'set the keys that took its value instead: '
        'train_dataloader.dataset.datasets.1.few_shot_root')


def test_cpu_scale_options_set_no_variable(stage_2, synthetic_data):
    """They once set the datasets of variables too (``base_train_dataset``),
    which changed nothing and now would be refused."""
    options = cpu_scale_options(stage_2, synthetic_data['root'])
    assert 'test_dataloader.dataset.ann_file' in options
    assert not [k for k in options if k.split('.')[0] in ('base_train_dataset',
                                                          'test_dataset')]
    cfg = merged(stage_2, options)
    assert cfg.test_dataloader.dataset.ann_file == synthetic_data['test_ann']


# --------------------------------------------------------- guidance weight
def test_a_negative_guidance_weight_is_refused():
    with pytest.raises(ValueError) as info:
        parse_sampler_settings(dict(guidance_weight=-3), 100)
    assert str(info.value) == (
        f'{SAMPLER}.guidance_weight must be a finite number >= 0 (w < 0 is '
        'anti-guidance: the guided (1 + w) eps(c) - w eps(null) then moves '
        'away from the class), got -3')
    assert parse_sampler_settings(dict(guidance_weight=0), 100) \
        .guidance_weight == 0.0


# ----------------------------------------------------------- the split tool
@pytest.mark.parametrize('seeds, message', [
    (['5-2'], '--seeds 5-2: the range is reversed; write 2-5'),
    (['0', '5-2'], '--seeds 5-2: the range is reversed; write 2-5'),
    (['0', 'x'], '--seeds x: not an integer >= 0 or a range N-M such as 0-9'),
])
def test_split_tool_refuses_a_bad_seed_range(tmp_path, seeds, message):
    proc = run_tool_here('dataset_converters/prepare_few_shot_splits.py', [
        str(tmp_path / 'instances.json'),
        str(tmp_path / 'out'), '--seeds', *seeds
    ], str(tmp_path))
    assert one_error_line(proc) == f'error: {message}'
    assert not (tmp_path / 'out').exists()


# ------------------------------------- few_shot.seed on a run's saved config
def test_seed_on_the_config_saved_beside_a_checkpoint(tmp_path):
    """The Runner saves its config with the seed applied (every K-shot
    dataset names it): ``few_shot.seed=1`` there is refused, saying to take
    the config from configs/."""
    cfg = Config.fromfile(STAGE_2)
    cfg.work_dir = str(tmp_path / 'coco_1shot')
    apply_few_shot_seed(cfg)  # what FewShotRunner does before it saves
    saved = str(tmp_path / 'seed0_coco_1shot.py')
    cfg.dump(saved)
    checkpoint = tmp_path / 'iter_1.pth'
    checkpoint.write_bytes(b'')
    proc = run_tool_here('test.py', [
        saved,
        str(checkpoint), '--work-dir',
        str(tmp_path), '--cfg-options', 'few_shot.seed=1'
    ], str(tmp_path))
    assert one_error_line(proc) == (
        'error: train_dataloader.dataset.datasets.1.seed=0 but '
        'few_shot.seed=1: the config names the K-shot sample twice (a seed '
        'written into a dataset by hand, or the config the Runner saved '
        "beside a checkpoint, which has its run's seed resolved into every "
        'dataset); take the config from configs/, whose datasets leave seed '
        'unset, and choose the sample only with --cfg-options '
        'few_shot.seed=N')


# --------------------------------------------------------- image_demo.py
def _demo(tmp_path, inputs):
    checkpoint = tmp_path / 'any.pth'
    checkpoint.write_bytes(b'')  # not read: the inputs fail first
    return run_tool_here('image_demo.py', [
        *inputs, STAGE_2, '--weights',
        str(checkpoint), '--out-dir',
        str(tmp_path / 'out'), '--device', 'cpu'
    ], str(tmp_path))


def _jpeg(path) -> bytes:
    """A 256 x 256 JPEG of blurred noise at ``path``; returns its bytes."""
    noise = np.random.default_rng(0).integers(
        0, 255, (256, 256, 3), dtype=np.uint8)
    data = cv2.imencode('.jpg', cv2.GaussianBlur(noise, (9, 9), 0))[1]
    path.write_bytes(data.tobytes())
    return data.tobytes()


def test_image_demo_refuses_two_inputs_with_one_output_name(tmp_path):
    for folder in ('a', 'b'):
        (tmp_path / folder).mkdir()
        _jpeg(tmp_path / folder / 'x.jpg')
    first, second = str(tmp_path / 'a' / 'x.jpg'), str(tmp_path / 'b')
    proc = _demo(tmp_path, [first, second])
    assert one_error_line(proc) == (
        f'error: images {first} and {osp.join(second, "x.jpg")} would write '
        'the same outputs (preds/x.json, vis/...): outputs are named by the '
        'file name, so rename one or run them separately')
    assert not (tmp_path / 'out').exists()


def test_image_demo_names_a_damaged_jpeg(tmp_path):
    """A byte of the entropy-coded data set to 0xFF (a marker where none
    belongs): libjpeg decodes the image partly and prints a line without
    the file's name; the tool names the file, skips it, exit status 1."""
    data = bytearray(_jpeg(tmp_path / 'whole.jpg'))
    data[1000] = 0xFF
    damaged = tmp_path / 'damaged.jpg'
    damaged.write_bytes(bytes(data))
    proc = _demo(tmp_path, [str(damaged)])
    assert proc.returncode == 1, describe(proc)
    assert proc.stderr.strip().splitlines() == [
        f'error: image {damaged} is damaged (libjpeg: Corrupt JPEG data: '
        'premature end of data segment): a truncated or corrupted file; '
        'replace it', 'error: 1 input(s) failed, 0 image(s) processed'
    ]
