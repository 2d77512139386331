"""K-shot results over several seeds: mean ± std (and 95% interval).

MaskDiff claims *stability* across the random K-shot samples (TFA seeds
0-9). This tool reports it two ways:

* ``collect``: read the metrics of finished runs — the ``results.json`` of
  ``tools/run_demo.py`` or a JSON of test metrics (the flat ``coco/...`` dict,
  e.g. the last line of mmengine's ``<timestamp>.json`` in a test work dir,
  or ``--out`` of your own script) — one file per seed::

      python tools/analysis_tools/fsis_seeds.py collect \
          work_dirs/coco_1shot_seed*/metrics.json --out work_dirs/seeds_1shot

* ``demo``: run the CPU demo for several seeds (one shared base detector;
  TFA's novel-row initialisation, fine-tuning and both mask heads per seed),
  then collect::

      python tools/analysis_tools/fsis_seeds.py demo --seeds 0 1 2 --shots 5

Writes ``<out>.json`` and ``<out>.md`` (per method: split × metric,
mean ± std, plus the 95% interval 1.96·std/√n in the JSON). A demo
``results.json`` also gives ``<method>, oracle boxes`` rows (mask head alone:
segm AP up to IoU 0.95, mean mask IoU).

A mask-head variant on the hard set, 3 seeds, sharing one base detector::

    python tools/analysis_tools/fsis_seeds.py demo --difficulty hard \
        --work-dir work_dirs/hard_both --base-work-dir work_dirs/hard_base \
        --maskdiff-options model.roi_head.mask_head.region_source=both

For COCO, make stage 1b's starting checkpoint once (one file serves every
seed, as in TFA: ``tools/model_converters/tfa_novel_init.py``, README), train
each seed with ``--cfg-options train_dataloader.dataset.seed=N`` (stage 1b) and
``train_dataloader.dataset.datasets.1.seed=N custom_hooks.0.dataset.seed=N``
(stage 2), test, then ``collect``.
"""
import argparse
import json
import os
import os.path as osp
from typing import Dict

from mmengine.config import DictAction

from mmdet_maskdiff.demo.pipeline import DemoSettings, run_pipeline
from mmdet_maskdiff.demo.report import (aggregate_seeds, format_seed_table,
                                        summarize)

DEFAULTS = DemoSettings()


def load_run(path: str) -> Dict[str, dict]:
    """method -> split -> column -> AP from one seed's file."""
    with open(path) as f:
        text = f.read().strip()
    try:
        data = json.loads(text)
    except json.JSONDecodeError:  # mmengine's line-per-record log json
        data = json.loads(text.splitlines()[-1])
    if 'summary' in data:  # results.json of the demo
        runs = dict(data['summary'])
        for method, summary in (data.get('oracle_summary') or {}).items():
            runs[f'{method}, oracle boxes'] = summary
        return runs
    if any(k.endswith('/segm_mAP') or k.endswith('/bbox_mAP') for k in data):
        return summarize({'model': data})
    raise ValueError(f'{path}: no FewShotCocoMetric results (keys like '
                     "'coco/novel/segm_mAP') found")


def write(stats_by_method: dict, out: str) -> None:
    os.makedirs(osp.dirname(out) or '.', exist_ok=True)
    with open(out + '.json', 'w') as f:
        json.dump(stats_by_method, f, indent=2)
    lines = []
    for method, stats in stats_by_method.items():
        n = max((c['n'] for s in stats.values() for c in s.values()),
                default=0)
        lines += [f'### {method} ({n} seeds, AP in %, mean ± std)', '',
                  format_seed_table(stats), '']
    with open(out + '.md', 'w') as f:
        f.write('\n'.join(lines))
    print('\n'.join(lines))
    print(f'wrote {out}.json and {out}.md')


def collect(paths, out: str) -> dict:
    runs = {i: load_run(p) for i, p in enumerate(paths)}
    methods = sorted({m for run in runs.values() for m in run})
    stats = {
        m: aggregate_seeds({i: run[m] for i, run in runs.items() if m in run})
        for m in methods
    }
    write(stats, out)
    return stats


def run_demo_seeds(args) -> dict:
    paths = []
    base_root = args.base_work_dir or osp.join(args.work_dir, 'shared')
    suffix = '_hard' if args.difficulty == 'hard' else ''
    options = DemoSettings().options
    if args.maskdiff_options:
        options['maskdiff'] = dict(args.maskdiff_options)
    for seed in args.seeds:
        settings = DemoSettings(
            work_dir=osp.join(args.work_dir, f'seed{seed}'),
            data_root=args.data_root or DEFAULTS.data_root + suffix,
            difficulty=args.difficulty,
            options=options,
            shots=args.shots,
            seed=seed,
            base_iters=args.base_iters,
            ft_iters=args.ft_iters,
            mask_iters=args.mask_iters,
            untrained=False,
            draw=False,
            base_work_dir=base_root)
        run_pipeline(settings)
        paths.append(osp.join(settings.work_dir, 'results.json'))
    return collect(paths, osp.join(args.work_dir, f'seeds_{args.shots}shot'))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest='command', required=True)
    p_collect = sub.add_parser('collect', help='aggregate finished runs')
    p_collect.add_argument('paths', nargs='+', help='one JSON per seed')
    p_collect.add_argument('--out', default='work_dirs/seeds')
    p_demo = sub.add_parser('demo', help='run the CPU demo over seeds')
    p_demo.add_argument('--seeds', type=int, nargs='+', default=[0, 1, 2])
    p_demo.add_argument('--shots', type=int, default=5)
    p_demo.add_argument('--work-dir', default='work_dirs/demo_seeds')
    p_demo.add_argument('--base-iters', type=int, default=DEFAULTS.base_iters)
    p_demo.add_argument('--ft-iters', type=int, default=DEFAULTS.ft_iters)
    p_demo.add_argument('--mask-iters', type=int, default=DEFAULTS.mask_iters)
    p_demo.add_argument(
        '--difficulty', choices=['easy', 'hard'], default='easy',
        help='the embedded dataset (docs/data.md)')
    p_demo.add_argument(
        '--data-root',
        help=f'default: {DEFAULTS.data_root} (+ _hard for --difficulty hard)')
    p_demo.add_argument(
        '--base-work-dir',
        help='reuse stage 1a from here (default: <work-dir>/shared), so '
        'variants run in other --work-dir share one base detector')
    p_demo.add_argument(
        '--maskdiff-options',
        nargs='+',
        action=DictAction,
        help='--cfg-options of the MaskDiff stage (key=value), e.g. '
        'model.roi_head.mask_head.region_source=both')
    args = parser.parse_args()
    if args.command == 'collect':
        missing = [p for p in args.paths if not osp.isfile(p)]
        if missing:
            parser.error(f'no such file: {", ".join(missing)}')
        collect(args.paths, args.out)
    else:
        run_demo_seeds(args)


if __name__ == '__main__':
    main()
