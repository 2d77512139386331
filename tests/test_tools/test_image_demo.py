"""A trained checkpoint outside training: it carries its K-shot support set,
so ``init_detector``, ``DetInferencer`` and ``tools/image_demo.py`` predict
with no hook and no dataset on disk — the same masks as the Runner's test
loop — and bad input gets one line.

The tiny stage-2 model of conftest.py (``stage2_model``) is used with its
dataset moved away.
"""
import json
import os
import os.path as osp
import pickle
import sys

import numpy as np
import pytest
import torch
from _tool_helpers import (REPO, TINY_CONFIG, describe, run, run_tool,
                           run_tool_here, write_config)

from mmdet_maskdiff.utils.safe_checkpoint import load_checkpoint_file

pytestmark = pytest.mark.slow


def decode(rles):
    from pycocotools import mask as mask_util
    return np.stack([mask_util.decode(r) for r in rles]).astype(bool)


@pytest.fixture(scope='module')
def trained(stage2_model):
    """The tiny stage-2 model with its dataset moved away (restored after
    this module): inference must not need it.

    Returns:
        dict: ``stage2_model``'s keys and ``runner_masks`` (bool (n, H, W):
        the test loop's masks of ``image``).
    """
    with open(stage2_model['runner_pkl'], 'rb') as f:
        first = pickle.load(f)[0]
    masks = decode(first['pred_instances']['masks'])
    assert len(masks) > 0 and masks.any()
    data_root = stage2_model['data_root']
    hidden = data_root + '.hidden'
    os.rename(data_root, hidden)
    try:
        yield dict(stage2_model, runner_masks=masks)
    finally:
        os.rename(hidden, data_root)


INFER = r'''
import sys
import numpy as np
import torch
import mmdet_maskdiff  # noqa: F401
from mmdet.apis import DetInferencer, inference_detector, init_detector
config, checkpoint, image, out = sys.argv[1:]
model = init_detector(config, checkpoint, device='cpu')
a = inference_detector(model, image).pred_instances.masks.numpy()
inferencer = DetInferencer(model=config, weights=checkpoint, device='cpu')
b = inferencer(image, return_datasamples=True, no_save_vis=True)
b = b['predictions'][0].pred_instances.masks.numpy()
np.savez(out, init_detector=a, det_inferencer=b)
'''


def test_init_detector_and_det_inferencer_match_the_test_loop(trained):
    """Fresh process, no dataset on disk, no hook: the same masks as the
    Runner's test loop (support set from the checkpoint)."""
    out = str(trained['base'] / 'apis.npz')
    proc = run([
        sys.executable, '-c', INFER, trained['config'], trained['checkpoint'],
        trained['image'], out
    ], str(trained['base']))
    assert proc.returncode == 0, describe(proc)
    found = np.load(out)
    expected = trained['runner_masks']
    for name in ('init_detector', 'det_inferencer'):
        assert found[name].shape == expected.shape, name
        assert np.array_equal(found[name], expected), name


def demo_args(trained, out_dir) -> list:
    """image_demo.py on the query image with the trained model, every
    detection kept, on the CPU."""
    return [
        trained['image'], trained['config'], '--weights',
        trained['checkpoint'], '--out-dir',
        str(out_dir), '--device', 'cpu', '--pred-score-thr', '0'
    ]


