"""K-shot results over several seeds: mean ± std (and 95% interval).

MaskDiff claims *stability* across the random K-shot samples (TFA seeds
0-9). This tool runs and reports that protocol:

* ``run``: for every seed, stage 1b (TFA fine-tuning), stage 2 (the
  diffusion mask head) and, with ``--with-fcn``, the FCNMaskHead baseline
  and, with ``--with-twin``, the diffusion head's regression twin
  (``<config>_twin.py``), then the test of each mask head, all into
  ``work_dirs/<config>/seed<N>/``
  (``--cfg-options few_shot.seed=N`` on every stage; stage 2 loads its
  seed's stage-1b checkpoint); finished stages and seeds are skipped, an
  interrupted stage resumes; then ``collect``. Stage 1a and TFA's novel-row
  initialisation are made once beforehand (docs/protocols.md)::

      python tools/analysis_tools/fsis_seeds.py run \
          configs/maskdiff/coco_1shot.py --seeds 0-9 --with-fcn \
          --launcher pytorch --gpus 8          # tools/dist_train.sh per stage
      python tools/analysis_tools/fsis_seeds.py run \
          configs/maskdiff/coco_1shot.py --seeds 0-9 --scale-schedule  # 1 GPU

  ``--demo-data ROOT --iters N`` runs the same at CPU scale on the
  synthetic dataset.
* ``collect``: read the metrics of finished runs — the ``results.json`` of
  ``run`` or ``tools/run_demo.py``, or a JSON of test metrics (the flat
  ``coco/...`` dict, e.g. the last line of mmengine's ``<timestamp>.json`` in
  a test work dir) — one file per seed::

      python tools/analysis_tools/fsis_seeds.py collect \
          work_dirs/coco_1shot/seed*/results.json --out work_dirs/seeds_1shot

* ``demo``: run the CPU demo for several seeds (one shared base detector;
  TFA's novel-row initialisation, fine-tuning and the mask heads per seed;
  ``--with-twin`` adds the regression twin), then collect::

      python tools/analysis_tools/fsis_seeds.py demo --seeds 0 1 2 --shots 5

Writes ``<out>.json`` and ``<out>.md`` (per method: split × metric,
mean ± std and mean ± 95% interval 1.96·std/√n). A demo ``results.json``
also gives ``<method>, oracle boxes`` rows (mask head alone: segm AP up to
IoU 0.95, mean mask IoU).

A mask-head variant on the hard set, 3 seeds, sharing one base detector::

    python tools/analysis_tools/fsis_seeds.py demo --difficulty hard \
        --work-dir work_dirs/hard_both --base-work-dir work_dirs/hard_base \
        --maskdiff-options model.roi_head.mask_head.region_source=both
"""
import argparse
import glob
import json
import os
import os.path as osp
import re
import shutil
import subprocess
import sys
from typing import Dict, List, Optional

from mmengine.config import Config, DictAction

from mmdet_maskdiff.demo.pipeline import HEAD_ROWS, DemoSettings, run_pipeline
from mmdet_maskdiff.demo.report import (COLUMNS, SPLITS, aggregate_seeds,
                                        format_seed_table, summarize)
from mmdet_maskdiff.few_shot.sample import apply_few_shot_seed
from mmdet_maskdiff.testing.small_scale import (cpu_scale_options,
                                                to_cfg_options_args)
from mmdet_maskdiff.utils import InputError, run_cli
from mmdet_maskdiff.utils.cli_checks import parse_seeds
from mmdet_maskdiff.utils.config_overrides import (CFG_OPTIONS_HELP,
                                                   merge_cfg_options,
                                                   split_cfg_options)

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


def format_interval_table(stats: dict) -> str:
    """Markdown: one row per split, cells ``mean ± ci95``."""
    columns = [c for c in COLUMNS if any(c in s for s in stats.values())]
    lines = ['| split | ' + ' | '.join(columns) + ' |',
             '|' + ' --- |' * (len(columns) + 1)]
    for split in SPLITS:
        if split in stats:
            cells = [
                f"{stats[split][c]['mean']:.1f} ± {stats[split][c]['ci95']:.1f}"
                if c in stats[split] else '-' for c in columns
            ]
            lines.append(f'| {split} | ' + ' | '.join(cells) + ' |')
    return '\n'.join(lines)


