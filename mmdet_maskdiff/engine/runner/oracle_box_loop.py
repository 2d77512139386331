"""Test loop with ground-truth boxes as detections (oracle-box evaluation).

Segm AP of a detector mixes two things: whether an object was found and
boxed well, and how good its mask is. MaskDiff's claim is about the second
(better masks than a point-estimate head, most visibly at high IoU; Le et
al., AAAI 2024, Sec. 4). Handing the mask head the test images' ground-truth
boxes and labels, with score 1, removes the detector from the measurement:
every ground-truth instance gets exactly one mask, so AP and mask IoU measure
the mask head alone, and two mask heads on one detector compare directly.

Besides the pasted masks and their IoU, the loop keeps each head's soft
per-RoI prediction: whether the head's uncertainty marks where its mask is
wrong is measured on the RoI's own m x m grid
(:func:`roi_uncertainty_and_error`, :class:`MaskUncertaintyMetric`).
"""
import inspect
from contextlib import contextmanager, nullcontext
from typing import Dict, Iterator, List, Optional, Sequence, Tuple, Union

import numpy as np
import torch
from mmengine.model import is_model_wrapper
from mmengine.runner import TestLoop
from mmengine.runner.amp import autocast
from mmengine.structures import InstanceData
from torch import Tensor, nn
from torch.utils.data import DataLoader

from mmdet.registry import LOOPS
from mmdet.structures import SampleList
from mmdet.structures.mask import BitmapMasks
from mmdet_maskdiff.datasets.instance_validity import decode_mask

#: what the loop keeps of one test image: boxes (n, 4) x1y1x2y2 and labels
#: (n, ) at the original size, the COCO segmentations, height, width
ImageTruth = Dict[str, object]
#: a COCO segmentation: polygons, RLE (``counts`` list) or compressed RLE
Segmentation = Union[list, dict]


def ground_truth_by_image(dataset) -> Dict[int, ImageTruth]:
    """Ground-truth instances of every image of an mmdet dataset.

    Instances with ``ignore_flag`` (COCO crowds) are left out, as COCO
    evaluation ignores them.

    Args:
        dataset: An mmdet dataset (``get_data_info`` items with ``img_id``,
            ``height``, ``width`` and ``instances``).

    Returns:
        dict: ``img_id`` -> dict(bboxes=(n, 4) float32 array in original
        pixels, labels=(n, ) int64 array, masks=list of COCO segmentations or
        None, height=int, width=int).

    Raises:
        ValueError: an item without ``img_id`` or ``instances``.
    """
    truth: Dict[int, ImageTruth] = {}
    for index in range(len(dataset)):
        info = dataset.get_data_info(index)
        if 'img_id' not in info or 'instances' not in info:
            raise ValueError(
                f'{type(dataset).__name__} item {index} has no img_id / '
                'instances: oracle-box evaluation needs a detection dataset '
                'with annotations (test_mode datasets keep them)')
        kept = [i for i in info['instances'] if not i.get('ignore_flag', 0)]
        truth[info['img_id']] = dict(
            bboxes=np.array([i['bbox'] for i in kept],
                            np.float32).reshape(-1, 4),
            labels=np.array([i['bbox_label'] for i in kept], np.int64),
            masks=[i.get('mask') for i in kept],
            height=int(info['height']),
            width=int(info['width']))
    return truth


def decode_gt_masks(segmentations: Sequence[Optional[Segmentation]],
                    height: int, width: int) -> List[Optional[Tensor]]:
    """Decode COCO segmentations into bool masks at the original size.

    Args:
        segmentations (Sequence): n COCO segmentations (polygons, RLE,
            compressed RLE) or ``None``.
        height (int): Original image height.
        width (int): Original image width.

    Returns:
        list: n (height, width) bool tensors (``None`` stays ``None``).
    """
    return [
        None if segmentation is None else torch.from_numpy(
            decode_mask(segmentation, height, width)).bool()
        for segmentation in segmentations
    ]


