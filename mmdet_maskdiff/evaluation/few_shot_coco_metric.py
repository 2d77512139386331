"""COCO bbox / segm AP for base, novel and all classes in one evaluation."""
import contextlib
import io
import os.path as osp
import re
import tempfile
from collections import OrderedDict
from typing import Dict, List, Mapping, Optional, Sequence, Tuple, Union

import numpy as np
from mmdet.evaluation import CocoMetric
from mmdet.registry import METRICS
from mmengine.fileio import load
from mmengine.logging import MMLogger
from pycocotools.coco import COCO
from pycocotools.cocoeval import COCOeval
from terminaltables import AsciiTable

from ..datasets.class_splits import COCO_SPLIT, SPLIT_NAMES
from ..datasets.coco_records import (check_annotation_references,
                                     check_image_records,
                                     check_label_space_annotated)
from ..datasets.few_shot_splits import category_ids_by_name, check_coco_dict

# index of each item in ``COCOeval.stats``
_STAT_INDEX = dict(mAP=0, mAP_50=1, mAP_75=2, mAP_s=3, mAP_m=4, mAP_l=5)
# other items: AP at one IoU threshold of ``iou_thrs``, e.g. mAP_85, mAP_95
_IOU_ITEM = re.compile(r'mAP_(\d{2})$')
ALL_SPLIT = 'all'

SplitSpecs = Mapping[str, Union[str, Sequence[str]]]


def check_split_specs(
        class_splits: SplitSpecs) -> Dict[str, Union[str, Sequence[str]]]:
    """Validate a metric's ``class_splits`` (split name -> class names or a
    keyword ``'BASE'`` / ``'NOVEL'`` / ``'ALL'``) and return it as a dict.

    Raises:
        ValueError: not a dict, an invalid or reserved split name, or an
            unknown keyword.
    """
    if not isinstance(class_splits, Mapping):
        raise ValueError('class_splits must be a dict of split name -> '
                         'class names or split keyword')
    for name, spec in class_splits.items():
        if not isinstance(name, str) or not name or '/' in name:
            raise ValueError(f'invalid split name {name!r} (a non-empty '
                             "string without '/')")
        if name.lower() == ALL_SPLIT:
            raise ValueError(
                f"split name {name!r} is reserved: '{ALL_SPLIT}'"
                ' (every dataset class) is always reported')
        if isinstance(spec, str) and spec.upper() not in SPLIT_NAMES:
            raise ValueError(
                f'unknown class split {spec!r} for split {name!r}: '
                f"expected {', '.join(SPLIT_NAMES)} or class names")
    return dict(class_splits)


def resolve_split_specs(class_splits: SplitSpecs,
                        dataset_meta: dict) -> Dict[str, Tuple[str, ...]]:
    """Class names of every split, ``all`` (the dataset's classes) first.

    Keywords resolve against ``dataset_meta['base_classes' /
    'novel_classes']`` when present, the COCO split otherwise.

    Args:
        class_splits (Mapping): checked by :func:`check_split_specs`.
        dataset_meta (dict): must hold ``classes``.

    Returns:
        dict[str, tuple[str, ...]]: split name -> class names.

    Raises:
        ValueError: a split class that is not a dataset class, or an empty
            split.
    """
    classes = tuple(dataset_meta['classes'])
    splits = OrderedDict([(ALL_SPLIT, classes)])
    for name, spec in class_splits.items():
        if isinstance(spec, str):
            key = spec.upper()
            if key == 'ALL':
                names = classes
            elif f'{key.lower()}_classes' in dataset_meta:
                names = tuple(dataset_meta[f'{key.lower()}_classes'])
            else:
                names = COCO_SPLIT[key]
        else:
            names = tuple(spec)
        missing = [c for c in names if c not in classes]
        if missing:
            raise ValueError(
                f"class '{missing[0]}' of split '{name}' is not a dataset "
                f'class ({len(missing)} such classes); choose '
                'class_splits matching the test set, e.g. '
                "dict(novel='NOVEL') for a novel-only test set")
        if not names:
            raise ValueError(f"split '{name}' has no class in the "
                             'dataset; remove it from class_splits')
        splits[name] = names
    return splits


