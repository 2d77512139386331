"""OracleBoxTestLoop + MaskIoUMetric + MaskUncertaintyMetric (oracle-box
mask quality) through mmengine's Runner on the synthetic test set: a perfect
mask head scores 100, a head predicting full-box masks scores what
pycocotools gives box masks, both mask heads of the package run, the soft
per-RoI probabilities behind the uncertainty are the ones each head pastes,
and edge cases (an image without ground truth, a model without mask head)
are handled."""
import contextlib
import copy
import io
import json
import os
import os.path as osp

import numpy as np
import pytest
import torch
from mmengine.config import Config
from mmengine.dataset import pseudo_collate
from mmengine.hooks import Hook
from mmengine.registry import init_default_scope
from mmengine.runner import Runner
from pycocotools import mask as mask_util
from pycocotools.coco import COCO
from pycocotools.cocoeval import COCOeval

import mmdet_maskdiff  # noqa: F401
from mmdet.models.roi_heads.mask_heads import FCNMaskHead
from mmdet.registry import DATASETS, HOOKS, MODELS
from mmdet.structures.bbox import bbox2roi
from mmdet_maskdiff.datasets.synthetic_class_splits import (
    SYNTHETIC_CLASS_SPLITS, SYNTHETIC_CLASSES)
from mmdet_maskdiff.datasets.synthetic_fsis import (make_synthetic_fsis,
                                                    synthetic_paths)
from mmdet_maskdiff.engine.runner import (ground_truth_by_image,
                                          predict_on_ground_truth)
from mmdet_maskdiff.engine.runner.oracle_box_loop import oracle_detections
from mmdet_maskdiff.models.roi_heads import FewShotRoIHead
from mmdet_maskdiff.evaluation.mask_quality import (MASK_QUALITY_ITEMS,
                                                    apply_mask_quality,
                                                    summarize_mask_quality)
from mmdet_maskdiff.testing.small_scale import cpu_scale_options

REPO = osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__))))
TINY_CONFIG = osp.join(REPO, 'tests', 'data', 'tiny_mask_rcnn.py')
SPLITS = dict(base=SYNTHETIC_CLASS_SPLITS['base'],
              novel=SYNTHETIC_CLASS_SPLITS['novel'])


@MODELS.register_module(force=True)
class PerfectMaskHeadForTest(FCNMaskHead):
    """Pastes the ground-truth mask of the annotation whose box is the RoI:
    a perfect mask head (reads ``ann_file``, set by the test)."""
    ann_file = None

    def predict_by_feat(self,
                        mask_preds,
                        results_list,
                        batch_img_metas,
                        rcnn_test_cfg,
                        rescale=False,
                        activate_map=False):
        assert rescale
        with contextlib.redirect_stdout(io.StringIO()):
            coco = COCO(self.ann_file)
        for meta, results in zip(batch_img_metas, results_list):
            scale = results.bboxes.new_tensor(meta['scale_factor']).repeat(2)
            boxes = results.bboxes / scale
            anns = coco.imgToAnns[meta['img_id']]
            masks = []
            for box in boxes.tolist():
                match = [
                    a for a in anns if np.allclose(
                        box, [
                            a['bbox'][0], a['bbox'][1],
                            a['bbox'][0] + a['bbox'][2],
                            a['bbox'][1] + a['bbox'][3]
                        ],
                        atol=1e-3)
                ]
                assert match, f'no ground truth with the box {box}'
                masks.append(coco.annToMask(match[0]))
            h, w = meta['ori_shape']
            results.masks = torch.from_numpy(
                np.stack(masks) if masks else np.zeros((0, h, w))).bool()
            results.bboxes = boxes
        return results_list


@HOOKS.register_module(force=True)
class RecordOutputsForTest(Hook):
    """Keeps every test output (in ``RecordOutputsForTest.outputs``)."""
    outputs = []

    def after_test_iter(self, runner, batch_idx, data_batch, outputs):
        RecordOutputsForTest.outputs.extend(outputs)