def test_image_demo_writes_picture_json_and_uncertainty(trained, tmp_path):
    out_dir = tmp_path / 'out'
    proc = run_tool(
        'image_demo.py',
        demo_args(trained, out_dir) + [
            '--num-samples', '3', '--steps', '1', '--print-result',
            '--save-trajectory'
        ],
        cwd=str(tmp_path))
    assert proc.returncode == 0, describe(proc)
    for name in ('vis/query.png', 'vis/query_uncertainty.png',
                 'vis/query_trajectory.png', 'preds/query.json'):
        assert (out_dir / name).is_file(), (name, describe(proc))
    pred = json.loads((out_dir / 'preds' / 'query.json').read_text())
    assert set(pred) >= {'labels', 'scores', 'bboxes', 'masks'}
    assert len(pred['masks']) == len(pred['labels']) > 0
    printed = [
        json.loads(line) for line in proc.stdout.splitlines()
        if line.startswith('{')
    ]
    assert len(printed) == 1, describe(proc)
    printed = printed[0]
    assert printed['img_path'] == trained['image']
    assert printed['labels'] == pred['labels']

    import mmcv
    picture = mmcv.imread(str(out_dir / 'vis' / 'query.png'))
    heat = mmcv.imread(str(out_dir / 'vis' / 'query_uncertainty.png'))
    image = mmcv.imread(trained['image'])
    assert picture.shape == heat.shape == image.shape
    assert not np.array_equal(picture, image)  # boxes and masks drawn
    assert not np.array_equal(heat, image)  # the heat map is drawn
    # the sampler hook's panel: two rows per instance (3 detections), one
    # column for the single step and one for the mask
    from mmdet_maskdiff.visualization.trajectory_panel import (HEADER, LABEL,
                                                               RIGHT)
    panel = mmcv.imread(
        str(out_dir / 'vis' / 'query_trajectory.png'), flag='grayscale')
    cell = 16 * 3 + 2  # 16-px masks, scaled 3x to fit 56 px, 2-px gutter
    assert panel.shape == (HEADER + 3 * 2 * cell, LABEL + 2 * cell + RIGHT)


def test_image_demo_cfg_options_apply_and_sampler_flags_win(
        trained, tmp_path):
    """``--cfg-options`` reach the model (one detection kept of the three);
    ``--num-samples`` wins over the sampler key (no uncertainty map)."""
    out_dir = tmp_path / 'out'
    proc = run_tool_here(
        'image_demo.py',
        demo_args(trained, out_dir) + [
            '--steps', '1', '--num-samples', '1', '--cfg-options',
            'model.test_cfg.rcnn.max_per_img=1',
            'model.test_cfg.rcnn.diffusion_sampling.num_samples=3'
        ],
        cwd=str(tmp_path))
    assert proc.returncode == 0, describe(proc)
    pred = json.loads((out_dir / 'preds' / 'query.json').read_text())
    assert len(pred['labels']) == len(pred['masks']) == 1
    assert (out_dir / 'vis' / 'query.png').is_file()
    assert not (out_dir / 'vis' / 'query_uncertainty.png').exists()


def test_image_demo_bad_inputs_one_line_each_others_processed(
        trained, tmp_path):
    (tmp_path / 'empty').mkdir()
    (tmp_path / 'notes.txt').write_text('x')
    broken = tmp_path / 'broken.png'
    broken.write_bytes(b'not a png')
    missing = str(tmp_path / 'missing.jpg')
    out_dir = tmp_path / 'out'
    proc = run_tool_here(
        'image_demo.py', [
            missing,
            str(broken),
            str(tmp_path / 'empty'), trained['image'], trained['config'],
            '--weights', trained['checkpoint'], '--out-dir',
            str(out_dir), '--device', 'cpu', '--no-save-vis'
        ],
        cwd=str(tmp_path))
    assert proc.returncode == 1, describe(proc)
    errors = [
        line for line in proc.stderr.splitlines() if line.startswith('error: ')
    ]
    assert f'error: image {missing} does not exist' in errors
    assert (f'error: image {broken} cannot be read (not an image file?)'
            in errors)
    assert any(
        line.startswith(f'error: folder {tmp_path / "empty"} has no images')
        for line in errors)
    assert errors[-1] == 'error: 3 input(s) failed, 1 image(s) processed'
    assert 'Traceback' not in proc.stderr
    # the good image was still processed; --no-save-vis wrote no picture
    assert (out_dir / 'preds' / 'query.json').is_file()
    assert not (out_dir / 'vis').exists()


def _demo_error(trained, tmp_path, config, checkpoint, *extra):
    # in this process: the command line has its own test above
    proc = run_tool_here(
        'image_demo.py', [
            trained['image'], config, '--weights', checkpoint, '--out-dir',
            str(tmp_path / 'out'), '--device', 'cpu', *extra
        ],
        cwd=str(tmp_path))
    assert proc.returncode == 2, describe(proc)
    assert 'Traceback' not in proc.stderr, describe(proc)
    lines = proc.stderr.strip().splitlines()
    assert lines[-1].startswith('error: '), describe(proc)
    return lines[-1]


