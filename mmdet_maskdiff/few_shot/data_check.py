"""Check a few-shot training setup on its annotations alone (no pixels).

Three properties decide whether novel-class numbers mean anything, and none of
them shows at demo size:

* **the stage-2 data mix** — the share of sampled instances that are novel,
  through the config's own dataset, sampler and batch sampler (the objects
  mmengine's ``Runner.build_dataloader`` builds);
* **no self-support** — no training RoI gets a shot from its own image
  (hence never its own object), checked with the support pool that
  ``SupportSetHook`` would build and ``SupportBank.sample``, the function the
  RoI head calls;
* **one K-shot sample** — the training set's K-shot members, the support set
  and the detector checkpoint that is loaded use the same seed and K.

Every data set it builds applies the data rules from their one home (the
file rules of :mod:`mmdet_maskdiff.datasets.coco_records`, the annotation
rule of :mod:`mmdet_maskdiff.datasets.instance_validity`), and
:func:`check_evaluation_annotations` builds the validation and test sets and
their metrics the same way, so a test file that would be scored wrongly is
found before training, not at the first validation.

``tools/analysis_tools/check_fsis_data.py`` prints these for any config and
data root; the tests run them on a COCO-shaped annotation set
(:mod:`mmdet_maskdiff.datasets.coco_shaped`) and the real configs.
"""
import contextlib
import copy
import io
import itertools
import os.path as osp
from collections import Counter
from typing import Any, Dict, List, Optional

import torch
from mmengine.config import Config
from mmengine.registry import init_default_scope
from mmengine.runner import Runner

from mmdet.registry import DATASETS, METRICS
from mmdet_maskdiff.datasets.k_shot_members import k_shot_members
from mmdet_maskdiff.datasets.support_bank import support_bank_metadata
from mmdet_maskdiff.utils.config_tree import iter_config_dicts
from .checkpoint_sample import checkpoint_file_sample
from .sample import (apply_few_shot_seed, support_set_config,
                     support_set_hook_config)


def point_data_root(cfg: Config, data_root: str) -> None:
    """Move every ``FewShotCocoDataset`` and ``FewShotCocoMetric`` of ``cfg``
    to ``data_root`` (in place; relative paths inside are kept)."""
    data_root = osp.join(data_root, '')
    for _, node in iter_config_dicts(cfg._cfg_dict):
        kind = node.get('type')
        if kind == 'FewShotCocoDataset':
            node['data_root'] = data_root
        elif kind == 'FewShotCocoMetric' and node.get('ann_file'):
            ann = node['ann_file']
            node['ann_file'] = osp.join(data_root, 'annotations',
                                        osp.basename(ann))


def _sample_of(dataset: Any) -> Dict[str, Any]:
    return dict(
        seed=dataset.seed,
        num_novel_shots=dataset.num_novel_shots,
        num_base_shots=dataset.num_base_shots,
        few_shot_root=dataset.few_shot_root)


def check_sample_consistency(cfg: Config, train_dataset: Any) -> dict:
    """The K-shot samples of the training set, the support set and the
    loaded checkpoint, and whether they agree.

    Returns:
        dict: ``train`` (list of samples), ``support`` (sample or None),
        ``checkpoint`` (``load_from`` and its stored sample or None) and
        ``consistent`` (bool: every seed and novel K present agree).
    """
    train = [_sample_of(m) for m in k_shot_members(train_dataset)]
    hook = support_set_hook_config(cfg)
    support = None
    if hook is not None:
        support = _sample_of(
            DATASETS.build(
                dict(support_set_config(cfg, hook.get('dataset')),
                     lazy_init=True)))
    load_from = cfg.get('load_from')
    stored = checkpoint_file_sample(load_from) if load_from else None
    samples = train + [s for s in (support, stored) if s is not None]
    seeds = {s['seed'] for s in samples}
    novel = {s['num_novel_shots'] for s in samples if s['num_novel_shots']}
    return dict(
        train=train,
        support=support,
        checkpoint=dict(load_from=load_from, sample=stored),
        consistent=len(seeds) <= 1 and len(novel) <= 1)


