"""Check a few-shot training config on its annotations, before GPU days.

Prints, for the config's training set as its data loader samples it (no
image is read):

* the share of sampled instances that are novel (stage 2's data mix) and
  the novel instances per class;
* for a MaskDiff stage-2 config: how many training RoIs would get a shot
  from their own image (must be 0) and how many get null shots because
  their class has no other instance;
* the K-shot sample (seed, K) of the training set, the support set and the
  detector checkpoint that ``load_from`` names (read from its meta when the
  file exists);
* the validation and test sets and their metrics' annotation files, loaded
  with the data rules of a run (a repeated image record, an undeclared
  category, too many invalid test annotations: one line, exit 2).

Example (COCO, before training stage 2)::

    python tools/analysis_tools/check_fsis_data.py \\
        configs/maskdiff/coco_1shot.py --data-root data/coco --batches 1500

Exit status 1 when a shot comes from the RoI's own image or the K-shot
samples differ; 2 for bad input.
"""
import argparse
import sys

from mmengine.config import DictAction

import mmdet_maskdiff  # noqa: F401  (registers components)
from mmdet_maskdiff.few_shot.data_check import (check_training_data,
                                                format_report, point_data_root)
from mmdet_maskdiff.utils import InputError, load_config, run_cli
from mmdet_maskdiff.utils.cli_checks import check_at_least
from mmdet_maskdiff.utils.config_overrides import (CFG_OPTIONS_HELP,
                                                   merge_cfg_options)


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description='Check the data mix, training shots and K-shot sample of '
        'a few-shot config (annotations only)')
    parser.add_argument('config', help='training config file')
    parser.add_argument(
        '--data-root',
        help='move every FewShotCocoDataset / FewShotCocoMetric here')
    parser.add_argument(
        '--batches', type=int, default=1500,
        help='training batches to sample (default: 1500)')
    parser.add_argument(
        '--seed', type=int, default=0, help='seed of the sampler draws')
    parser.add_argument(
        '--cfg-options', nargs='+', action=DictAction,
        help=CFG_OPTIONS_HELP)
    return parser.parse_args()


def main() -> None:
    args = parse_args()
    check_at_least(args, 1, 'batches')
    cfg = load_config(args.config)
    merge_cfg_options(cfg, args.cfg_options)
    if args.data_root:
        point_data_root(cfg, args.data_root)
    try:
        report = check_training_data(cfg, args.batches, args.seed)
    except (FileNotFoundError, ValueError) as exc:
        raise InputError(str(exc).splitlines()[0])
    print(format_report(report))
    support = report.get('support') or {}
    if support.get('own_image_shots') or not report['sample']['consistent']:
        sys.exit(1)


if __name__ == '__main__':
    run_cli(main)
