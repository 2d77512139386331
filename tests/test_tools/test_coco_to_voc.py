"""COCO -> VOC: the VOC <-> COCO class-name map, the json converter and the
test config on a tiny synthetic VOC-format json."""
import json
import os.path as osp

import numpy as np
import pytest
import pycocotools.mask as mask_utils
import torch
from mmengine.config import Config
from mmengine.registry import init_default_scope

import mmdet_maskdiff  # noqa: F401
from mmdet.registry import DATASETS, METRICS
from mmdet_maskdiff.datasets.class_splits import (COCO_NOVEL_CLASSES,
                                                  VOC_TO_COCO,
                                                  coco_name_of_voc_class)
from _tool_helpers import REPO, describe, run_tool, run_tool_here

VOC_CLASSES = ('aeroplane', 'bicycle', 'bird', 'boat', 'bottle', 'bus', 'car',
               'cat', 'chair', 'cow', 'diningtable', 'dog', 'horse',
               'motorbike', 'person', 'pottedplant', 'sheep', 'sofa', 'train',
               'tvmonitor')
CONFIG = osp.join(REPO, 'configs', 'maskdiff', 'coco_novel_1shot_voc-test.py')
#: (image id, VOC class, x, y, w, h) of the tiny set's instances
INSTANCES = [(1, 'sofa', 4, 6, 20, 12), (1, 'aeroplane', 30, 30, 24, 20),
             (2, 'tvmonitor', 10, 8, 30, 30)]


def test_map_covers_the_20_voc_classes_once():
    assert sorted(VOC_TO_COCO) == sorted(VOC_CLASSES)
    assert sorted(VOC_TO_COCO.values()) == sorted(COCO_NOVEL_CLASSES)
    assert coco_name_of_voc_class('sofa') == 'couch'
    assert coco_name_of_voc_class('tvmonitor') == 'tv'
    assert coco_name_of_voc_class('couch') == 'couch'  # already converted


def test_class_without_coco_name_is_one_line():
    with pytest.raises(ValueError) as info:
        coco_name_of_voc_class('truck', 'x.json')
    message = str(info.value)
    assert '\n' not in message
    assert message.startswith("VOC class 'truck' of x.json has no COCO name")


def write_voc_json(path, extra_category=None):
    categories = [dict(id=i + 1, name=n) for i, n in enumerate(VOC_CLASSES)]
    if extra_category:
        categories.append(dict(id=99, name=extra_category))
    annotations = []
    for ann_id, (img, name, x, y, w, h) in enumerate(INSTANCES, 1):
        annotations.append(
            dict(id=ann_id, image_id=img, category_id=VOC_CLASSES.index(name) +
                 1, bbox=[x, y, w, h], area=w * h, iscrowd=0,
                 segmentation=[[x, y, x + w, y, x + w, y + h, x, y + h]]))
    data = dict(
        images=[dict(id=i, file_name=f'{i:06d}.jpg', width=64, height=64)
                for i in (1, 2)],
        annotations=annotations, categories=categories)
    with open(path, 'w') as f:
        json.dump(data, f)


def test_converter_rejects_a_class_without_coco_name(tmp_path):
    src = str(tmp_path / 'voc.json')
    write_voc_json(src, extra_category='truck')
    # in-process; the converter's command line runs in the next test
    proc = run_tool_here('dataset_converters/voc_json_to_coco_names.py',
                         [src, str(tmp_path / 'out.json')],
                         cwd=str(tmp_path))
    assert proc.returncode == 2, describe(proc)
    assert proc.stderr.strip().splitlines() == [
        f"error: VOC class 'truck' of {src} has no COCO name; the VOC classes "
        f'are {", ".join(sorted(VOC_CLASSES))}']


def test_voc_test_config_on_a_tiny_voc_json(tmp_path):
    """Convert, load with the COCO->VOC config's test set and metric, and
    score the ground truth itself as predictions: novel AP = 100."""
    src = str(tmp_path / 'annotations' / 'voc.json')
    (tmp_path / 'annotations').mkdir()
    write_voc_json(src)
    proc = run_tool('dataset_converters/voc_json_to_coco_names.py',
                    [src, str(tmp_path / 'annotations' / 'coco-names.json')],
                    cwd=str(tmp_path))
    assert proc.returncode == 0, describe(proc)
    assert 'sofa -> couch' in proc.stdout

    cfg = Config.fromfile(CONFIG)
    test_set = cfg.test_dataloader.dataset
    assert test_set.ann_file == cfg.test_evaluator.ann_file[len(
        test_set.data_root):]
    init_default_scope('mmdet')
    dataset = DATASETS.build(
        dict(test_set, data_root=str(tmp_path) + '/',
             ann_file='annotations/coco-names.json', pipeline=[]))
    dataset.full_init()
    infos = [dataset.get_data_info(i) for i in range(len(dataset))]
    classes = dataset.metainfo['classes']
    assert classes == COCO_NOVEL_CLASSES  # the novel model's label space
    labels = {(info['img_id'], classes[inst['bbox_label']])
              for info in infos for inst in info['instances']}
    assert labels == {(1, 'couch'), (1, 'airplane'), (2, 'tv')}

    metric = METRICS.build(
        dict(cfg.test_evaluator,
             ann_file=str(tmp_path / 'annotations' / 'coco-names.json')))
    metric.dataset_meta = dataset.metainfo
    for info in infos:
        boxes = torch.tensor([i['bbox'] for i in info['instances']],
                             dtype=torch.float32)
        masks = np.stack([  # the ground-truth polygons, rasterised
            mask_utils.decode(mask_utils.merge(
                mask_utils.frPyObjects(i['mask'], 64, 64))).astype(bool)
            for i in info['instances']])
        metric.process({}, [dict(
            img_id=info['img_id'], ori_shape=(64, 64),
            pred_instances=dict(
                bboxes=boxes, scores=torch.ones(len(boxes)),
                labels=torch.tensor([i['bbox_label']
                                     for i in info['instances']]),
                masks=torch.from_numpy(masks)))])
    results = metric.compute_metrics(metric.results)
    assert results['novel/bbox_mAP'] == pytest.approx(1.0, abs=1e-3)
    assert results['novel/segm_mAP'] == pytest.approx(1.0, abs=1e-3)
    assert not any(key.startswith('base/') for key in results)