#: the evaluation data of a run: (data loader key, evaluator key)
EVALUATION_KEYS = (('val_dataloader', 'val_evaluator'),
                   ('test_dataloader', 'test_evaluator'))


def check_evaluation_annotations(cfg: Config) -> List[dict]:
    """Build the validation and test sets and their ``FewShotCocoMetric`` s
    as a run does, without reading an image, so that their load-time data
    rules run (repeated image records, undeclared categories, a test set
    with more than ``max_invalid_fraction`` invalid annotations or none of
    its classes, ...).

    Returns:
        list[dict]: one entry per distinct loader: ``key``, ``ann_file``,
        ``images``, ``instances`` and ``metric_files`` (the checked
        ``ann_file`` of its metrics).

    Raises:
        ValueError / FileNotFoundError: as the dataset or metric, one line.
    """
    init_default_scope(cfg.get('default_scope', 'mmdet'))
    checked, seen = [], []
    for loader_key, evaluator_key in EVALUATION_KEYS:
        loader = cfg.get(loader_key)
        if not loader or loader.get('dataset') is None:
            continue
        evaluator = cfg.get(evaluator_key) or []
        pair = (loader['dataset'], evaluator)
        if pair in seen:  # test = val in most configs
            continue
        seen.append(pair)
        dataset_cfg = copy.deepcopy(loader['dataset'])
        for _, node in iter_config_dicts(dataset_cfg):
            if node.get('type') == 'FewShotCocoDataset':
                node['check_image_files'] = False  # annotations only
        dataset = DATASETS.build(dataset_cfg)
        metric_files = []
        for metric_cfg in (evaluator if isinstance(evaluator, list) else
                           [evaluator]):
            if metric_cfg.get('type') != 'FewShotCocoMetric':
                continue
            with contextlib.redirect_stdout(io.StringIO()):  # pycocotools
                metric = METRICS.build(copy.deepcopy(metric_cfg))
            metric.dataset_meta = dataset.metainfo
            metric_files.append(metric_cfg.get('ann_file'))
        checked.append(
            dict(
                key=loader_key,
                ann_file=getattr(dataset, 'ann_file', None),
                images=len(dataset),
                instances=sum(
                    len(dataset.get_data_info(i)['instances'])
                    for i in range(len(dataset))),
                metric_files=metric_files))
    return checked


def check_training_data(cfg: Config,
                        num_batches: int = 1500,
                        seed: int = 0) -> dict:
    """Sample ``num_batches`` training batches (indices only) and report the
    data mix and the training shots.

    Args:
        cfg (Config): A training config (any stage; the support check runs
            when it has a ``SupportSetHook`` and a conditioned mask head).
        num_batches (int): Batches to draw (one rank's batches).
        seed (int): Seed of the sampler and of the shot draws.

    Returns:
        dict: ``instances`` (per split and class), ``novel_share``,
        ``support`` (RoIs checked, own-image shots found, RoIs given null
        shots per split), ``sample`` (:func:`check_sample_consistency`) and
        ``evaluation`` (:func:`check_evaluation_annotations`).
    """
    apply_few_shot_seed(cfg)  # as FewShotRunner does
    init_default_scope(cfg.get('default_scope', 'mmdet'))
    loader = Runner.build_dataloader(
        cfg.train_dataloader, seed=seed, diff_rank_seed=False)
    dataset = loader.dataset
    classes = dataset.metainfo['classes']
    novel = set(dataset.metainfo.get('novel_classes', ()))
    batches = list(itertools.islice(iter(loader.batch_sampler), num_batches))

    per_class: Counter = Counter()
    for batch in batches:
        for idx in batch:
            for inst in dataset.get_data_info(idx)['instances']:
                if not inst.get('ignore_flag', 0):
                    per_class[classes[inst['bbox_label']]] += 1
    num_novel = sum(n for c, n in per_class.items() if c in novel)
    total = sum(per_class.values())
    report = dict(
        num_batches=len(batches),
        batch_size=len(batches[0]) if batches else 0,
        instances=dict(
            base=total - num_novel, novel=num_novel,
            per_novel_class={c: per_class.get(c, 0)
                             for c in classes if c in novel}),
        novel_share=num_novel / total if total else 0.0,
        sample=check_sample_consistency(cfg, dataset))
    report['support'] = _check_training_shots(cfg, dataset, batches, novel,
                                              seed)
    report['evaluation'] = check_evaluation_annotations(cfg)
    return report


