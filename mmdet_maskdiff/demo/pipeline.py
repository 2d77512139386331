"""All MaskDiff stages at CPU scale on the embedded dataset.

The stages run the COCO config files through mmengine's Runner — the same
registries, hooks and code paths as ``tools/train.py`` / ``tools/test.py`` —
with the overrides of :func:`~mmdet_maskdiff.testing.cpu_scale_options`.
The configs are the package's own, found by
:func:`~mmdet_maskdiff.utils.config_paths.package_config_path` in a source
checkout's ``configs/`` or an installed copy's ``.mim/configs``, so the demo
runs from either.
"""
import glob
import json
import os.path as osp
import shutil
import time
from dataclasses import asdict, dataclass, field
from datetime import date
from typing import Dict, List, Optional

from mmengine.config import Config
from mmengine.runner import Runner

from mmdet_maskdiff.datasets.synthetic_fsis import make_synthetic_fsis
from mmdet_maskdiff.evaluation.mask_quality import (apply_mask_quality,
                                                    format_mask_quality_table,
                                                    summarize_mask_quality)
from mmdet_maskdiff.few_shot.novel_head_init import (default_output_path,
                                                     tfa_novel_init)
from mmdet_maskdiff.few_shot.sample import apply_few_shot_seed
from mmdet_maskdiff.testing.small_scale import cpu_scale_options
from mmdet_maskdiff.utils.config_overrides import merge_cfg_options
from mmdet_maskdiff.utils.config_paths import (display_config_path,
                                               package_config_path)
from mmdet_maskdiff.utils.config_text import FormattedOnceConfig
from .mask_head_load import expect_missing_mask_head
from .report import format_table, summarize
from .steps import DemoSteps, plan_steps


@dataclass
class DemoSettings:
    """What the demo runs.

    Attributes:
        work_dir (str): Output root; one sub-directory per stage.
        data_root (str): Where the synthetic dataset is (re)generated.
        difficulty (str): Which synthetic set: ``'easy'`` or ``'hard'``
            (``make_synthetic_fsis``); use one ``data_root`` per difficulty.
        config_dir (str): The COCO configs. Defaults to the package's
            ``configs/maskdiff`` (:func:`package_config_path`).
        shots (int): K of the K-shot set.
        seed (int): Seed of the K-shot sample (TFA seed convention).
        base_iters / ft_iters / mask_iters (int): Iterations of stage 1a,
            stage 1b and stage 2 (every mask head).
        steps (int, optional): DDIM steps at test time; None keeps the
            config's.
        untrained (bool): Also test the untrained diffusion head (a floor).
        twin (bool): Also train and test the regression twin of the
            diffusion head (``coco_{K}shot_twin.py``: its network and
            inputs, one forward pass trained on the mask). Off by default:
            its stage 2 takes about as long as the diffusion head's
            (docs/defaults.md, "The regression twin").
        oracle (bool): Also test the trained mask heads with oracle boxes
            (ground-truth boxes and labels, score 1: the mask head alone).
        draw (bool): Save prediction PNGs of the test set.
        force (bool): Retrain stages whose checkpoint exists.
        base_work_dir (str, optional): Reuse stage 1a from there (seeds
            share one base detector).
        lr (dict): Learning rate per stage name; stages not listed keep
            their config's. The COCO schedules are tuned for 16k-240k
            iterations at batch 16, the demo runs a few hundred at batch 8.
        options (dict): Extra ``--cfg-options``-style overrides per stage
            name (``base_det``, ``ft_det``, ``maskdiff``, ``fcn``,
            ``twin``). By
            default the TFA stage also fine-tunes the RPN and box head: the
            RPN of the 6-class toy base set learns that the novel shapes are
            background (docs/defaults.md, "Demo-only deviations").
    """
    work_dir: str = 'work_dirs/demo'
    data_root: str = 'data/demo_fsis'
    difficulty: str = 'easy'
    config_dir: str = field(
        default_factory=lambda: package_config_path('maskdiff'))
    shots: int = 5
    seed: int = 0
    base_iters: int = 500
    ft_iters: int = 300
    mask_iters: int = 350
    steps: Optional[int] = None
    untrained: bool = True
    twin: bool = False
    oracle: bool = True
    draw: bool = True
    force: bool = False
    base_work_dir: Optional[str] = None
    lr: Dict[str, float] = field(
        default_factory=lambda: dict(
            ft_det=0.02, maskdiff=1e-3, fcn=1e-3, twin=1e-3))
    options: Dict[str, dict] = field(
        default_factory=lambda: dict(
            ft_det={'model.frozen_modules': ('backbone', 'neck')}))
    timings: Dict[str, float] = field(default_factory=dict)

    def configs(self) -> Dict[str, str]:
        """The COCO config file of every stage for K = ``shots`` (``twin``
        only when it runs)."""
        name = 'maskdiff_r101_fpn_8xb2-{}.py'
        configs = dict(
            base_det=osp.join(self.config_dir,
                              name.format('110k_coco-base-det')),
            ft_det=osp.join(self.config_dir,
                            name.format(f'tfa_coco-{self.shots}shot-det')),
            maskdiff=osp.join(self.config_dir, f'coco_{self.shots}shot.py'),
            fcn=osp.join(self.config_dir, f'coco_{self.shots}shot_fcn.py'))
        if self.twin:
            configs['twin'] = osp.join(self.config_dir,
                                       f'coco_{self.shots}shot_twin.py')
        return configs