def test_checkpoint_of_another_model(trained, tmp_path):
    """A Mask R-CNN checkpoint with the MaskDiff config."""
    from mmengine.config import Config
    from mmengine.registry import init_default_scope
    from mmengine.runner.checkpoint import save_checkpoint

    from mmdet.registry import MODELS
    init_default_scope('mmdet')
    model = MODELS.build(Config.fromfile(TINY_CONFIG).model)
    other = str(tmp_path / 'mask_rcnn.pth')
    save_checkpoint({'state_dict': model.state_dict()}, other)
    line = _demo_error(trained, tmp_path, trained['config'], other)
    assert line.startswith(f'error: checkpoint {other} is not a checkpoint '
                           "of this config's model: of "), line
    assert 'missing (e.g. ' in line and 'unexpected (e.g. ' in line


def test_checkpoint_without_support_set(trained, tmp_path):
    checkpoint = load_checkpoint_file(trained['checkpoint'])
    for key in [k for k in checkpoint['state_dict'] if '.support_set.' in k]:
        del checkpoint['state_dict'][key]
    bare = str(tmp_path / 'no_support.pth')
    torch.save(checkpoint, bare)
    line = _demo_error(trained, tmp_path, trained['config'], bare)
    assert line.startswith(f'error: checkpoint {bare} has no support set; '
                           "test with tools/test.py and the config's "
                           'SupportSetHook'), line
    assert '--support-from-config' in line


def test_checkpoint_of_another_k(trained, tmp_path):
    """The 1-shot checkpoint with a 2-shot config: refused, naming the
    config to use."""
    config = write_config(
        str(tmp_path / 'tiny_coco_2shot.py'), str(tmp_path / 'no_data'),
        **{'model.roi_head.mask_head.num_shots': 2})
    line = _demo_error(trained, tmp_path, config, trained['checkpoint'])
    assert line.startswith(
        f'error: the support set of checkpoint {trained["checkpoint"]} does '
        'not fit this model: it is a 1-shot support set of '), line
    assert 'over 8 classes (type=FewShotCocoDataset, seed=0, ' in line
    assert line.endswith(
        'the config builds a 2-shot model over 8 classes; load it with the '
        'config it was trained with (e.g. configs/maskdiff/coco_1shot.py)')


def test_maskdiff_checkpoint_with_an_fcn_config(trained, tmp_path):
    """The stage-2 checkpoint (a DiffusionMaskHead and its support set) with
    the FCN baseline's config: one line naming both heads."""
    from mmengine.config import Config

    from mmdet_maskdiff.testing.small_scale import cpu_scale_options
    cfg = Config.fromfile(
        osp.join(REPO, 'configs', 'maskdiff', 'coco_1shot_fcn.py'))
    cfg.merge_from_dict(
        cpu_scale_options(cfg, str(tmp_path / 'no_data'), load_from=None))
    config = str(tmp_path / 'tiny_coco_1shot_fcn.py')
    cfg.dump(config)
    line = _demo_error(trained, tmp_path, config, trained['checkpoint'])
    assert line == (
        f'error: the support set of checkpoint {trained["checkpoint"]} does '
        'not fit this model: the checkpoint has a mask head that samples '
        'from K shots (DiffusionMaskHead), the config builds FCNMaskHead; '
        'load it with the config it was trained with (e.g. '
        'configs/maskdiff/coco_1shot.py)')


def test_negative_guidance_weight(trained, tmp_path):
    line = _demo_error(trained, tmp_path, trained['config'],
                       trained['checkpoint'], '--guidance-weight', '-3')
    assert line == (
        'error: model.test_cfg.rcnn.diffusion_sampling.guidance_weight must be a finite '
        'number >= 0 (w < 0 is anti-guidance: the guided (1 + w) eps(c) - w '
        'eps(null) then moves away from the class), got -3.0')
