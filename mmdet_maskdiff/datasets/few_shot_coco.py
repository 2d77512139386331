"""COCO-format dataset for few-shot instance segmentation.

:class:`FewShotCocoDataset` is a :class:`mmdet.datasets.CocoDataset` with a
fixed label space (one tuple of class names shared by base training,
fine-tuning and testing), an optional subset of classes whose annotations are
kept, and a few-shot mode that builds the data list from TFA-layout K-shot
files (see :mod:`.few_shot_splits`).

The class is documented here in full; two parts of its code live beside it,
each a mixin of its methods: the K-shot mode's loading
(:mod:`.k_shot_files`) and the image-file checks (:mod:`.image_file_checks`).
The class docstring alone is 100 lines, and the rest (arguments, label
space, full mode, annotation filtering) stays here: a little over 400 lines.
"""
import logging
from typing import Dict, List, Optional, Sequence, Tuple

import numpy as np
from mmengine.fileio import exists, get_local_path, join_path
from mmengine.logging import print_log
from mmengine.utils import is_abs
from mmdet.datasets import CocoDataset
from mmdet.registry import DATASETS

from .class_splits import (COCO_ALL_CLASSES, ClassSpec, ClassSplits,
                           get_class_splits, resolve_classes)
from .coco_records import (check_annotation_references,
                           check_image_records, check_label_space_annotated)
from .few_shot_splits import category_ids_by_name, read_coco_json
from .image_file_checks import ImageFileChecksMixin
from .instance_validity import instance_problem
from .k_shot_files import KShotFilesMixin

INVALID_POLICIES = ('raise', 'skip')
#: default largest share of invalid (skipped) annotations of a test set
MAX_INVALID_FRACTION = 0.01


def _palette(classes: Sequence[str]) -> List[Tuple[int, int, int]]:
    """COCO's colour for COCO names, a fixed pseudo-random one otherwise."""
    coco_palette = CocoDataset.METAINFO['palette']
    palette = []
    for i, name in enumerate(classes):
        if name in COCO_ALL_CLASSES:
            palette.append(tuple(coco_palette[COCO_ALL_CLASSES.index(name)]))
        else:
            palette.append(((97 * i + 61) % 256, (151 * i + 23) % 256,
                            (211 * i + 127) % 256))
    return palette