def mask_ious(pred_masks: Tensor, gt_masks: Sequence[Optional[Tensor]],
              height: int, width: int) -> Tensor:
    """IoU of each predicted mask with its own ground-truth mask.

    Args:
        pred_masks (Tensor): (n, height, width) bool.
        gt_masks (Sequence): n (height, width) bool masks
            (:func:`decode_gt_masks`); ``None`` gives NaN.
        height (int): Original image height.
        width (int): Original image width.

    Returns:
        Tensor: (n, ) float32 IoU in [0, 1] (NaN where no mask is known or
        both masks are empty).
    """
    ious = torch.full((len(gt_masks), ), float('nan'))
    if len(gt_masks) and tuple(pred_masks.shape[1:]) != (height, width):
        raise ValueError(f'predicted masks of shape {tuple(pred_masks.shape)}'
                         f' are not at the original size {(height, width)}')
    for i, gt in enumerate(gt_masks):
        if gt is None:
            continue
        pred = pred_masks[i].cpu().bool()
        union = int((pred | gt).sum())
        ious[i] = int((pred & gt).sum()) / union if union else float('nan')
    return ious


#: what :func:`roi_probabilities` records of one image: per-RoI foreground
#: probabilities (n, m, m) float32 and the binarisation threshold
RoIProbabilities = Tuple[Tensor, float]


@contextmanager
def roi_probabilities(
        mask_head: nn.Module) -> Iterator[Dict[object, RoIProbabilities]]:
    """Record the per-RoI foreground probabilities that a mask head pastes.

    The mask heads of the package paste through FCNMaskHead's
    ``_predict_by_feat_single`` (FCNMaskHead itself; DiffusionMaskHead
    reuses it, and so does a head that pastes with its
    ``predict_by_feat``): it gets the (n, C, m, m) map of one
    image, applies the sigmoid unless ``activate_map`` (FCN passes logits,
    the diffusion head the fraction of foreground samples), takes the
    label's channel when C > 1 (class-specific FCN), resizes into the box
    and thresholds at ``rcnn_test_cfg.mask_thr_binary``. Inside this
    context that method of ``mask_head`` also records the probabilities
    just before the resize, so every head's soft output is read where it is
    pasted, without a change to the heads. A head that pastes another way
    records nothing.

    Args:
        mask_head (nn.Module): The RoI head's mask head.

    Yields:
        dict: ``img_id`` (of the image meta) -> (probabilities (n, m, m)
        float32, ``mask_thr_binary``), filled as the head pastes.
    """
    recorded: Dict[object, RoIProbabilities] = {}
    paste = getattr(mask_head, '_predict_by_feat_single', None)
    if paste is None:
        yield recorded
        return
    signature = inspect.signature(paste)

    def recording_paste(*args, **kwargs):
        call = signature.bind(*args, **kwargs)
        call.apply_defaults()
        named = call.arguments
        probs = named['mask_preds']
        if not named['activate_map']:
            probs = probs.sigmoid()
        labels = named['labels']
        probs = probs[:, 0] if probs.shape[1] == 1 else probs[
            torch.arange(len(labels), device=labels.device), labels]
        recorded[named['img_meta'].get('img_id')] = (
            probs.detach().float(),
            float(named['rcnn_test_cfg'].mask_thr_binary))
        return paste(*args, **kwargs)

    shadowed = '_predict_by_feat_single' in vars(mask_head)
    mask_head._predict_by_feat_single = recording_paste
    try:
        yield recorded
    finally:
        if shadowed:
            mask_head._predict_by_feat_single = paste
        else:
            del mask_head._predict_by_feat_single