def _check_training_shots(cfg: Config, dataset: Any,
                          batches: List[List[int]], novel: set,
                          seed: int) -> Optional[dict]:
    """Draw the training shots of every batch as ``FewShotRoIHead`` does."""
    hook = support_set_hook_config(cfg)
    mask_head = cfg.model.get('roi_head', {}).get('mask_head') or {}
    if hook is None or 'num_shots' not in mask_head:
        return None
    pool = dataset
    if hook.get('train_dataset'):
        pool = DATASETS.build(hook['train_dataset'])
    bank = support_bank_metadata(pool, hook.get('max_train_per_class', 200),
                                 hook.get('seed', 0))
    classes = dataset.metainfo['classes']
    generator = torch.Generator().manual_seed(seed)
    checked = own_image = 0
    null: Counter = Counter()
    for batch in batches:
        infos = [dataset.get_data_info(i) for i in batch]
        img_ids = torch.tensor([info['img_id'] for info in infos])
        labels = torch.tensor([
            inst['bbox_label'] for info in infos
            for inst in info['instances'] if not inst.get('ignore_flag', 0)
        ],
                              dtype=torch.long)
        if labels.numel() == 0:
            continue
        shots = bank.sample(
            labels, mask_head['num_shots'], exclude_img_ids=img_ids,
            generator=generator)
        given = shots[:, 0] >= 0
        own_image += int(
            torch.isin(bank.img_ids[shots[given]], img_ids).any(1).sum())
        for label in labels[~given].tolist():
            null['novel' if classes[label] in novel else 'base'] += 1
        checked += labels.numel()
    return dict(
        rois=checked,
        own_image_shots=own_image,
        null_shots=dict(base=null['base'], novel=null['novel']),
        pool=len(bank))


def format_report(report: dict) -> str:
    """The report of :func:`check_training_data` as text."""
    inst = report['instances']
    lines = [
        f"sampled {report['num_batches']} batches of "
        f"{report['batch_size']} images: {inst['base']} base and "
        f"{inst['novel']} novel instances -> novel share "
        f"{100 * report['novel_share']:.2f} %",
    ]
    per = inst['per_novel_class']
    if per:
        lines.append(f'  novel instances per class: min {min(per.values())}'
                     f', max {max(per.values())} over {len(per)} classes')
    support = report.get('support')
    if support is not None:
        lines.append(
            f"training shots: {support['rois']} RoIs checked against a pool "
            f"of {support['pool']} instances; shots from the RoI's own image: "
            f"{support['own_image_shots']}; null shots (no other instance of "
            f"the class): base {support['null_shots']['base']}, novel "
            f"{support['null_shots']['novel']}")
    sample = report['sample']
    lines.append('K-shot sample: training set ' + '; '.join(
        f"seed {s['seed']}, novel K {s['num_novel_shots']}"
        for s in sample['train']) + ' | support set ' +
                 (f"seed {sample['support']['seed']}, novel K "
                  f"{sample['support']['num_novel_shots']}"
                  if sample['support'] else 'none') + ' | load_from ' +
                 f"{sample['checkpoint']['load_from']} " +
                 (f"(trained on seed {sample['checkpoint']['sample']['seed']}"
                  f", novel K {sample['checkpoint']['sample']['num_novel_shots']})"
                  if sample['checkpoint']['sample'] else '(not on disk)'))
    for data in report.get('evaluation', ()):
        files = ', '.join(data['metric_files']) or 'none'
        lines.append(
            f"{data['key']}: {data['images']} images, {data['instances']} "
            f"instances in {data['ann_file']}; metric files checked: {files}")
    lines.append('consistent' if sample['consistent'] else
                 'MISMATCH: the K-shot samples above differ')
    return '\n'.join(lines)