def write(stats_by_method: dict, out: str) -> None:
    os.makedirs(osp.dirname(out) or '.', exist_ok=True)
    with open(out + '.json', 'w') as f:
        json.dump(stats_by_method, f, indent=2)
    lines = []
    for method, stats in stats_by_method.items():
        n = max((c['n'] for s in stats.values() for c in s.values()),
                default=0)
        lines += [f'### {method} ({n} seeds, AP in %, mean ± std)', '',
                  format_seed_table(stats), '',
                  f'{method}, mean ± 95 % interval (1.96·std/√n, as iMTFA '
                  'reports it):', '', format_interval_table(stats), '']
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
        # up front, not after the base and fine-tuning stages
        merge_cfg_options(
            Config.fromfile(DemoSettings(shots=args.shots).configs()
                            ['maskdiff']), args.maskdiff_options,
            '--maskdiff-options')
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
            twin=args.with_twin,
            draw=False,
            base_work_dir=base_root)
        run_pipeline(settings)
        paths.append(osp.join(settings.work_dir, 'results.json'))
    return collect(paths, osp.join(args.work_dir, f'seeds_{args.shots}shot'))


# ---------------------------------------------------------------------------
# run: the per-seed protocol on the COCO configs (stage 1b, stage 2, test)
# ---------------------------------------------------------------------------
TOOLS = osp.dirname(osp.dirname(osp.abspath(__file__)))
#: stage 2's ``load_from``: the stage-1b checkpoint of the run's seed
PER_SEED_CHECKPOINT = re.compile(
    r'work_dirs/(?P<stem>[^/]+)/seed\{seed\}/iter_\d+\.pth$')
#: the method name of each mask-head stage in the collected tables (the
#: demo's row names)
METHODS = dict(
    mask=HEAD_ROWS['maskdiff'], fcn=HEAD_ROWS['fcn'], twin=HEAD_ROWS['twin'])


def protocol_stages(config: str,
                    with_fcn: bool,
                    with_twin: bool = False) -> Dict[str, str]:
    """The config of every stage of one seed: ``det`` (stage 1b, named by
    the stage-2 config's ``load_from``), ``mask`` (``config``) and, with
    ``with_fcn`` / ``with_twin``, ``fcn`` / ``twin`` (``<config>_fcn.py`` /
    ``<config>_twin.py`` beside it)."""
    if not osp.isfile(config):
        raise InputError(f'config file {config} does not exist')
    load_from = Config.fromfile(config).get('load_from') or ''
    match = PER_SEED_CHECKPOINT.search(load_from)
    if not match:
        raise InputError(
            f'{config}: load_from {load_from!r} is not a per-seed stage-1b '
            'checkpoint (work_dirs/<config>/seed{seed}/iter_N.pth); give the '
            'stage-2 config')
    stages = dict(
        det=osp.join(osp.dirname(config), match['stem'] + '.py'),
        mask=config)
    for name, wanted in (('fcn', with_fcn), ('twin', with_twin)):
        if wanted:
            stages[name] = f'{osp.splitext(config)[0]}_{name}.py'
    for name, path in stages.items():
        if not osp.isfile(path):
            raise InputError(f'{config}: its {name} stage config {path} does '
                             'not exist')
    return stages


def _parse_cfg_options(items: List[str]) -> dict:
    if not items:
        return {}
    parser = argparse.ArgumentParser()
    parser.add_argument('--cfg-options', nargs='+', action=DictAction)
    return parser.parse_args(['--cfg-options', *items]).cfg_options or {}


#: images per batch the configs are written for (8 GPUs x 2 images)
CONFIG_BATCH = 16


def schedule_factor(args) -> float:
    """``--scale-schedule``: how many times longer each stage runs, the
    configs' batch over this run's (1 process x 2 images -> 8)."""
    processes = args.gpus if args.launcher == 'pytorch' else 1
    return CONFIG_BATCH / (2 * processes)


def scaled_schedule(cfg: Config, factor: float) -> List[str]:
    """``--cfg-options`` that run ``cfg``'s schedule ``factor`` times longer
    at ``1 / factor`` of its learning rate (the linear scaling rule, Goyal et
    al. 2017, as mmdet's ``--auto-scale-lr``): iterations, lr milestones,
    validation and checkpoint intervals are multiplied, the warm-up kept."""
    items = [
        f'train_cfg.max_iters={round(cfg.train_cfg.max_iters * factor)}',
        f'train_cfg.val_interval={round(cfg.train_cfg.val_interval * factor)}',
        'default_hooks.checkpoint.interval='
        f'{round(cfg.default_hooks.checkpoint.interval * factor)}',
        f'optim_wrapper.optimizer.lr={cfg.optim_wrapper.optimizer.lr / factor}'
    ]
    for i, scheduler in enumerate(cfg.get('param_scheduler') or []):
        if scheduler['type'] == 'MultiStepLR':
            milestones = ','.join(
                str(round(m * factor)) for m in scheduler['milestones'])
            items += [
                f'param_scheduler.{i}.end={round(scheduler["end"] * factor)}',
                f'param_scheduler.{i}.milestones=[{milestones}]'
            ]
    return items