def roi_uncertainty_and_error(probs: Tensor, threshold: float,
                              gt_masks: Sequence[Optional[Tensor]],
                              bboxes: np.ndarray) -> Tuple[Tensor, Tensor]:
    """Per-pixel uncertainty and error of n RoIs on their m x m grid.

    The frame is the RoI grid the head predicts on, not the pasted image:
    the ground-truth mask is cropped to the box and resized to m x m as
    mmdet's mask targets are (``BitmapMasks.crop_and_resize``: RoIAlign,
    then >= 0.5), so a pixel is one cell of the head's own output and the
    error is that of the thresholded output before pasting (pasting only
    resamples it). Every head is measured on its own grid (28 x 28 for FCN,
    ``mask_size`` for MaskDiff); AUROC and rank correlation do not depend
    on the number of pixels. The image frame would cost H x W per instance
    (a COCO image: ~300k pixels, against 784 or 4096 here).

    Args:
        probs (Tensor): (n, m, m) foreground probabilities p
            (:func:`roi_probabilities`).
        threshold (float): ``mask_thr_binary``: a pixel is foreground where
            p >= threshold, as pasted.
        gt_masks (Sequence): n (H, W) bool masks at the original size
            (:func:`decode_gt_masks`), or ``None`` (error left False).
        bboxes (np.ndarray): (n, 4) x1y1x2y2 boxes at the original size.

    Returns:
        tuple[Tensor, Tensor]: ``uncertainty`` p(1 - p) (n, m, m) float32
        (for MaskDiff the variance of its binary samples) and ``error``
        (n, m, m) bool, the thresholded p != ground truth.
    """
    probs = probs.float().cpu()
    size = probs.shape[-1]
    error = torch.zeros(probs.shape, dtype=torch.bool)
    for i, gt in enumerate(gt_masks):
        if gt is None:
            continue
        target = BitmapMasks(gt[None].numpy(), *gt.shape).crop_and_resize(
            bboxes[i:i + 1], (size, size), np.zeros(1, np.int64)).masks[0]
        error[i] = (probs[i] >= threshold) != torch.from_numpy(target)
    return probs * (1 - probs), error


def oracle_detections(truth: ImageTruth, img_meta: dict,
                      device: torch.device) -> InstanceData:
    """The ground truth of one image as detections in network-input pixels.

    Args:
        truth (dict): One value of :func:`ground_truth_by_image`.
        img_meta (dict): The image's meta information (``scale_factor``
            (w, h) of the test-time resize; ``flip`` must be off).
        device (torch.device): Where the tensors go.

    Returns:
        InstanceData: ``bboxes`` (n, 4), ``labels`` (n, ), ``scores`` (n, )
        all 1.
    """
    if img_meta.get('flip', False):
        raise ValueError('oracle-box evaluation does not support test-time '
                         'flips (RandomFlip in the test pipeline, --tta)')
    scale = np.array(img_meta.get('scale_factor', (1., 1.)), np.float32)
    bboxes = truth['bboxes'] * np.tile(scale, 2)
    return InstanceData(
        bboxes=torch.from_numpy(bboxes).to(device),
        labels=torch.from_numpy(truth['labels']).to(device),
        scores=torch.ones(len(bboxes), device=device))


