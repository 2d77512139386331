"""Give the categories of a PASCAL VOC instance json (COCO format) their
COCO names, for the COCO -> VOC test.

The COCO -> VOC protocol (FGN, Fan et al. 2020; MTFA / iMTFA's
``LIKE_FGN_TEST_VOC``) evaluates a model trained on COCO on the VOC 2012 val
instance masks, given as a COCO-format json whose categories carry the VOC
names (``aeroplane``, ``diningtable``, ``motorbike``, ``pottedplant``,
``sofa``, ``tvmonitor``). ``FewShotCocoDataset`` and ``FewShotCocoMetric``
find categories by name, so this tool renames them once with
``mmdet_maskdiff.datasets.class_splits.VOC_TO_COCO``; ids, images and
annotations are kept::

    python tools/dataset_converters/voc_json_to_coco_names.py \\
        data/voc/annotations/voc_2012_val_instances.json \\
        data/voc/annotations/voc_2012_val_instances_coco-names.json

A category with no COCO name stops the tool with one line naming it.
"""
import argparse
import json
import os
import os.path as osp

from mmdet_maskdiff.datasets.class_splits import coco_name_of_voc_class
from mmdet_maskdiff.datasets.few_shot_splits import read_coco_json
from mmdet_maskdiff.utils import InputError, run_cli


def convert(src: str, dst: str) -> dict:
    """Write ``src`` with COCO category names to ``dst``.

    Returns:
        dict: VOC name -> COCO name of the categories that were renamed.

    Raises:
        InputError: a missing or malformed file, or a category that is not
            a VOC class.
    """
    try:
        data = read_coco_json(src)
        renamed = {}
        for category in data['categories']:
            name = coco_name_of_voc_class(category['name'], src)
            if name != category['name']:
                renamed[category['name']] = name
            category['name'] = name
    except (FileNotFoundError, ValueError) as exc:
        raise InputError(str(exc).splitlines()[0])
    os.makedirs(osp.dirname(osp.abspath(dst)), exist_ok=True)
    with open(dst, 'w') as f:
        json.dump(data, f)
    return renamed


def main() -> None:
    parser = argparse.ArgumentParser(
        description='Rename the VOC categories of a COCO-format json to '
        'their COCO names')
    parser.add_argument('src', help='VOC instances json (COCO format)')
    parser.add_argument('dst', help='output json')
    args = parser.parse_args()
    renamed = convert(args.src, args.dst)
    print(f'wrote {args.dst} (renamed: ' + (', '.join(
        f'{voc} -> {coco}' for voc, coco in renamed.items()) or 'none') + ')')


if __name__ == '__main__':
    run_cli(main)