#: the row name of each trained mask-head stage in the demo's tables
HEAD_ROWS = dict(
    maskdiff='MaskDiff', fcn='FCNMaskHead', twin='regression twin')

#: the row name of the untrained diffusion head (stage-1b weights only)
UNTRAINED_ROW = 'untrained diffusion head'


def seed_options(cfg: Config, seed: int) -> dict:
    """The one key that names the K-shot sample ``seed`` (``few_shot.seed``,
    :mod:`mmdet_maskdiff.few_shot.sample`); none for stage 1a."""
    return {'few_shot.seed': seed} if cfg.get('few_shot') else {}


def build_cfg(name: str, settings: DemoSettings, work_dir: str,
              max_iters: int, load_from: Optional[str]) -> Config:
    """Stage ``name``'s COCO config at CPU scale on the synthetic data."""
    cfg = Config.fromfile(settings.configs()[name])
    cfg.merge_from_dict(
        cpu_scale_options(
            cfg,
            settings.data_root,
            max_iters=max_iters,
            lr=settings.lr.get(name),
            load_from=load_from))
    cfg.merge_from_dict(seed_options(cfg, settings.seed))
    apply_few_shot_seed(cfg)  # before work_dir: the demo keeps its layout
    merge_cfg_options(cfg, settings.options.get(name, {}),
                      f'DemoSettings.options[{name!r}]')
    mask_head = cfg.model.get('roi_head', {}).get('mask_head') or {}
    if settings.steps is not None and \
            mask_head.get('type') == 'DiffusionMaskHead':
        cfg.merge_from_dict(
            {'model.test_cfg.rcnn.diffusion_sampling.steps': settings.steps})
    cfg.work_dir = work_dir
    cfg.launcher = 'none'
    cfg.randomness = dict(seed=0)
    return cfg


def _runner(cfg: Config, run_name: str, stage_1b_into: str = '') -> Runner:
    """mmengine's Runner for one run of the demo; it applied the K-shot
    sample itself and keeps its own work-dir layout (no ``seed<N>/``).

    The demo builds its runners in one process. mmengine keeps the
    visualizer, the message hub and the logger by name, and mmdet's
    runtime config names the visualizer ``'visualizer'``: every later
    runner would reuse the first one's, writing its scalars and config into
    the first stage's ``vis_data/``. Each run gets names of its own
    (``run_name`` and the run's timestamp).

    ``stage_1b_into`` (a run that loads the stage-1b detector into a model
    with a mask head) names that head in the one line that replaces
    mmengine's list of its weights (:mod:`.mask_head_load`).
    """
    cfg.experiment_name = f'demo_{run_name}'
    if isinstance(cfg.get('visualizer'), dict):
        cfg.visualizer.pop('name', None)  # -> the experiment name
    runner = Runner.from_cfg(FormattedOnceConfig.of(cfg))
    if stage_1b_into:
        expect_missing_mask_head(runner.model, stage_1b_into)
    return runner


