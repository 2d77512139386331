"""Configs of the K-shot sample tests: the real configs as
``tools/train.py`` reads them, on the synthetic data, and a checkpoint that
names the sample it was trained on."""
import argparse
import os.path as osp

from mmengine.config import Config, DictAction
from mmengine.registry import init_default_scope

from mmdet_maskdiff.testing.small_scale import cpu_scale_options

REPO = osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__))))
STAGE_1B = 'configs/maskdiff/maskdiff_r101_fpn_8xb2-tfa_coco-1shot-det.py'
STAGE_2 = 'configs/maskdiff/coco_1shot.py'


def cli_config(path, *options, work_dir=None):
    """``path`` as tools/train.py reads it: ``--cfg-options`` through
    mmengine's DictAction, then the default work dir."""
    parser = argparse.ArgumentParser()
    parser.add_argument('--cfg-options', nargs='+', action=DictAction)
    args = parser.parse_args(['--cfg-options', *options] if options else [])
    cfg = Config.fromfile(osp.join(REPO, path))
    if args.cfg_options:
        cfg.merge_from_dict(args.cfg_options)
    cfg.work_dir = work_dir or osp.join(
        './work_dirs', osp.splitext(osp.basename(path))[0])
    return cfg


def synthetic_cfg(path, paths, seed, work_dir, **options):
    """``path`` with ``few_shot.seed=seed`` at CPU scale on the synthetic
    data (K-shot files for seeds 0 and 1)."""
    init_default_scope('mmdet')
    cfg = cli_config(path, f'few_shot.seed={seed}', work_dir=work_dir)
    cfg.merge_from_dict(
        cpu_scale_options(cfg, paths['root'], max_iters=2, load_from=None,
                          batch_size=2))
    cfg.merge_from_dict(options)
    return cfg


def checkpoint_trained_on(seed, shots):
    """A checkpoint whose stored training config names the K-shot sample
    ``seed``, K = ``shots``."""
    text = ('train_dataloader = dict(dataset=dict(type='
            "'FewShotCocoDataset', few_shot_root='few_shot/', "
            f'seed={seed}, num_novel_shots={shots}))')
    return dict(meta=dict(cfg=text), state_dict={})
