"""The rules of a COCO instances file as a whole, and of its image files.

A file that breaks one of them is scored wrongly without a word: pycocotools
and mmdet index images by id (a repeated id merges or doubles an image's
ground truth and predictions), ignore annotations of undeclared categories
(every AP of the class silently becomes -1) and trust ``width`` / ``height``
(boxes and masks are judged and decoded at the recorded size). Each rule has
one function here, used by every reader of such files: the dataset
(:class:`.FewShotCocoDataset`), the metric
(:class:`~mmdet_maskdiff.evaluation.FewShotCocoMetric`), the K-shot split
generator (:mod:`.few_shot_splits`), the support bank and
``tools/analysis_tools/check_fsis_data.py``. The per-annotation rule is
:mod:`.instance_validity`'s.

1. **Image records** (:func:`check_image_records`): each has an ``id``, a
   ``file_name`` and positive integer ``width`` and ``height``; no two share
   an id or a file name.
2. **Annotation references** (:func:`check_annotation_references`): no two
   annotations share an id, and each refers to an image of ``images`` and a
   category of ``categories``.
3. **A test set scores something** (:func:`check_label_space_annotated`):
   at least one annotation of the classes being evaluated.
4. **Image files** (:func:`missing_image_files`): the image folder and every
   file exist (a test set checks them once, when it loads).
5. **Decoded size** (:func:`decoded_size_problem`): the decoded image has the
   recorded size (checked as each image is read).

Rules 1-3 are one pass over the records (sets and dicts): about 1 % of
loading a file of COCO's size (118k images, 864k annotations; measured in
docs/data.md, section 2).
"""
import os.path as osp
from typing import Dict, Iterable, List, Optional, Sequence, Tuple

#: the fields every image record needs (mmdet reads all four)
IMAGE_FIELDS = ('id', 'file_name', 'width', 'height')


def _image_field_problem(img: dict) -> Optional[str]:
    """Why an image record lacks a usable field, or ``None``."""
    for field in IMAGE_FIELDS:
        if field not in img:
            return f"has no '{field}'"
    if not isinstance(img['file_name'], str) or not img['file_name']:
        return f"has the file_name {img['file_name']!r} (not a string)"
    for field in ('width', 'height'):
        value = img[field]
        if (isinstance(value, bool) or not isinstance(value, (int, float))
                or value < 1 or not float(value).is_integer()):
            return f'has {field}={value!r} (not a positive integer)'
    return None


def check_image_records(images: Sequence[dict], path: str) -> None:
    """Rule 1: every image record is complete, with its own id and file.

    Args:
        images (Sequence[dict]): the ``images`` of a COCO file.
        path (str): the file, for the message.

    Raises:
        ValueError: one line naming ``path``, the record and the rule, e.g.
            ``image id 5 appears twice in PATH (images[3] and images[7]):
            ...``.
    """
    index_of_id: Dict[object, int] = {}
    id_of_name: Dict[str, object] = {}
    for i, img in enumerate(images):
        problem = _image_field_problem(img)
        if problem is not None:
            raise ValueError(
                f"image record images[{i}] (id {img.get('id')}) of {path} "
                f'{problem}; a COCO image record needs '
                f"{', '.join(IMAGE_FIELDS)}")
        img_id, name = img['id'], img['file_name']
        if img_id in index_of_id:
            raise ValueError(
                f'image id {img_id} appears twice in {path} '
                f'(images[{index_of_id[img_id]}] and images[{i}]): every '
                'image record needs its own id, else its annotations and '
                'predictions are merged or scored twice')
        if name in id_of_name:
            raise ValueError(
                f"file name '{name}' appears twice in {path} (image ids "
                f'{id_of_name[name]} and {img_id}): one picture under two '
                'ids is scored twice')
        index_of_id[img_id] = i
        id_of_name[name] = img_id


def check_annotation_references(data: dict,
                                path: str,
                                unique_ids: bool = True) -> None:
    """Rule 2: annotation ids are unique (when ``unique_ids``) and every
    annotation refers to a record of ``images`` and of ``categories``.

    ``data`` must have passed
    :func:`~mmdet_maskdiff.datasets.few_shot_splits.check_coco_dict`.

    Raises:
        ValueError: one line naming ``path``, the annotation and the rule.
    """
    image_ids = {img['id'] for img in data['images']}
    category_ids = {cat['id'] for cat in data['categories']}
    seen_ids = set()
    for ann in data['annotations']:
        if unique_ids and ann['id'] in seen_ids:
            raise ValueError(f"annotation id {ann['id']} appears twice in "
                             f'{path}')
        seen_ids.add(ann['id'])
        if ann['image_id'] not in image_ids:
            raise ValueError(f"annotation {ann['id']} of {path} refers to "
                             f"image {ann['image_id']}, which is not in "
                             "'images'")
        if ann['category_id'] not in category_ids:
            raise ValueError(
                f"annotation {ann['id']} of {path} has category_id "
                f"{ann['category_id']}, which is not in 'categories' "
                '(it would be ignored, and scored as no object)')


def check_label_space_annotated(data: dict, cat_ids: Iterable[int],
                                classes: Sequence[str], path: str) -> None:
    """Rule 3: a test file has at least one annotation of the evaluated
    classes (``cat_ids``, the category ids of ``classes``); without one,
    every AP is -1.

    Raises:
        ValueError: one line naming ``path`` and the classes.
    """
    wanted = set(cat_ids)
    if any(ann['category_id'] in wanted for ann in data['annotations']):
        return
    shown = ', '.join(classes[:3]) + (', ...' if len(classes) > 3 else '')
    raise ValueError(
        f'{path} has no annotation of the {len(classes)} classes evaluated '
        f'({shown}), so every AP would be -1; check classes / class_splits '
        'and the annotation file')


def is_local_path(path: str, backend_args: Optional[dict]) -> bool:
    """Whether ``path`` is read from the local disk (no file backend and no
    URL), where checking that it exists costs one ``stat``."""
    return backend_args is None and '://' not in path


def missing_image_files(img_dir: str,
                        infos: Sequence[dict]) -> Tuple[bool, List[dict]]:
    """Rule 4: whether the image folder exists, and the data infos whose
    ``img_path`` is not a file (one ``stat`` each: ~5k for val2017).

    Args:
        img_dir (str): the joined ``data_prefix['img']`` ('' = the current
            folder).
        infos (Sequence[dict]): data infos with ``img_path``.

    Returns:
        tuple[bool, list[dict]]: ``img_dir`` exists (when it does not, the
        infos are not checked one by one) and the infos whose file is
        missing.
    """
    if img_dir and not osp.isdir(img_dir):
        return False, list(infos)
    return True, [info for info in infos if not osp.isfile(info['img_path'])]


def decoded_size_problem(img_shape: Sequence[int], width: int,
                         height: int) -> Optional[str]:
    """Rule 5: why a decoded image does not fit its record, or ``None``.

    Args:
        img_shape (Sequence[int]): ``(H, W, ...)`` of the decoded image.
        width (int): the recorded width.
        height (int): the recorded height.

    Returns:
        str | None: a phrase that completes "image PATH ...", e.g.
        ``'is 128x120 (W x H) when decoded but 128x128 in its record'``.
    """
    decoded_h, decoded_w = int(img_shape[0]), int(img_shape[1])
    if (decoded_h, decoded_w) == (height, width):
        return None
    return (f'is {decoded_w}x{decoded_h} (W x H) when decoded but '
            f'{width}x{height} in its record')