def user_options(args, stages: Dict[str, str]) -> Dict[str, List[str]]:
    """The user's ``--cfg-options`` of each stage config: each option goes
    to the stages whose config has its key (stage 1b has no diffusion
    sampler); one that no stage has is an error, naming the closest key."""
    items = list(args.cfg_options or [])
    configs = {path: Config.fromfile(path) for path in stages.values()}
    split = split_cfg_options(configs, _parse_cfg_options(items))
    return {
        path: [item for item in items if item.split('=', 1)[0] in keys]
        for path, keys in split.items()
    }


def stage_options(config: str, seed: int, args, user: List[str],
                  load_from: Optional[str] = None) -> List[str]:
    """``--cfg-options`` of one stage and seed: the demo sizes (with
    ``--demo-data``) or the scaled schedule (``--scale-schedule``), the
    user's options of this stage (:func:`user_options`), the seed and
    ``load_from``."""
    items = []
    if args.demo_data:
        items += to_cfg_options_args(
            cpu_scale_options(Config.fromfile(config), args.demo_data,
                              max_iters=args.iters))
    elif args.scale_schedule:
        items += scaled_schedule(Config.fromfile(config),
                                 schedule_factor(args))
    items += user
    items.append(f'few_shot.seed={seed}')
    if load_from is not None:
        items.append(f'load_from={load_from}')
    return items


def resolve(config: str, options: List[str]) -> Config:
    """``config`` as tools/train.py resolves it (options, default work dir,
    ``few_shot``)."""
    cfg = Config.fromfile(config)
    merge_cfg_options(cfg, _parse_cfg_options(options))
    if not cfg.get('work_dir'):
        cfg.work_dir = osp.join('./work_dirs',
                                osp.splitext(osp.basename(config))[0])
    apply_few_shot_seed(cfg)
    return cfg


def _command(args, tool: str, config: str, positional: List[str],
             rest: List[str]) -> List[str]:
    """``tools/<tool>.py`` or, with ``--launcher pytorch``,
    ``tools/dist_<tool>.sh CONFIG [CHECKPOINT] GPUS ...``."""
    if args.launcher == 'none':
        return [sys.executable, osp.join(TOOLS, f'{tool}.py'), config,
                *positional, *rest]
    return ['bash', osp.join(TOOLS, f'dist_{tool}.sh'), config, *positional,
            str(args.gpus), *rest]


def _call(cmd: List[str], what: str) -> None:
    print(f'[fsis_seeds] {what}: {" ".join(cmd)}', flush=True)
    env = dict(os.environ)
    env.setdefault('PYTHON', sys.executable)  # for tools/dist_*.sh
    status = subprocess.call(cmd, env=env)
    if status != 0:
        raise InputError(f'{what} failed (exit status {status})')


def train_stage(args, config: str, options: List[str], what: str) -> str:
    """Train one stage of one seed unless its final checkpoint exists
    (resuming from its last checkpoint when there is one).

    Returns:
        str: the final checkpoint.
    """
    cfg = resolve(config, options)
    final = osp.join(cfg.work_dir, f'iter_{cfg.train_cfg.max_iters}.pth')
    if osp.isfile(final):
        print(f'[fsis_seeds] {what}: done ({final})', flush=True)
        return final
    resume = (['--resume'] if osp.isfile(
        osp.join(cfg.work_dir, 'last_checkpoint')) else [])
    _call(_command(args, 'train', config, [], resume + ['--cfg-options'] +
                   options), what)
    return final


def test_stage(args, config: str, checkpoint: str, options: List[str],
               what: str) -> dict:
    """Test one stage of one seed unless ``<work dir>/test_metrics.json``
    exists; returns its metrics (the flat ``coco/...`` dict)."""
    work_dir = resolve(config, options).work_dir
    out = osp.join(work_dir, 'test_metrics.json')
    if not osp.isfile(out):
        before = set(glob.glob(osp.join(work_dir, '*', '*.json')))
        _call(_command(args, 'test', config, [checkpoint],
                       ['--work-dir', work_dir, '--cfg-options'] + options),
              what)
        new = sorted(set(glob.glob(osp.join(work_dir, '*', '*.json'))) -
                     before)
        if not new:
            raise InputError(f'{what}: no metrics json under {work_dir}')
        shutil.copy(new[-1], out)
    else:
        print(f'[fsis_seeds] {what}: done ({out})', flush=True)
    with open(out) as f:
        return json.loads(f.read().strip().splitlines()[-1])


