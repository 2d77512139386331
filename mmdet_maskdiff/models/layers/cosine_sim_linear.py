"""Cosine-similarity classifier of TFA (Wang et al., ICML 2020)."""
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from mmdet.registry import MODELS


@MODELS.register_module()
class CosineSimLinear(nn.Module):
    """Scaled cosine similarity between features and class weights.

    ``logits = scale · <x / ‖x‖, w_c / ‖w_c‖>``, the classifier TFA uses for
    the balanced K-shot fine-tuning (it keeps novel-class scores on the same
    scale as base-class scores). Use it as a box head's predictor:
    ``bbox_head=dict(type='Shared2FCBBoxHead',
    cls_predictor_cfg=dict(type='CosineSimLinear', scale=20.0))``.

    Args:
        in_features (int): Feature dimension D.
        out_features (int): Number of logits (classes + background).
        scale (float): Temperature; TFA uses 20 on COCO. Defaults to 20.0.
        learnable_scale (bool): Learn the scale as a parameter.
            Defaults to False.
    """

    def __init__(self,
                 in_features: int,
                 out_features: int,
                 scale: float = 20.0,
                 learnable_scale: bool = False) -> None:
        super().__init__()
        self.in_features = in_features
        self.out_features = out_features
        self.weight = nn.Parameter(torch.empty(out_features, in_features))
        nn.init.normal_(self.weight, std=0.01)
        if learnable_scale:
            self.scale = nn.Parameter(torch.tensor(float(scale)))
        else:
            self.register_buffer('scale', torch.tensor(float(scale)))

    def forward(self, x: Tensor) -> Tensor:
        """Logits (N, out_features) of features (N, in_features)."""
        return self.scale * F.linear(
            F.normalize(x, dim=1, eps=1e-5),
            F.normalize(self.weight, dim=1, eps=1e-5))