def train_stage(name: str,
                settings: DemoSettings,
                max_iters: int,
                load_from: Optional[str],
                work_root: Optional[str] = None) -> str:
    """Train one stage unless its final checkpoint exists.

    Returns:
        str: The stage's final checkpoint.
    """
    path = settings.configs()[name]
    work_dir = osp.join(work_root or settings.work_dir, name)
    ckpt = osp.join(work_dir, f'iter_{max_iters}.pth')
    if osp.isfile(ckpt) and not settings.force:
        print(f'[demo] {name}: reusing {ckpt}')
        return ckpt
    print(f'[demo] {name}: training {max_iters} iterations with '
          f'{display_config_path(path)}')
    cfg = build_cfg(name, settings, work_dir, max_iters, load_from)
    cfg.val_cfg = cfg.val_dataloader = cfg.val_evaluator = None
    start = time.time()
    head = HEAD_ROWS.get(name, '')
    _runner(cfg, f'train_{name}', head and f'{head} before training').train()
    settings.timings[f'train_{name}'] = round(time.time() - start, 1)
    return ckpt


def novel_init_stage(settings: DemoSettings, base_ckpt: str) -> str:
    """TFA's novel-row initialisation of stage 1a's box predictor for the
    stage-1b config (what ``tools/model_converters/tfa_novel_init.py``
    does), written to ``<work_dir>/ft_det/``.

    Returns:
        str: The checkpoint stage 1b starts from.
    """
    cfg = build_cfg('ft_det', settings, '', settings.ft_iters, None)
    out = osp.join(settings.work_dir, 'ft_det',
                   osp.basename(default_output_path(base_ckpt)))
    out, notes = tfa_novel_init(
        base_ckpt, cfg, out=out, config_name=settings.configs()['ft_det'])
    for note in notes:
        print(f'[demo] novel init: {note}')
    return out


def test_stage(name: str, config_name: str, settings: DemoSettings,
               ckpt: str) -> dict:
    """Evaluate ``ckpt`` on the synthetic test set.

    Weights missing from ``ckpt`` keep their initialisation (mmengine loads
    non-strictly): that is how the untrained head is tested.
    """
    cfg = build_cfg(config_name, settings, osp.join(settings.work_dir, name),
                    1, ckpt)
    if settings.draw and name != 'untrained':
        cfg.default_hooks.visualization = dict(
            type='DetVisualizationHook', draw=True, test_out_dir='predictions')
    start = time.time()
    untrained = UNTRAINED_ROW if name == 'untrained' else ''
    metrics = _runner(cfg, f'test_{name}', untrained).test()
    settings.timings[f'test_{name}'] = round(time.time() - start, 1)
    return dict(metrics)


def oracle_test_stage(config_name: str, settings: DemoSettings,
                      ckpt: str) -> dict:
    """Mask quality of ``ckpt`` with oracle boxes on the synthetic test set.

    Returns:
        dict: :func:`summarize_mask_quality` of the run (split -> column ->
        percent).
    """
    name = f'oracle_{config_name}'
    cfg = build_cfg(config_name, settings, osp.join(settings.work_dir, name),
                    1, ckpt)
    apply_mask_quality(cfg)
    start = time.time()
    metrics = _runner(cfg, f'test_{name}').test()
    settings.timings[f'test_{name}'] = round(time.time() - start, 1)
    return summarize_mask_quality(metrics)


def mask_head_stages(settings: DemoSettings) -> List[str]:
    """The stage-2 runs of the demo: ``maskdiff``, ``fcn`` and, when asked,
    ``twin``."""
    return [name for name in HEAD_ROWS if name in settings.configs()]


def train_all_stages(settings: DemoSettings,
                     steps: DemoSteps) -> Dict[str, str]:
    """Stage 1a, TFA's novel-row initialisation, stage 1b, then stage 2 with
    every mask head (:func:`mask_head_stages`), each under its header.

    Returns:
        dict: Final checkpoint of ``ft_det`` and of every mask-head stage.
    """
    steps.announce('base_det')
    base = train_stage('base_det', settings, settings.base_iters, None,
                       settings.base_work_dir)
    steps.announce('novel_init')
    novel_init = novel_init_stage(settings, base)
    steps.announce('ft_det')
    ft = train_stage('ft_det', settings, settings.ft_iters, novel_init)
    checkpoints = dict(ft_det=ft)
    for name in mask_head_stages(settings):
        steps.announce(f'train_{name}')
        checkpoints[name] = train_stage(name, settings, settings.mask_iters,
                                        ft)
    return checkpoints