@pytest.fixture(scope='module')
def tiny_cfg(synthetic_data):
    """tests/data/tiny_mask_rcnn.py on the session's synthetic data, with a
    FewShotCocoMetric (base / novel / all)."""
    init_default_scope('mmdet')
    old = os.environ.get('MASKDIFF_SYNTHETIC_ROOT')
    os.environ['MASKDIFF_SYNTHETIC_ROOT'] = synthetic_data['root']
    try:
        cfg = Config.fromfile(TINY_CONFIG)
    finally:
        if old is None:
            del os.environ['MASKDIFF_SYNTHETIC_ROOT']
        else:
            os.environ['MASKDIFF_SYNTHETIC_ROOT'] = old
    cfg.test_evaluator = dict(
        type='FewShotCocoMetric',
        ann_file=synthetic_data['test_ann'],
        metric=['bbox', 'segm'],
        class_splits=SPLITS)
    cfg.test_dataloader.batch_size = 3  # 8 images: batches of 3, 3, 2
    cfg.default_hooks.logger.interval = 100
    return cfg


def _oracle_run(cfg, model, tmp_path):
    """Save ``model``, then run the oracle-box test of ``cfg`` on it."""
    cfg = copy.deepcopy(cfg)
    ckpt = str(tmp_path / 'model.pth')
    torch.save(dict(state_dict=model.state_dict(), meta=dict()), ckpt)
    cfg.load_from = ckpt
    cfg.work_dir = str(tmp_path / 'work_dir')
    apply_mask_quality(cfg)
    return Runner.from_cfg(cfg).test()


def _reference(ann_file, det_mask, names, iou_thrs=None):
    """pycocotools alone: AP of one mask per ground-truth instance
    (``det_mask(ann)``, score 1) for the classes ``names``."""
    with contextlib.redirect_stdout(io.StringIO()):
        gt = COCO(ann_file)
        dets = []
        for img_id in gt.getImgIds():
            for ann in gt.imgToAnns[img_id]:
                rle = mask_util.encode(np.asfortranarray(det_mask(ann, gt)))
                dets.append(
                    dict(
                        image_id=img_id,
                        category_id=ann['category_id'],
                        segmentation=rle,
                        score=1.0))
        ev = COCOeval(gt, gt.loadRes(dets), 'segm')
        ev.params.catIds = [
            c['id'] for c in gt.dataset['categories'] if c['name'] in names
        ]
        if iou_thrs is not None:
            ev.params.iouThrs = np.array(iou_thrs)
        ev.evaluate()
        ev.accumulate()
        ev.summarize()
    return ev.stats[0]


def _box_mask(ann, gt):
    img = gt.imgs[ann['image_id']]
    mask = np.zeros((img['height'], img['width']), np.uint8)
    x, y, w, h = ann['bbox']
    mask[y:y + h, x:x + w] = 1
    return mask


def test_perfect_mask_head_scores_100(tiny_cfg, synthetic_data, tmp_path):
    PerfectMaskHeadForTest.ann_file = synthetic_data['test_ann']
    cfg = copy.deepcopy(tiny_cfg)
    cfg.model.roi_head.mask_head.type = 'PerfectMaskHeadForTest'
    torch.manual_seed(0)
    metrics = _oracle_run(cfg, MODELS.build(cfg.model), tmp_path)
    for split in ('base', 'novel', 'all'):
        for item in MASK_QUALITY_ITEMS:
            assert metrics[f'coco/{split}/segm_{item}'] == 1.0, (split, item)
        assert metrics[f'oracle/{split}/mIoU'] == 1.0
    assert not any('bbox' in key for key in metrics)  # segm only
    summary = summarize_mask_quality(metrics)
    assert list(summary) == ['base', 'novel', 'all']
    assert summary['novel'] == dict(
        segm_mAP=100.0,
        segm_mAP_50=100.0,
        segm_mAP_75=100.0,
        segm_mAP_85=100.0,
        segm_mAP_95=100.0,
        mIoU=100.0)


