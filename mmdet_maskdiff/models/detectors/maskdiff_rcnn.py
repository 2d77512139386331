"""MaskDiff detector: a two-stage detector whose RoI head sees the query
images and can encode support crops."""
from contextlib import nullcontext
from typing import ContextManager, Sequence

from torch import Tensor, nn

from mmdet.models.detectors import TwoStageDetector
from mmdet.registry import MODELS
from mmdet.structures import SampleList
from mmdet.utils import ConfigType, OptConfigType, OptMultiConfig
from ..roi_heads.few_shot_roi_head import FewShotRoIHead
from ..roi_heads.support_encoder import QueryContext


@MODELS.register_module()
class MaskDiffRCNN(TwoStageDetector):
    """Mask R-CNN-style detector for MaskDiff (TFA detector + diffusion mask
    head).

    Compared with :class:`mmdet.models.MaskRCNN` it adds two things:

    * during ``loss``/``predict`` the RoI head gets a :class:`QueryContext`
      (normalised query images, image ids, and a way to run support crops
      through this detector's preprocessing, backbone and neck);
    * ``frozen_modules`` keeps named sub-modules fixed — parameters get
      ``requires_grad=False`` and their norm layers stay in eval mode — which
      is how the configs express TFA fine-tuning (only the last box layers
      train) and MaskDiff's second stage (the detector is fixed while the
      mask distribution model trains).

    Args:
        backbone, rpn_head, roi_head, train_cfg, test_cfg, neck,
        data_preprocessor, init_cfg: As in :class:`TwoStageDetector`.
        frozen_modules (Sequence[str]): Dotted names of sub-modules to freeze,
            e.g. ``('backbone', 'neck', 'rpn_head', 'roi_head.bbox_head')``.
            Defaults to ().
    """

    def __init__(self,
                 backbone: ConfigType,
                 rpn_head: ConfigType,
                 roi_head: ConfigType,
                 train_cfg: ConfigType,
                 test_cfg: ConfigType,
                 neck: OptConfigType = None,
                 data_preprocessor: OptConfigType = None,
                 frozen_modules: Sequence[str] = (),
                 init_cfg: OptMultiConfig = None) -> None:
        super().__init__(
            backbone=backbone,
            neck=neck,
            rpn_head=rpn_head,
            roi_head=roi_head,
            train_cfg=train_cfg,
            test_cfg=test_cfg,
            init_cfg=init_cfg,
            data_preprocessor=data_preprocessor)
        self.frozen_modules = tuple(frozen_modules)
        for name in self.frozen_modules:
            for param in self._submodule(name).parameters():
                param.requires_grad_(False)

    def _submodule(self, name: str) -> nn.Module:
        try:
            return self.get_submodule(name)
        except AttributeError:
            raise ValueError(
                f'frozen_modules: {type(self).__name__} has no sub-module '
                f'{name!r}') from None

    def train(self, mode: bool = True) -> 'MaskDiffRCNN':
        """Set the mode; frozen sub-modules always stay in eval mode."""
        super().train(mode)
        for name in self.frozen_modules:
            self._submodule(name).eval()
        return self

    def normalize_support(self, crops: Tensor) -> Tensor:
        """Preprocess uint8 BGR support crops exactly like query images.

        Args:
            crops (Tensor): (M, 3, S, S) uint8, BGR as loaded by mmcv.

        Returns:
            Tensor: (M, 3, S, S) float, channel order and normalisation of
            ``data_preprocessor``.
        """
        preprocessor = self.data_preprocessor
        crops = crops.float()
        if getattr(preprocessor, '_channel_conversion', False):
            crops = crops[:, [2, 1, 0]]
        if getattr(preprocessor, '_enable_normalize', False):
            crops = (crops - preprocessor.mean) / preprocessor.std
        return crops

    def query_context(self, batch_inputs: Tensor,
                      batch_data_samples: SampleList) -> ContextManager:
        """Lend the RoI head the query batch and the support encoder.

        ``loss`` and ``predict`` run inside it; so must any code that calls
        ``roi_head.predict_mask`` directly (e.g. ``OracleBoxTestLoop``).

        Args:
            batch_inputs (Tensor): Normalised images (B, 3, H, W).
            batch_data_samples (list[DetDataSample]): Their meta information
                (``img_id``).

        Returns:
            A context manager (a no-op without a :class:`FewShotRoIHead`).
        """
        if not isinstance(self.roi_head, FewShotRoIHead):
            return nullcontext()
        img_ids = [s.metainfo.get('img_id', -1) for s in batch_data_samples]
        return self.roi_head.query_context(
            QueryContext(
                images=batch_inputs,
                img_ids=img_ids,
                normalize=self.normalize_support,
                extract_feat=self.extract_feat))

    def loss(self, batch_inputs: Tensor,
             batch_data_samples: SampleList) -> dict:
        """Losses of RPN, box head and (diffusion) mask head.

        Args:
            batch_inputs (Tensor): Normalised images (B, 3, H, W).
            batch_data_samples (list[DetDataSample]): Ground truth and meta.

        Returns:
            dict[str, Tensor]: Loss components.
        """
        with self.query_context(batch_inputs, batch_data_samples):
            return super().loss(batch_inputs, batch_data_samples)

    def predict(self,
                batch_inputs: Tensor,
                batch_data_samples: SampleList,
                rescale: bool = True) -> SampleList:
        """Detections with masks (and ``mask_uncertainty`` per RoI).

        Args:
            batch_inputs (Tensor): Normalised images (B, 3, H, W).
            batch_data_samples (list[DetDataSample]): Meta information.
            rescale (bool): Return results at the original image size.

        Returns:
            list[DetDataSample]: With ``pred_instances``.
        """
        with self.query_context(batch_inputs, batch_data_samples):
            return super().predict(batch_inputs, batch_data_samples, rescale)
