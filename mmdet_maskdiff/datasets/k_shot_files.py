"""Few-shot mode of :class:`~.few_shot_coco.FewShotCocoDataset`: its data
list read from the TFA-layout K-shot files of the label space's classes.

The rules (K per group, one data item per image, categories checked against
the annotation file, invalid annotations raised or skipped) are documented
on the dataset class; this mixin holds their code, so that the dataset's
file stays readable. It uses the dataset's ``few_shot_root``, ``seed``,
``num_base_shots`` / ``num_novel_shots``, ``class_splits``,
``ann_classes``, ``_read_json``, ``_set_label_space``, ``_judge`` and
``parse_data_info``.
"""
import logging
from typing import Dict, List, Optional, Tuple

from mmengine.logging import print_log

from mmdet_maskdiff.few_shot.split_folder_check import split_folder_problem
from mmdet_maskdiff.few_shot.split_paths import few_shot_split_path
from .few_shot_splits import category_ids_by_name


class KShotFilesMixin:
    """The K-shot mode's loading methods of ``FewShotCocoDataset``."""

    def _shots_of(self, name: str) -> int:
        """K of one class (0: not loaded)."""
        if name in self.class_splits['NOVEL']:
            return self.num_novel_shots or 0
        if name in self.class_splits['BASE']:
            return self.num_base_shots or 0
        raise ValueError(f"class '{name}' is neither base nor novel, so it "
                         'has no number of shots; set class_splits')

    def _check_split_folder(self, to_load: List[Tuple[str, int]]) -> None:
        """Raise when the seed's split folder lacks the files of a K read
        (:func:`~mmdet_maskdiff.few_shot.split_folder_problem`, the one
        check and message of a missing split folder)."""
        problem = split_folder_problem(self.few_shot_root, self.seed,
                                       [shots for _, shots in to_load])
        if problem is not None:
            raise FileNotFoundError(problem)

    def _load_few_shot(self, main: Optional[dict],
                       main_ids: Optional[Dict[str, int]]) -> List[dict]:
        """The data list of the K-shot files (see the class docstring);
        ``main_ids`` are the category ids of ``main`` by name."""
        to_load = self._classes_to_load()
        self._check_split_folder(to_load)
        main_images = (None if main is None else {
            img['id']: img
            for img in main['images']
        })
        reference = (main_ids, self.ann_file)
        shots: List[Tuple[dict, dict]] = []
        for name, num_shots in to_load:
            path = few_shot_split_path(self.few_shot_root, name, num_shots,
                                       self.seed)
            data = self._read_json(
                path,
                not_found=f'few-shot split file not found: {path} '
                f"(class '{name}', K={num_shots}, seed={self.seed})")
            reference = self._check_split_categories(data, path, name,
                                                     reference)
            shots.extend(
                self._split_shots(data, path, name, num_shots, main_images))
        return self._merge_shots(shots)

    def _classes_to_load(self) -> List[Tuple[str, int]]:
        """``(class name, K)`` of every K-shot file to read, in label order:
        the classes of ``ann_classes`` whose group has shots."""
        to_load = [(name, self._shots_of(name))
                   for name in self.metainfo['classes']
                   if name in self.ann_classes]
        to_load = [(name, k) for name, k in to_load if k > 0]
        if not to_load:
            raise ValueError(
                'few_shot_root is set but no class has shots: set '
                'num_novel_shots and/or num_base_shots (and check '
                'ann_classes)')
        return to_load

    def _check_split_categories(
        self, data: dict, path: str, name: str,
        reference: Tuple[Optional[Dict[str, int]], str]
    ) -> Tuple[Dict[str, int], str]:
        """Check the categories of the K-shot file of class ``name``.

        The file must have the class, and give every class of the label
        space the category id of ``reference`` (the ids by name of the
        annotation file, or of the first K-shot file read, and its path).
        Without a reference yet, this file becomes it and sets the label
        space.

        Returns:
            tuple[dict, str]: the reference for the next files.
        """
        name2id = category_ids_by_name(data['categories'], path)
        if name not in name2id:
            raise ValueError(f"class '{name}' is not a category of "
                             f'few-shot file {path}')
        ref_ids, ref_path = reference
        if ref_ids is None:
            ref_ids, ref_path = name2id, path
            self._set_label_space(ref_ids, path)
        for other in self.metainfo['classes']:
            if (other in name2id and other in ref_ids
                    and name2id[other] != ref_ids[other]):
                raise ValueError(
                    f"category id of class '{other}' is "
                    f'{name2id[other]} in {path} but {ref_ids[other]} in '
                    f'{ref_path}')
        return ref_ids, ref_path

    def _split_shots(
            self, data: dict, path: str, name: str, num_shots: int,
            main_images: Optional[Dict[int, dict]]) -> List[Tuple[dict, dict]]:
        """The valid instances of class ``name`` in its K-shot file.

        Checks that the file has at least K instances (more are used, with a
        warning), that each refers to a known image (of the annotation file
        when given, else of the file's own ``images``) and that each passes
        :func:`.instance_validity.instance_problem` (else raises or, with
        ``on_invalid_few_shot='skip'``, counts it as skipped).

        Returns:
            list[tuple[dict, dict]]: ``(image record, annotation)`` pairs.
        """
        cat_id = self.cat_ids[self.metainfo['classes'].index(name)]
        anns = [a for a in data['annotations'] if a['category_id'] == cat_id]
        num_instances = sum(not a.get('iscrowd', 0) for a in anns)
        if num_instances < num_shots:
            raise ValueError(
                f'few-shot file {path} has {num_instances} instances of '
                f"class '{name}', fewer than K={num_shots}")
        if num_instances > num_shots:
            print_log(
                f'few-shot file {path} has {num_instances} instances of '
                f"class '{name}' (K={num_shots}); all are used",
                logger='current',
                level=logging.WARNING)
        file_images = {img['id']: img for img in data['images']}
        shots = []
        for ann in anns:
            img_id = ann['image_id']
            if main_images is not None:
                if img_id not in main_images:
                    raise ValueError(
                        f'image {img_id} of few-shot file {path} is not '
                        f'in the annotation file {self.ann_file}')
                img = main_images[img_id]
            elif img_id in file_images:
                img = file_images[img_id]
            else:
                raise ValueError(f"annotation {ann['id']} of few-shot "
                                 f'file {path} refers to image {img_id}, '
                                 "which is not in 'images'")
            problem = self._judge(ann, img['width'], img['height'])
            if problem is not None:
                if self.on_invalid_few_shot == 'raise':
                    raise ValueError(
                        f"annotation {ann['id']} (class '{name}', image "
                        f'{img_id}) of few-shot file {path} {problem}')
                continue
            shots.append((img, ann))
        return shots

    def _merge_shots(self, shots: List[Tuple[dict, dict]]) -> List[dict]:
        """One data item per image, in order of first appearance, holding
        the instances of all K-shot files (duplicates by annotation id
        removed)."""
        items: Dict[int, dict] = {}
        for img, ann in shots:
            item = items.setdefault(img['id'], dict(img=img, anns={}))
            item['anns'].setdefault(ann['id'], ann)
        return [
            self.parse_data_info(
                dict(
                    raw_img_info=dict(item['img'], img_id=img_id),
                    raw_ann_info=list(item['anns'].values())))
            for img_id, item in items.items()
        ]