def predict_on_ground_truth(model: nn.Module, data_batch: dict,
                            truth: Dict[int, ImageTruth]) -> SampleList:
    """Masks for the ground-truth boxes of a test batch.

    The batch goes through the detector's data preprocessor, backbone and
    neck; the RPN and the box head are skipped; ``roi_head.predict_mask``
    (the mask head's own test path: RoI features or image crops, sampling for
    a diffusion head, pasting at the original size, thresholding) gets the
    ground-truth boxes and labels with score 1.

    Args:
        model (nn.Module): A two-stage detector with a mask head (possibly
            wrapped by DDP).
        data_batch (dict): A batch from the test dataloader.
        truth (dict): :func:`ground_truth_by_image` of the test dataset.

    Returns:
        list[DetDataSample]: With ``pred_instances`` (``bboxes``, ``labels``,
        ``scores``, ``masks`` and ``gt_mask_iou`` (n, ), the IoU of each mask
        with its ground-truth mask; NaN where the annotation has none). When
        the head pastes through FCNMaskHead's per-RoI path (all heads of the
        package) and the image has instances, also ``mask_uncertainty``
        (n, m, m) p(1 - p) and ``roi_error`` (n, m, m) bool on the RoI grid
        (:func:`roi_uncertainty_and_error`); a head's own
        ``mask_uncertainty`` (MaskDiff's variance over samples) is the same
        p(1 - p) of the probabilities it pastes.

    Raises:
        ValueError: the model has no mask branch, or an image of the batch
            is not in ``truth``.
    """
    detector = model.module if is_model_wrapper(model) else model
    roi_head = getattr(detector, 'roi_head', None)
    if roi_head is None or not getattr(roi_head, 'with_mask', False):
        raise ValueError(
            'oracle-box evaluation needs a two-stage detector with a mask '
            f'head (model.roi_head.mask_head); got {type(detector).__name__}')
    data = detector.data_preprocessor(data_batch, False)
    inputs, samples = data['inputs'], data['data_samples']
    metas = [sample.metainfo for sample in samples]
    detections = []
    for meta in metas:
        if meta.get('img_id') not in truth:
            raise ValueError(
                f"test image {meta.get('img_id')!r} is not in the "
                'test dataset read for the ground truth')
        detections.append(
            oracle_detections(truth[meta['img_id']], meta, inputs.device))
    feats = detector.extract_feat(inputs)
    context = getattr(detector, 'query_context', None)
    with context(inputs, samples) if context else nullcontext(), \
            roi_probabilities(roi_head.mask_head) as probabilities:
        results = roi_head.predict_mask(feats, metas, detections, rescale=True)
    for meta, result in zip(metas, results):
        image = truth[meta['img_id']]
        gt_masks = decode_gt_masks(image['masks'], image['height'],
                                   image['width'])
        result.gt_mask_iou = mask_ious(result.masks, gt_masks,
                                       image['height'],
                                       image['width']).to(inputs.device)
        if meta['img_id'] in probabilities:
            probs, threshold = probabilities[meta['img_id']]
            uncertainty, error = roi_uncertainty_and_error(
                probs, threshold, gt_masks, image['bboxes'])
            result.mask_uncertainty = uncertainty.to(inputs.device)
            result.roi_error = error.to(inputs.device)
    return detector.add_pred_to_datasample(samples, results)


@LOOPS.register_module()
class OracleBoxTestLoop(TestLoop):
    """mmengine's ``TestLoop`` with the ground-truth boxes as detections.

    Hooks, checkpoint loading, data and evaluator are the run's own; only
    the prediction differs (:func:`predict_on_ground_truth`): the mask head
    gets every test image's ground-truth boxes and labels (score 1), so segm
    AP measures the mask head alone. Predictions carry ``gt_mask_iou`` for
    :class:`~mmdet_maskdiff.evaluation.MaskIoUMetric`. Any config can switch
    to it::

        python tools/test.py CONFIG CKPT --cfg-options \\
            test_cfg.type=OracleBoxTestLoop

    ``tools/analysis_tools/mask_quality.py`` does that and adds the high-IoU
    AP and mean mask IoU tables.

    Args:
        runner (Runner): The runner.
        dataloader (DataLoader | dict): The test dataloader.
        evaluator (Evaluator | dict | list): The evaluator.
        fp16 (bool): Run the model under autocast. Defaults to False.
    """

    def __init__(self,
                 runner,
                 dataloader: Union[DataLoader, Dict],
                 evaluator: Union[object, Dict, List],
                 fp16: bool = False) -> None:
        super().__init__(runner, dataloader, evaluator, fp16)
        self.truth: Optional[Dict[int, ImageTruth]] = None

    def run(self) -> dict:
        """Read the ground truth, then test."""
        self.truth = ground_truth_by_image(self.dataloader.dataset)
        return super().run()

    @torch.no_grad()
    def run_iter(self, idx: int, data_batch: dict) -> None:
        """Predict masks on the ground-truth boxes of one batch.

        Args:
            idx (int): Batch index.
            data_batch (dict): A batch from the dataloader.
        """
        self.runner.call_hook(
            'before_test_iter', batch_idx=idx, data_batch=data_batch)
        with autocast(enabled=self.fp16):
            outputs = predict_on_ground_truth(self.runner.model, data_batch,
                                              self.truth)
        self.evaluator.process(data_samples=outputs, data_batch=data_batch)
        self.runner.call_hook(
            'after_test_iter',
            batch_idx=idx,
            data_batch=data_batch,
            outputs=outputs)