def evaluate_heads(settings: DemoSettings, checkpoints: Dict[str, str],
                   steps: DemoSteps) -> Dict[str, dict]:
    """End-to-end metrics of the trained mask heads (and, if asked, of the
    untrained diffusion head on the stage-1b detector), by row name."""
    results = {}
    for name in mask_head_stages(settings):
        steps.announce(f'test_{name}')
        results[HEAD_ROWS[name]] = test_stage(name, name, settings,
                                              checkpoints[name])
    if settings.untrained:
        steps.announce('test_untrained')
        results[UNTRAINED_ROW] = test_stage('untrained', 'maskdiff', settings,
                                            checkpoints['ft_det'])
    return results


def oracle_evaluate_heads(settings: DemoSettings, checkpoints: Dict[str, str],
                          steps: DemoSteps) -> Dict[str, dict]:
    """Oracle-box mask quality of the trained heads ({} when
    ``settings.oracle`` is off)."""
    oracle = {}
    if settings.oracle:
        for name in mask_head_stages(settings):
            steps.announce(f'oracle_{name}')
            oracle[HEAD_ROWS[name]] = oracle_test_stage(
                name, settings, checkpoints[name])
    return oracle


def print_tables(summary: dict, oracle: dict) -> None:
    """The end-to-end table, then the oracle-box table if there is one."""
    print("end to end (the detector's boxes):")
    print(format_table(summary))
    if oracle:
        print('oracle boxes (ground-truth boxes and labels, score 1: the mask '
              'head alone; segm AP and mean mask IoU):')
        print(format_mask_quality_table(oracle))


def copy_last_trajectory(settings: DemoSettings) -> None:
    """Copy the newest denoising-trajectory PNG of the MaskDiff test to
    ``<work_dir>/trajectory.png`` (if the test drew one)."""
    trajectories = sorted(
        glob.glob(
            osp.join(settings.work_dir, 'maskdiff', '*', 'trajectory',
                     '*.png')))
    if trajectories:
        shutil.copy(trajectories[-1],
                    osp.join(settings.work_dir, 'trajectory.png'))


def write_report(settings: DemoSettings, summary: dict, oracle: dict,
                 results: dict) -> dict:
    """Write ``<work_dir>/results.json``: settings, configs (as
    ``configs/...``), both tables, all metrics and timings.

    Returns:
        dict: What was written.
    """
    report = dict(
        date=date.today().isoformat(),
        settings={
            k: v
            for k, v in asdict(settings).items() if k != 'timings'
        },
        configs={
            k: display_config_path(v)
            for k, v in settings.configs().items()
        },
        summary=summary,
        oracle_summary=oracle,
        metrics=results,
        seconds=settings.timings)
    out = osp.join(settings.work_dir, 'results.json')
    with open(out, 'w') as f:
        json.dump(report, f, indent=2)
    print(f'[demo] wrote {out}, prediction PNGs under '
          f'{settings.work_dir}/<stage>/<timestamp>/predictions/ and '
          f'{settings.work_dir}/trajectory.png '
          f'({settings.timings["total"]:.0f} s)')
    return report


def run_pipeline(settings: DemoSettings) -> dict:
    """Generate the data, train every stage, test, write ``results.json``
    and print the tables (last), each step under a numbered header
    (:func:`.steps.plan_steps`).

    Returns:
        dict: The report written to ``<work_dir>/results.json``.
    """
    start = time.time()
    steps = plan_steps(
        settings,
        {name: HEAD_ROWS[name]
         for name in mask_head_stages(settings)}, UNTRAINED_ROW)
    steps.announce('data')
    make_synthetic_fsis(settings.data_root, difficulty=settings.difficulty)
    checkpoints = train_all_stages(settings, steps)
    results = evaluate_heads(settings, checkpoints, steps)
    summary = summarize(results)
    oracle = oracle_evaluate_heads(settings, checkpoints, steps)
    copy_last_trajectory(settings)
    settings.timings['total'] = round(time.time() - start, 1)
    steps.announce('results')
    report = write_report(settings, summary, oracle, results)
    print_tables(summary, oracle)  # last: what the run is for
    return report