@DATASETS.register_module()
class FewShotCocoDataset(KShotFilesMixin, ImageFileChecksMixin,
                         CocoDataset):
    """COCO-format dataset with a few-shot label space and K-shot mode.

    **Label space.** ``classes`` fixes ``metainfo['classes']``; the label of an
    instance is the index of its class name in that tuple, in the given
    order (mmdet's ``CocoDataset`` orders labels by category id instead).
    Category ids are looked up by name, so base training, fine-tuning and
    testing agree on labels whenever they use the same ``classes``, whatever
    the category ids or order of their files. ``metainfo`` also gets
    ``base_classes`` and ``novel_classes`` (the members of each group that are
    in the label space), read by :class:`FewShotCocoMetric`.

    **Full mode** (``few_shot_root=None``): every image of ``ann_file``.
    Annotations whose class is outside the label space are ignored (as in
    mmdet); those of a class outside ``ann_classes`` are dropped (counted in
    the log). Invalid annotations of this file are *skipped* with a logged
    warning (file, count, the first one and its problem), because large
    files such as ``instances_train2017.json`` contain a few; in a test set
    (``test_mode``) more than ``max_invalid_fraction`` of them is an error.
    Valid means :func:`.instance_validity.instance_problem` finds nothing
    (box of at least 1 px inside the image, positive area, a non-empty
    usable mask): the one rule of the split generator, both modes and the
    support bank.

    **File rules** (:mod:`.coco_records`, shared with the metric and the
    split generator): the annotation file must not repeat an image id or a
    file name, and every annotation must refer to a declared image and
    category. A test set must hold an annotation of the label space, and
    its image files must exist (checked once when it loads, see
    ``check_image_files``). Every image is checked against its record as
    soon as the pipeline's ``LoadImageFromFile`` decodes it
    (:meth:`prepare_data`): another size is an error, as is a missing file.

    **Few-shot mode** (``few_shot_root`` set): the data list is built from the
    K-shot file of every class in the label space (and in ``ann_classes``):
    base classes with ``num_base_shots``, novel ones with ``num_novel_shots``
    (0 or ``None`` skips that group), seed ``seed``. An image found in several
    class files becomes *one* data item holding the instances of all of them
    (duplicates by annotation id removed). Invalid annotations of these files
    *raise* by default (``on_invalid_few_shot='raise'``; ``'skip'`` drops them
    with a logged count): a K-shot set is small, so a broken instance is a
    real problem. ``ann_file`` may be ``''``; when given, it is read for its
    categories (every category id must agree with the split files) and its
    image records (file name, size), so TFA's ``cocosplit`` files (2014 file
    names) resolve to the COCO 2017 images of ``instances_train2017.json``.

    ``filter_cfg=dict(filter_empty_gt=True)`` keeps the images with at least
    one instance left after class filtering (crowd included); ``min_size``
    works as in mmdet.

    Args:
        classes (str | Sequence[str]): the label space: ``'ALL'``,
            ``'BASE'``, ``'NOVEL'`` or a sequence of names. Defaults to
            ``'ALL'``.
        class_splits (dict, optional): base / novel definition for a non-COCO
            dataset, ``dict(base=[...], novel=[...])``; ``None`` = COCO.
        ann_classes (str | Sequence[str], optional): the classes whose
            annotations are kept (e.g. ``'BASE'`` for base training in the
            ALL label space); must be a subset of ``classes``. ``None`` keeps
            all.
        few_shot_root (str, optional): directory of the K-shot files (TFA
            layout); relative paths are joined to ``data_root``.
        num_novel_shots (int, optional): K of the novel classes.
        num_base_shots (int, optional): K of the base classes.
        seed (int): the split seed (0 = files directly in ``few_shot_root``).
            Defaults to 0.
        on_invalid_few_shot (str): ``'raise'`` (default) or ``'skip'`` for an
            invalid annotation of a K-shot file.
        max_invalid_fraction (float): in a test set (``test_mode=True``,
            full mode), the largest share of its annotations (those of the
            label space) that may be invalid and skipped; more is an error,
            since the metric scores them as ground truth the model is never
            shown. Defaults to :data:`MAX_INVALID_FRACTION` (0.01).
        check_image_files (bool, optional): check once, when the data list
            is loaded, that the image folder and every image file exist
            (one ``stat`` per image; local files only). ``None`` (default):
            for a test set whose pipeline loads images. A training set's
            files are checked as they are read (a missing one is an error
            naming the file and its record), so that loading 118k records
            stays free of 118k ``stat`` calls.
        metainfo (dict, optional): may not set other ``classes`` than
            ``classes``; other keys are kept.
        **kwargs: the arguments of :class:`mmdet.datasets.CocoDataset`
            (``ann_file``, ``data_root``, ``data_prefix``, ``filter_cfg``,
            ``pipeline``, ``test_mode``, ``backend_args``, ...).

    Raises:
        FileNotFoundError: a missing annotation or K-shot file, image folder
            or (test set) image file.
        ValueError: a malformed file (not json, no ``images`` /
            ``annotations`` / ``categories``, a rule of
            :mod:`.coco_records`), a class absent from a file, a file with
            fewer than K instances, different category ids for one class
            name in two files, an invalid K-shot annotation (zero area, bbox
            or mask outside the image), a test set with more than
            ``max_invalid_fraction`` invalid annotations or none of the
            label space, or inconsistent arguments. Every message is one
            line naming the file and the record, class or field.
    """

    def __init__(self,
                 *args,
                 classes: ClassSpec = 'ALL',
                 class_splits: Optional[ClassSplits] = None,
                 ann_classes: Optional[ClassSpec] = None,
                 few_shot_root: Optional[str] = None,
                 num_novel_shots: Optional[int] = None,
                 num_base_shots: Optional[int] = None,
                 seed: int = 0,
                 on_invalid_few_shot: str = 'raise',
                 max_invalid_fraction: float = MAX_INVALID_FRACTION,
                 check_image_files: Optional[bool] = None,
                 metainfo: Optional[dict] = None,
                 **kwargs) -> None:
        splits = get_class_splits(class_splits)
        label_classes = resolve_classes(classes, class_splits)
        if ann_classes is None:
            self.ann_classes = label_classes
        else:
            self.ann_classes = resolve_classes(ann_classes, class_splits)
            outside = [c for c in self.ann_classes if c not in label_classes]
            if outside:
                raise ValueError(f'ann_classes {outside} are not in the label '
                                 f'space classes={classes!r}')
        if on_invalid_few_shot not in INVALID_POLICIES:
            raise ValueError("on_invalid_few_shot must be 'raise' or 'skip', "
                             f'got {on_invalid_few_shot!r}')
        for name, value in (('num_novel_shots', num_novel_shots),
                            ('num_base_shots', num_base_shots)):
            if value is not None and (not isinstance(value, int) or value < 0):
                raise ValueError(f'{name} must be None or an int >= 0, got '
                                 f'{value!r}')
        if not isinstance(seed, int) or seed < 0:
            raise ValueError(f'seed must be an int >= 0, got {seed!r}')
        if (isinstance(max_invalid_fraction, bool)
                or not isinstance(max_invalid_fraction, (int, float))
                or not 0 <= max_invalid_fraction <= 1):
            raise ValueError('max_invalid_fraction must be a number in '
                             f'[0, 1], got {max_invalid_fraction!r}')

        metainfo = dict(metainfo or {})
        if 'classes' in metainfo and tuple(
                metainfo['classes']) != label_classes:
            raise ValueError(
                'metainfo.classes differs from the classes argument of '
                'FewShotCocoDataset; set the label space with classes=... '
                'only')
        metainfo['classes'] = label_classes
        metainfo.setdefault('palette', _palette(label_classes))
        metainfo['base_classes'] = tuple(c for c in label_classes
                                         if c in splits['BASE'])
        metainfo['novel_classes'] = tuple(c for c in label_classes
                                          if c in splits['NOVEL'])

        self.class_splits = splits
        self.few_shot_root = few_shot_root
        self.num_novel_shots = num_novel_shots
        self.num_base_shots = num_base_shots
        self.seed = seed
        self.on_invalid_few_shot = on_invalid_few_shot
        self.max_invalid_fraction = max_invalid_fraction
        self.check_image_files = check_image_files
        super().__init__(*args, metainfo=metainfo, **kwargs)

    # ------------------------------------------------------------------ #
    # loading
    # ------------------------------------------------------------------ #
    def _join_prefix(self) -> None:
        """Also join ``few_shot_root`` to ``data_root`` when relative."""
        super()._join_prefix()
        # mmdet's parse_data_info reads data_prefix['img']; without it, image
        # paths are the file names, as this dataset has always allowed
        self.data_prefix.setdefault('img', '')
        if (self.few_shot_root and self.data_root
                and not is_abs(self.few_shot_root)):
            self.few_shot_root = join_path(self.data_root, self.few_shot_root)

    def _read_json(self, path: str, not_found: Optional[str] = None) -> dict:
        """Read and check a COCO json through the file backend; a missing
        file raises ``FileNotFoundError`` with ``not_found`` (default:
        ``annotation file not found: <path>``)."""
        if not exists(path, backend_args=self.backend_args):
            raise FileNotFoundError(not_found
                                    or f'annotation file not found: {path}')
        with get_local_path(path, backend_args=self.backend_args) as local:
            return read_coco_json(local, display_path=path)

    def _set_label_space(self, name2id: Dict[str, int], path: str) -> None:
        """Set ``cat_ids`` / ``cat2label`` in the order of the classes."""
        classes = self.metainfo['classes']
        for name in classes:
            if name not in name2id:
                raise ValueError(f"class '{name}' is not a category of "
                                 f'{path}')
        self.cat_ids = [name2id[name] for name in classes]
        self.cat2label = {cat_id: i for i, cat_id in enumerate(self.cat_ids)}
        self._kept_labels = {
            self.cat2label[name2id[name]]
            for name in self.ann_classes
        }

    def load_data_list(self) -> List[dict]:
        """Load the data list of the full file or of the K-shot files.

        Returns:
            list[dict]: one dict per image with ``img_path``, ``img_id``,
            ``seg_map_path``, ``height``, ``width`` and ``instances`` (each
            with ``bbox`` (xyxy), ``bbox_label``, ``ignore_flag`` and, when
            annotated, ``mask``).
        """
        self._num_invalid = 0
        self._num_judged = 0
        self._first_invalid = ''
        self._num_dropped = 0
        main = main_ids = None
        if self.ann_file:
            main = self._read_json(self.ann_file)
            check_image_records(main['images'], self.ann_file)
            main_ids = category_ids_by_name(main['categories'], self.ann_file)
            self._set_label_space(main_ids, self.ann_file)
        if self.few_shot_root:
            data_list = self._load_few_shot(main, main_ids)
        elif main is None:
            raise ValueError('FewShotCocoDataset needs ann_file (or '
                             'few_shot_root for the K-shot mode)')
        else:
            data_list = self._load_full(main)
        self.cat_img_map = {cat_id: [] for cat_id in self.cat_ids}
        for data_info in data_list:
            for label in sorted(
                {i['bbox_label']
                 for i in data_info['instances']}):
                self.cat_img_map[self.cat_ids[label]].append(
                    data_info['img_id'])
        self._report_invalid()
        if self._num_dropped:
            print_log(
                f'{type(self).__name__}: dropped {self._num_dropped} '
                'annotations of classes outside ann_classes',
                logger='current')
        if self._checks_image_files():
            self._check_image_files(data_list)
        return data_list

    @property
    def _source(self) -> str:
        """Where the annotations come from (the K-shot folder or the
        annotation file), for messages."""
        return self.few_shot_root or self.ann_file

    @property
    def _image_source(self) -> str:
        """Where the image records come from, for messages."""
        return self.ann_file or self.few_shot_root

    def _report_invalid(self) -> None:
        """Warn about the skipped invalid annotations (file, count, the
        first one); in a test set, more than ``max_invalid_fraction`` of
        them raises ``ValueError``."""
        if not self._num_invalid:
            return
        share = self._num_invalid / max(self._num_judged, 1)
        counted = (f'{self._num_invalid} of {self._num_judged} annotations '
                   f'({100 * share:.2f} %) of {self._source}')
        first = (f'first: {self._first_invalid}; rule: '
                 'mmdet_maskdiff/datasets/instance_validity.py')
        if (self.test_mode and not self.few_shot_root
                and share > self.max_invalid_fraction):
            raise ValueError(
                f'{counted} are invalid, more than max_invalid_fraction='
                f'{self.max_invalid_fraction:g} of a test set ({first}); '
                'the metric would score them as ground truth the model '
                'never sees: fix the file, or raise max_invalid_fraction')
        print_log(
            f'{type(self).__name__}: skipped {counted} as invalid ({first})',
            logger='current',
            level=logging.WARNING)

    def _load_full(self, data: dict) -> List[dict]:
        """The data list of all images of one COCO json."""
        anns_per_img: Dict[int, List[dict]] = {
            img['id']: []
            for img in data['images']
        }
        check_annotation_references(data, self.ann_file, self.ANN_ID_UNIQUE)
        if self.test_mode:
            check_label_space_annotated(data, self.cat_ids,
                                        self.metainfo['classes'],
                                        self.ann_file)
        for ann in data['annotations']:
            anns_per_img[ann['image_id']].append(ann)
        data_list = []
        for img in data['images']:
            raw_img_info = dict(img, img_id=img['id'])
            data_list.append(
                self.parse_data_info(
                    dict(
                        raw_img_info=raw_img_info,
                        raw_ann_info=anns_per_img[img['id']])))
        return data_list

    def parse_data_info(self, raw_data_info: dict) -> dict:
        """Parse one image and its annotations into the label space.

        mmdet's :meth:`CocoDataset.parse_data_info` on the annotations this
        dataset keeps: those not marked ``ignore``, of a class in the label
        space (by name, :meth:`_set_label_space`) and in ``ann_classes``
        (others are counted as dropped), and valid by
        :func:`.instance_validity.instance_problem` (others are counted as
        skipped). mmdet's own filter (box under 1 px, zero area, no overlap
        with the image) rejects nothing more, since the rule implies it;
        whatever it would drop is counted as skipped all the same.

        Args:
            raw_data_info (dict): ``raw_img_info`` (a COCO image record plus
                ``img_id``) and ``raw_ann_info`` (its annotations).

        Returns:
            dict: the data info of the image (see :meth:`load_data_list`).
        """
        img_info = raw_data_info['raw_img_info']
        kept = self._kept_annotations(raw_data_info['raw_ann_info'],
                                      img_info['width'], img_info['height'])
        data_info = super().parse_data_info(
            dict(raw_data_info, raw_ann_info=kept))
        self._num_invalid += len(kept) - len(data_info['instances'])
        return data_info

    def _kept_annotations(self, anns: List[dict], width: int,
                          height: int) -> List[dict]:
        """The annotations of one image that become instances (see
        :meth:`parse_data_info`); counts the dropped and invalid ones."""
        kept = []
        for ann in anns:
            label = self.cat2label.get(ann['category_id'])
            if ann.get('ignore', False) or label is None:
                continue
            if label not in self._kept_labels:
                self._num_dropped += 1
                continue
            # K-shot annotations were judged already (and pass again)
            if self.few_shot_root or self._judge(ann, width, height) is None:
                kept.append(ann)
        return kept

    def _judge(self, ann: dict, width: int, height: int) -> Optional[str]:
        """:func:`.instance_validity.instance_problem` of one annotation,
        counted: an invalid one is counted as skipped (the first is kept for
        the message)."""
        self._num_judged += 1
        problem = instance_problem(ann, width, height)
        if problem is not None:
            self._num_invalid += 1
            if not self._first_invalid:
                self._first_invalid = (f"annotation {ann['id']} (image "
                                       f"{ann['image_id']}) {problem}")
        return problem

    def _serialize_data(self) -> Tuple[np.ndarray, np.ndarray]:
        """mmengine's serialisation, which fails on an empty data list."""
        if not self.data_list:
            return np.zeros(0, np.uint8), np.zeros(0, np.int64)
        return super()._serialize_data()

    def filter_data(self) -> List[dict]:
        """Filter images without instances and small images (train only).

        Returns:
            list[dict]: the kept data infos.
        """
        if self.test_mode or self.filter_cfg is None:
            return self.data_list
        filter_empty_gt = self.filter_cfg.get('filter_empty_gt', False)
        min_size = self.filter_cfg.get('min_size', 0)
        return [
            data_info for data_info in self.data_list
            if not (filter_empty_gt and not data_info['instances'])
            and min(data_info['width'], data_info['height']) >= min_size
        ]