def run_seed(args, stages: Dict[str, str], seed: int,
             user: Dict[str, List[str]]) -> str:
    """Stage 1b, stage 2 (and the FCN baseline, the regression twin) of one
    seed, then their test; returns the seed's ``results.json`` (read by
    :func:`collect`)."""
    mask_dir = resolve(stages['mask'],
                       stage_options(stages['mask'], seed, args,
                                     user[stages['mask']])).work_dir
    results = osp.join(mask_dir, 'results.json')
    wanted = {METHODS[name] for name in stages if name in METHODS}
    if osp.isfile(results):
        with open(results) as f:
            done = set(json.load(f).get('summary', {}))
        if wanted <= done:  # a later --with-fcn/-twin runs the missing head
            print(f'[fsis_seeds] seed {seed}: finished, skipped ({results})',
                  flush=True)
            return results
    det = train_stage(args, stages['det'],
                      stage_options(stages['det'], seed, args,
                                    user[stages['det']]),
                      f'seed {seed} stage 1b')
    metrics = {}
    for name in METHODS:
        if name not in stages:
            continue
        options = stage_options(stages[name], seed, args, user[stages[name]],
                                load_from=det)
        what = f'seed {seed} {METHODS[name]}'
        ckpt = train_stage(args, stages[name], options, what)
        metrics[METHODS[name]] = test_stage(args, stages[name], ckpt,
                                            options, f'{what} test')
    with open(results, 'w') as f:
        json.dump(dict(seed=seed, stages=stages, summary=summarize(metrics),
                       metrics=metrics), f, indent=2)
    return results


def run_seeds(args) -> dict:
    """``run``: every seed of the protocol, then :func:`collect`."""
    stages = protocol_stages(args.config, args.with_fcn, args.with_twin)
    seeds = parse_seeds(args.seeds)
    if args.demo_data and not osp.isdir(args.demo_data):
        raise InputError(f'--demo-data {args.demo_data} does not exist')
    if args.demo_data and not args.iters:
        raise InputError('--demo-data needs --iters (the COCO schedules are '
                         '16k-240k iterations)')
    user = user_options(args, stages)
    paths = [run_seed(args, stages, seed, user) for seed in seeds]
    root = osp.dirname(osp.dirname(paths[0]))
    return collect(paths, args.out or osp.join(root, 'seeds'))


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
        '--with-twin', action='store_true',
        help='also the regression twin of the diffusion head '
        '(coco_<K>shot_twin.py)')
    p_demo.add_argument(
        '--maskdiff-options',
        nargs='+',
        action=DictAction,
        help='--cfg-options of the MaskDiff stage (key=value, checked as '
        '--cfg-options), e.g. model.roi_head.mask_head.region_source=both')
    p_run = sub.add_parser(
        'run', help='train and test every seed of a stage-2 config, then '
        'collect (work_dirs/<config>/seed<N>/)')
    p_run.add_argument('config', help='stage-2 config, e.g. '
                       'configs/maskdiff/coco_1shot.py')
    p_run.add_argument('--seeds', nargs='+', default=['0-9'],
                       help='seeds: N, N-M or a list (default: 0-9)')
    p_run.add_argument('--with-fcn', action='store_true',
                       help='also the FCNMaskHead baseline (<config>_fcn.py)')
    p_run.add_argument('--with-twin', action='store_true',
                       help='also the regression twin of the diffusion head '
                       '(<config>_twin.py)')
    p_run.add_argument('--launcher', choices=['none', 'pytorch'],
                       default='none',
                       help='pytorch: tools/dist_train.sh / dist_test.sh')
    p_run.add_argument('--gpus', type=int, default=8,
                       help='processes per stage with --launcher pytorch')
    p_run.add_argument('--cfg-options', nargs='+', default=[],
                       help=f'{CFG_OPTIONS_HELP}. Each goes to the stages '
                       'whose config has its key')
    p_run.add_argument(
        '--scale-schedule', action='store_true',
        help='scale every stage to this run\'s batch (processes x 2 '
        'images) from the configs\' 16: iterations, milestones and '
        'intervals x 16/batch, lr x batch/16 (1 GPU: x 8 and / 8)')
    p_run.add_argument('--demo-data', help='run at CPU scale on the '
                       'synthetic dataset at this root (mmdet_maskdiff.'
                       'testing.small_scale)')
    p_run.add_argument('--iters', type=int, default=None,
                       help='with --demo-data: iterations of every stage')
    p_run.add_argument('--out', help='collected tables (default: '
                       'work_dirs/<config>/seeds)')
    args = parser.parse_args()
    if args.command == 'run':
        run_cli(lambda: run_seeds(args))
        return
    if args.command == 'collect':
        missing = [p for p in args.paths if not osp.isfile(p)]
        if missing:
            parser.error(f'no such file: {", ".join(missing)}')
        collect(args.paths, args.out)
    else:
        run_cli(lambda: run_demo_seeds(args))


if __name__ == '__main__':
    main()