@pytest.mark.parametrize('side', [128, 200])
def test_full_box_masks_score_the_box_mask_ap(tiny_cfg, synthetic_data,
                                              tmp_path, side):
    """A real FCNMaskHead whose logits are +10 everywhere pastes each box
    full: AP must equal pycocotools' AP of box masks, and the mean IoU the
    mean of area / box area (a mask lies inside its tight box). At 200 px
    the boxes go through the test-time resize and back."""
    cfg = copy.deepcopy(tiny_cfg)
    cfg.test_dataloader.dataset.pipeline[1].scale = (side, side)
    torch.manual_seed(0)
    model = MODELS.build(cfg.model)
    logits = model.roi_head.mask_head.conv_logits
    torch.nn.init.zeros_(logits.weight)
    torch.nn.init.constant_(logits.bias, 10.)
    metrics = _oracle_run(cfg, model, tmp_path)

    ann_file = synthetic_data['test_ann']
    with open(ann_file) as f:
        data = json.load(f)
    names = {c['id']: c['name'] for c in data['categories']}
    for split, classes in dict(all=SYNTHETIC_CLASSES, **SPLITS).items():
        ref = {
            'mAP': _reference(ann_file, _box_mask, classes),
            'mAP_50': _reference(ann_file, _box_mask, classes, [0.5]),
            'mAP_75': _reference(ann_file, _box_mask, classes, [0.75]),
            'mAP_85': _reference(ann_file, _box_mask, classes, [0.85]),
            'mAP_95': _reference(ann_file, _box_mask, classes, [0.95]),
        }
        for item, value in ref.items():
            assert metrics[f'coco/{split}/segm_{item}'] == pytest.approx(
                round(value, 3), abs=1e-9), (split, item)
        fill = [
            a['area'] / (a['bbox'][2] * a['bbox'][3])
            for a in data['annotations']
            if names[a['category_id']] in classes
        ]
        assert metrics[f'oracle/{split}/mIoU'] == pytest.approx(
            round(float(np.mean(fill)), 3), abs=1e-9)
        # on the RoI grid every cell is predicted foreground: the wrong
        # cells are the box's background, 1 - fill up to the grid's
        # resampling of the outline
        assert metrics[f'uncertainty/{split}/pixel_error'] == pytest.approx(
            1 - float(np.mean(fill)), abs=0.01)
        # sigmoid(10)(1 - sigmoid(10)) = 4.5e-5 at every pixel: a constant
        # score ranks nothing, so there is no AUROC and no rank correlation
        assert metrics[f'uncertainty/{split}/mean_uncertainty'] == 0.0
        assert f'uncertainty/{split}/error_auroc' not in metrics
        assert f'uncertainty/{split}/iou_spearman' not in metrics
    # box masks: good at IoU 0.5, poor at 0.95, so the numbers discriminate
    assert metrics['coco/all/segm_mAP_50'] > 0.5
    assert metrics['coco/all/segm_mAP_95'] < 0.2


def test_fcn_probabilities_are_the_sigmoid_of_its_label_channel(tiny_cfg):
    """The loop's ``mask_uncertainty`` for a class-specific FCNMaskHead is
    p(1 - p) of the sigmoid of the logits of each instance's own class,
    computed here from the head's forward pass; the recorder is gone
    afterwards."""
    cfg = copy.deepcopy(tiny_cfg)
    dataset = DATASETS.build(cfg.test_dataloader.dataset)
    truth = ground_truth_by_image(dataset)
    batch = pseudo_collate([dataset[0], dataset[1]])
    torch.manual_seed(0)
    model = MODELS.build(cfg.model).eval()
    assert not model.roi_head.mask_head.class_agnostic
    with torch.no_grad():
        samples = predict_on_ground_truth(model, batch, truth)
        data = model.data_preprocessor(batch, False)
        detections = [
            oracle_detections(truth[s.img_id], s.metainfo, 'cpu')
            for s in data['data_samples']
        ]
        logits = model.roi_head._mask_forward(
            model.extract_feat(data['inputs']),
            bbox2roi([d.bboxes for d in detections]))['mask_preds']
    labels = torch.cat([d.labels for d in detections])
    assert logits.shape[1] == 8 and len(set(labels.tolist())) > 1
    probs = logits.sigmoid()[torch.arange(len(labels)), labels]
    got = torch.cat([s.pred_instances.mask_uncertainty for s in samples])
    assert torch.allclose(got, probs * (1 - probs), atol=1e-7)
    errors = torch.cat([s.pred_instances.roi_error for s in samples])
    assert errors.shape == probs.shape and errors.dtype == torch.bool
    assert '_predict_by_feat_single' not in vars(model.roi_head.mask_head)