def ap_at_iou(coco_eval: COCOeval, iou: float) -> float:
    """AP at one IoU threshold, all areas, as ``COCOeval.summarize`` computes
    AP50 (mean precision over recall thresholds and categories; -1 without
    ground truth).

    Args:
        coco_eval (COCOeval): evaluated and accumulated.
        iou (float): one of ``coco_eval.params.iouThrs``.

    Raises:
        KeyError: ``iou`` is not an evaluated threshold.
    """
    params = coco_eval.params
    index = np.flatnonzero(np.isclose(params.iouThrs, iou))
    if not index.size:
        raise KeyError(f'AP at IoU {iou:g} needs {iou:g} in iou_thrs, got '
                       f'{[round(float(t), 3) for t in params.iouThrs]}')
    area = params.areaRngLbl.index('all')
    max_dets = params.maxDets.index(params.maxDets[2])
    precision = coco_eval.eval['precision'][index[0], :, :, area, max_dets]
    valid = precision[precision > -1]
    return float(np.mean(valid)) if valid.size else -1.


@METRICS.register_module()
class FewShotCocoMetric(CocoMetric):
    """COCO AP of several class splits (base / novel / all) in one run.

    For every metric (``'bbox'``, ``'segm'``) the predictions are converted to
    COCO json once (:meth:`CocoMetric.results2json`), then pycocotools'
    ``COCOeval`` runs once per split with ``params.catIds`` restricted to the
    split's category ids — exactly what pycocotools gives on the predictions
    and ground truth of those classes alone (COCO AP is a mean of per-class
    APs). The split ``all`` (every class of the dataset) is always reported;
    its numbers equal :class:`CocoMetric`'s. Keys are
    ``'{split}/{metric}_{item}'``, e.g. ``novel/segm_mAP``,
    ``base/bbox_mAP_50``, ``all/segm_mAP``; mmengine prepends the prefix
    (``coco/novel/segm_mAP``). A split without any ground truth in the test
    set gets pycocotools' ``-1``. With no prediction at all every AP is 0.

    Predicted labels index ``dataset_meta['classes']`` in its order (as in
    :class:`FewShotCocoDataset`); category ids are looked up by name, so the
    ground-truth file's category order does not matter.

    Only the collected ``results`` are used in :meth:`compute_metrics`, so the
    metric is correct under distributed evaluation like its parent.

    ``ann_file`` is checked when it is read, by the rules the dataset and the
    split generator apply (:mod:`mmdet_maskdiff.datasets.coco_records`):
    no repeated image id or file name, every annotation of a declared image
    and category; and once the dataset's classes are known, at least one
    annotation of them (else every AP would be -1). pycocotools would index
    such a file without a word and score it wrongly.

    Args:
        class_splits (dict, optional): split name -> class names, or a split
            keyword ``'BASE'`` / ``'NOVEL'`` / ``'ALL'``. Keywords resolve
            against ``dataset_meta['base_classes' / 'novel_classes']`` when
            the dataset provides them (:class:`FewShotCocoDataset` does,
            also for non-COCO ``class_splits``) and against the COCO split
            otherwise; ``'ALL'`` is the dataset's classes. Defaults to
            ``dict(base='BASE', novel='NOVEL')``. Every class of a split must
            be a dataset class; for a novel-only test set pass
            ``dict(novel='NOVEL')``.
        metric (str | list[str]): ``'bbox'`` and / or ``'segm'``.
            Defaults to ``['bbox', 'segm']``.
        classwise (bool): also report the per-class AP of the ``all`` run
            (keys ``'{metric}_{class}_precision'``) and log a per-class table.
        metric_items (list[str], optional): as :class:`CocoMetric`'s
            (``mAP``, ``mAP_50``, ``mAP_75``, ``mAP_s``, ``mAP_m``,
            ``mAP_l``), plus ``mAP_NN``: AP at IoU 0.NN, one of ``iou_thrs``
            (e.g. ``mAP_85``, ``mAP_95`` for high-IoU mask quality).
            Defaults to the six ``CocoMetric`` items.
        **kwargs: the other arguments of :class:`CocoMetric` (``ann_file``,
            ``iou_thrs``, ``proposal_nums``, ``outfile_prefix``,
            ``format_only``, ``backend_args``, ``collect_device``,
            ``prefix``).
    """

    def __init__(self,
                 class_splits: Optional[Mapping[str,
                                                Union[str,
                                                      Sequence[str]]]] = None,
                 metric: Union[str, List[str]] = ['bbox', 'segm'],
                 **kwargs) -> None:
        metrics = metric if isinstance(metric, (list, tuple)) else [metric]
        for m in metrics:
            if m not in ('bbox', 'segm'):
                raise ValueError("FewShotCocoMetric supports the metrics "
                                 f"'bbox' and 'segm', got {m!r}")
        if kwargs.get('use_mp_eval'):
            raise ValueError('FewShotCocoMetric does not support use_mp_eval')
        super().__init__(metric=list(metrics), **kwargs)
        if class_splits is None:
            class_splits = dict(base='BASE', novel='NOVEL')
        self.class_splits = check_split_specs(class_splits)
        for item in self.metric_items or ():
            if item not in _STAT_INDEX and not _IOU_ITEM.match(item):
                raise KeyError(f'metric item "{item}" is not supported')
        self.ann_file = kwargs.get('ann_file')
        if self._coco_api is not None:
            ground_truth = self._coco_api.dataset
            check_coco_dict(ground_truth, self.ann_file)
            check_image_records(ground_truth['images'], self.ann_file)
            check_annotation_references(ground_truth, self.ann_file)
        self._splits: Optional[Dict[str, Tuple[str, ...]]] = None

    @property
    def dataset_meta(self) -> Optional[dict]:
        """dict | None: meta info of the dataset; setting it checks splits."""
        return self._dataset_meta

    @dataset_meta.setter
    def dataset_meta(self, dataset_meta: Optional[dict]) -> None:
        self._dataset_meta = dataset_meta
        self._splits = None
        if dataset_meta is not None:
            self._splits = self.resolve_splits(dataset_meta)
            if self._coco_api is not None:
                # every class must be in ann_file, and one annotated
                name2id = self._name_to_cat_id()
                classes = tuple(dataset_meta['classes'])
                check_label_space_annotated(self._coco_api.dataset,
                                            [name2id[c] for c in classes],
                                            classes, self.ann_file)

    def resolve_splits(self, dataset_meta: dict) -> Dict[str, Tuple[str, ...]]:
        """Class names of every split of this metric's ``class_splits``,
        ``all`` first: :func:`resolve_split_specs` (same arguments, result
        and errors)."""
        return resolve_split_specs(self.class_splits, dataset_meta)

    def _name_to_cat_id(self) -> Dict[str, int]:
        """Category name -> id of the ground-truth COCO api."""
        source = self.ann_file or 'the converted ground truth'
        name2id = category_ids_by_name(self._coco_api.dataset['categories'],
                                       source)
        for name in self.dataset_meta['classes']:
            if name not in name2id:
                raise ValueError(f"class '{name}' is not a category of "
                                 f'{source}')
        return name2id

    def _load_results(self, path: str, iou_type: str) -> COCO:
        """The result api of one json (an empty one without predictions)."""
        predictions = load(path)
        if iou_type == 'segm':
            # area ranges from the mask area, as CocoMetric does
            for pred in predictions:
                pred.pop('bbox', None)
        with contextlib.redirect_stdout(io.StringIO()):
            if predictions:
                return self._coco_api.loadRes(predictions)
            empty = COCO()
            empty.dataset = dict(
                images=list(self._coco_api.dataset['images']),
                categories=list(self._coco_api.dataset['categories']),
                annotations=[])
            empty.createIndex()
            return empty

    def _evaluate(self, coco_dt: COCO, iou_type: str,
                  cat_ids: List[int]) -> Tuple[COCOeval, str]:
        """Run COCOeval on some categories; return it and its summary."""
        coco_eval = COCOeval(self._coco_api, coco_dt, iou_type)
        coco_eval.params.catIds = cat_ids
        coco_eval.params.imgIds = self.img_ids
        coco_eval.params.maxDets = list(self.proposal_nums)
        coco_eval.params.iouThrs = self.iou_thrs
        buffer = io.StringIO()
        with contextlib.redirect_stdout(buffer):
            coco_eval.evaluate()
            coco_eval.accumulate()
            coco_eval.summarize()
        return coco_eval, buffer.getvalue()

    def _classwise(self, coco_eval: COCOeval, metric: str,
                   splits: Dict[str, Tuple[str, ...]],
                   name2id: Dict[str, int],
                   eval_results: dict) -> List[list]:
        """Per-class AP rows from the ``all`` evaluation (and result keys).

        The K axis of ``coco_eval.eval['precision']`` follows
        ``coco_eval.params.catIds``, which ``COCOeval.evaluate`` sorts by
        category id; a class's column is found by its category id, so the
        rows are right whatever the dataset's class order.
        """
        precisions = coco_eval.eval['precision']  # (T, R, K, A, M)
        column = {
            cat_id: k
            for k, cat_id in enumerate(coco_eval.params.catIds)
        }
        rows = []
        for name in self.dataset_meta['classes']:
            k = column[name2id[name]]
            values = []
            for iou_index, area_index in ((slice(None), 0), (0, 0), (5, 0),
                                          (slice(None), 1), (slice(None), 2),
                                          (slice(None), 3)):
                p = precisions[iou_index, :, k, area_index, -1]
                p = p[p > -1]
                values.append(float(np.mean(p)) if p.size else float('nan'))
            eval_results[f'{metric}_{name}_precision'] = round(values[0], 3)
            group = next(
                (s for s in splits if s != ALL_SPLIT and name in splits[s]),
                '-')
            rows.append([name, group] + [f'{v:.3f}' for v in values])
        return rows

    def compute_metrics(self, results: list) -> Dict[str, float]:
        """Compute every split's metrics from the collected results.

        Args:
            results (list): ``(gt, prediction)`` pairs from :meth:`process`.

        Returns:
            dict[str, float]: ``'{split}/{metric}_{item}'`` -> value (3
            decimals, as CocoMetric), plus per-class keys with
            ``classwise=True``.
        """
        logger: MMLogger = MMLogger.get_current_instance()
        if not results:
            logger.error('FewShotCocoMetric: no result to evaluate (empty '
                         'test set?)')
            return OrderedDict()
        gts, preds = zip(*results)
        splits = self._splits  # set with dataset_meta

        tmp_dir = None
        if self.outfile_prefix is None:
            tmp_dir = tempfile.TemporaryDirectory()
            outfile_prefix = osp.join(tmp_dir.name, 'results')
        else:
            outfile_prefix = self.outfile_prefix
        try:
            if self._coco_api is None:
                logger.info('Converting ground truth to coco format...')
                gt_path = self.gt_to_coco_json(
                    gt_dicts=gts, outfile_prefix=outfile_prefix)
                with contextlib.redirect_stdout(io.StringIO()):
                    self._coco_api = COCO(gt_path)
            name2id = self._name_to_cat_id()
            # labels index the dataset classes in their order
            self.cat_ids = [name2id[c] for c in self.dataset_meta['classes']]
            if self.img_ids is None:
                self.img_ids = self._coco_api.get_img_ids()
            result_files = self.results2json(preds, outfile_prefix)
            if self.format_only:
                logger.info('results are saved in '
                            f'{osp.dirname(outfile_prefix)}')
                return OrderedDict()
            return self._evaluate_splits(result_files, splits, name2id, logger)
        finally:
            if tmp_dir is not None:
                tmp_dir.cleanup()

    def _evaluate_splits(self, result_files: Dict[str, str],
                         splits: Dict[str, Tuple[str,
                                                 ...]], name2id: Dict[str,
                                                                      int],
                         logger: MMLogger) -> Dict[str, float]:
        items = list(self.metric_items or _STAT_INDEX)
        eval_results: Dict[str, float] = OrderedDict()
        rows = []
        for metric in self.metrics:
            if metric not in result_files:
                raise KeyError(f'{metric} is not in results (the model gave '
                               'no masks)' if metric ==
                               'segm' else f'{metric} is not in results')
            coco_dt = self._load_results(result_files[metric], metric)
            for split, names in splits.items():
                coco_eval, summary = self._evaluate(
                    coco_dt, metric, [name2id[n] for n in names])
                if split == ALL_SPLIT:
                    summary = '\n'.join(line for line in summary.splitlines()
                                        if line.lstrip().startswith('Average'))
                    logger.info(f'{metric} (all classes):\n{summary}')
                    if self.classwise:
                        per_class = self._classwise(
                            coco_eval, metric, splits, name2id, eval_results)
                        header = [[
                            'category', 'split', 'mAP', 'mAP_50', 'mAP_75',
                            'mAP_s', 'mAP_m', 'mAP_l'
                        ]]
                        logger.info(f'per-class {metric} AP\n' +
                                    AsciiTable(header + per_class).table)
                row = [split, metric, str(len(names))]
                for item in items:
                    value = (
                        float(coco_eval.stats[_STAT_INDEX[item]])
                        if item in _STAT_INDEX else ap_at_iou(
                            coco_eval,
                            int(_IOU_ITEM.match(item).group(1)) / 100))
                    eval_results[f'{split}/{metric}_{item}'] = float(
                        f'{round(value, 3)}')
                    row.append(f'{value:.3f}')
                rows.append(row)
        header = ['split', 'metric', '#classes'] + items
        logger.info('few-shot COCO evaluation\n' +
                    AsciiTable([header] + rows).table)
        return eval_results