def _tiny_maskdiff_cfg(data_root, **options):
    """configs/maskdiff/coco_5shot.py at CPU scale on ``data_root``, shrunk
    further (16x16 masks, T = 100, a 2-level UNet), plus ``options``."""
    init_default_scope('mmdet')
    cfg = Config.fromfile(osp.join(REPO, 'configs', 'maskdiff',
                                   'coco_5shot.py'))
    cfg.merge_from_dict(cpu_scale_options(cfg, data_root, load_from=None))
    cfg.merge_from_dict({
        'model.roi_head.mask_head.mask_size': 16,
        'model.roi_head.mask_head.num_timesteps': 100,
        'model.roi_head.mask_head.denoiser.channel_mults': (1, 2),
        'model.roi_head.mask_head.denoiser.num_res_blocks': 1,
        'model.roi_head.mask_head.denoiser.attention_channels': (32, ),
        'default_hooks.logger.interval': 100,
        **options
    })
    cfg.custom_hooks.append(dict(type='RecordOutputsForTest'))
    return cfg


def _check_oracle_outputs(metrics, ann_file, num_classes):
    """One mask per ground-truth instance, its label, score 1; metrics
    filled for base / novel / all."""
    with contextlib.redirect_stdout(io.StringIO()):
        gt = COCO(ann_file)
    assert len(gt.dataset['categories']) == num_classes
    outputs = RecordOutputsForTest.outputs
    assert len(outputs) == len(gt.getImgIds())
    for sample in outputs:
        pred = sample.pred_instances
        anns = gt.imgToAnns[sample.img_id]
        assert pred.labels.tolist() == [a['category_id'] - 1 for a in anns]
        assert pred.scores.tolist() == [1.0] * len(anns)
        assert pred.masks.shape == (len(anns), 128, 128)
        assert pred.mask_uncertainty.shape == (len(anns), 16, 16)
        assert ((pred.gt_mask_iou >= 0) & (pred.gt_mask_iou <= 1)).all()
    for split in ('base', 'novel', 'all'):
        for item in MASK_QUALITY_ITEMS:
            assert 0 <= metrics[f'coco/{split}/segm_{item}'] <= 1
        assert 0 <= metrics[f'oracle/{split}/mIoU'] <= 1


def test_diffusion_mask_head_on_ground_truth(synthetic_data, tmp_path):
    """MaskDiff's stage-2 config (SupportSetHook, DiffusionSamplerHook,
    MaskDiffRCNN) at a tiny size: every ground-truth instance gets one
    sampled mask with its label and score 1, and the metrics are filled;
    one binary sample per RoI has no spread, so the uncertainty metric
    gives no AUROC and no rank correlation."""
    cfg = _tiny_maskdiff_cfg(synthetic_data['root'])
    RecordOutputsForTest.outputs = []
    torch.manual_seed(0)
    metrics = _oracle_run(cfg, MODELS.build(cfg.model), tmp_path)
    _check_oracle_outputs(metrics, synthetic_data['test_ann'], 8)
    for split in ('base', 'novel', 'all'):
        assert metrics[f'uncertainty/{split}/mean_uncertainty'] == 0.0
        assert 0 <= metrics[f'uncertainty/{split}/pixel_error'] <= 1
        assert f'uncertainty/{split}/error_auroc' not in metrics
        assert f'uncertainty/{split}/iou_spearman' not in metrics


def _noise_dependent(model):
    """``model`` with random values in the denoiser's zero-initialised
    output layers (an untrained x0 network returns 0 whatever the noise, so
    its samples would all agree)."""
    with torch.no_grad():
        for param in model.roi_head.mask_head.denoiser.parameters():
            if not param.any():
                param.normal_(std=0.2)
    return model


def test_diffusion_uncertainty_is_the_variance_of_its_samples(
        synthetic_data, tmp_path, monkeypatch):
    """With 4 samples per RoI the loop's p(1 - p), from the probabilities
    the head pastes, is the head's own ``mask_uncertainty`` (the variance of
    its samples, k(4 - k) / 16), and the uncertainty metric is filled."""
    cfg = _tiny_maskdiff_cfg(
        synthetic_data['root'],
        **{'model.test_cfg.rcnn.diffusion_sampling.num_samples': 4})
    head_uncertainty = []
    predict_mask = FewShotRoIHead.predict_mask

    def spy(self, *args, **kwargs):
        results = predict_mask(self, *args, **kwargs)
        head_uncertainty.extend(r.mask_uncertainty.clone() for r in results)
        return results

    monkeypatch.setattr(FewShotRoIHead, 'predict_mask', spy)
    RecordOutputsForTest.outputs = []
    torch.manual_seed(0)
    metrics = _oracle_run(cfg, _noise_dependent(MODELS.build(cfg.model)),
                          tmp_path)
    _check_oracle_outputs(metrics, synthetic_data['test_ann'], 8)
    loop_uncertainty = torch.cat([
        s.pred_instances.mask_uncertainty
        for s in RecordOutputsForTest.outputs
    ])
    assert torch.equal(loop_uncertainty, torch.cat(head_uncertainty))
    counts = 4 * (1 - (1 - 4 * loop_uncertainty).clamp(min=0).sqrt()) / 2
    assert torch.allclose(counts, counts.round(), atol=1e-4)  # k(4 - k) / 16
    assert loop_uncertainty.max() > 0  # the samples differ somewhere
    for split in ('base', 'novel', 'all'):
        assert 0 < metrics[f'uncertainty/{split}/mean_uncertainty'] <= 0.25
        assert 0 <= metrics[f'uncertainty/{split}/error_auroc'] <= 1
        assert -1 <= metrics[f'uncertainty/{split}/iou_spearman'] <= 1


def test_hard_set_with_neck_features(tmp_path_factory, tmp_path):
    """The hard synthetic set through cpu_scale_options (12 classes, the
    'synthetic_hard' split) with region_source='both' (image crop + neck RoI
    features): the variant of issue 15's comparison runs end to end."""
    root = str(tmp_path_factory.mktemp('hard_fsis'))
    make_synthetic_fsis(
        root,
        num_train_images=30,
        num_test_images=4,
        shots=(5, ),
        seeds=(0, ),
        difficulty='hard')
    cfg = _tiny_maskdiff_cfg(
        root, **{'model.roi_head.mask_head.region_source': 'both'})
    assert cfg.model.roi_head.bbox_head.num_classes == 12
    assert cfg.test_dataloader.dataset.class_splits == 'synthetic_hard'
    RecordOutputsForTest.outputs = []
    torch.manual_seed(0)
    model = MODELS.build(cfg.model)
    assert model.roi_head.mask_head.uses_region_features
    metrics = _oracle_run(cfg, model, tmp_path)
    _check_oracle_outputs(metrics, synthetic_paths(root)['test_ann'], 12)


def test_image_without_ground_truth(tiny_cfg):
    """An image without annotations (COCO val has some) gets no detection,
    no mask and no IoU; the other images of the batch are unaffected."""
    cfg = copy.deepcopy(tiny_cfg)
    dataset = DATASETS.build(cfg.test_dataloader.dataset)
    truth = ground_truth_by_image(dataset)
    batch = pseudo_collate([dataset[0], dataset[1]])
    empty_id = dataset.get_data_info(0)['img_id']
    truth[empty_id] = dict(
        truth[empty_id],
        bboxes=np.zeros((0, 4), np.float32),
        labels=np.zeros(0, np.int64),
        masks=[])
    torch.manual_seed(0)
    model = MODELS.build(cfg.model).eval()
    with torch.no_grad():
        samples = predict_on_ground_truth(model, batch, truth)
    empty, full = samples[0].pred_instances, samples[1].pred_instances
    assert len(empty) == 0 and empty.masks.shape == (0, 128, 128)
    assert empty.gt_mask_iou.shape == (0, )
    other = truth[dataset.get_data_info(1)['img_id']]
    assert full.labels.tolist() == other['labels'].tolist()
    assert full.bboxes.numpy() == pytest.approx(other['bboxes'])
    with pytest.raises(ValueError, match='not in the test dataset'):
        predict_on_ground_truth(model, batch, {empty_id: truth[empty_id]})


def test_model_without_mask_head_is_refused(tiny_cfg):
    cfg = copy.deepcopy(tiny_cfg)
    cfg.model.roi_head.mask_head = None
    cfg.model.roi_head.mask_roi_extractor = None
    dataset = DATASETS.build(cfg.test_dataloader.dataset)
    model = MODELS.build(cfg.model).eval()
    with pytest.raises(ValueError, match='needs a two-stage detector with a '
                       'mask head'):
        predict_on_ground_truth(model, pseudo_collate([dataset[0]]),
                                ground_truth_by_image(dataset))
