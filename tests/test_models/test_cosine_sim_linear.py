"""CosineSimLinear: TFA's scaled cosine-similarity classifier."""
import math

import pytest
import torch

from mmdet.registry import MODELS
from mmdet_maskdiff.models import CosineSimLinear


def reference(x, weight, scale):
    """scale * cos(x_i, w_c), one pair at a time."""
    out = torch.empty(len(x), len(weight), dtype=torch.float64)
    for i, xi in enumerate(x.double()):
        for c, wc in enumerate(weight.double()):
            dot = sum(float(a) * float(b) for a, b in zip(xi, wc))
            norm_x = math.sqrt(sum(float(a)**2 for a in xi))
            norm_w = math.sqrt(sum(float(b)**2 for b in wc))
            out[i, c] = scale * dot / (norm_x * norm_w)
    return out


@pytest.mark.parametrize('scale', [20.0, 1.0])
def test_logits_are_scaled_cosine_similarities(scale):
    torch.manual_seed(0)
    layer = CosineSimLinear(6, 4, scale=scale)
    x = torch.randn(5, 6)
    logits = layer(x)
    assert logits.shape == (5, 4)
    expected = reference(x, layer.weight.detach(), scale)
    assert torch.allclose(logits.double(), expected, atol=1e-5)
    assert logits.abs().max() <= scale + 1e-5


def test_invariant_to_feature_and_weight_scale():
    torch.manual_seed(1)
    layer = CosineSimLinear(8, 3)
    x = torch.randn(4, 8)
    logits = layer(x)
    assert torch.allclose(layer(x * 7.5), logits, atol=1e-5)
    assert torch.allclose(layer(x * 1e-3), logits, atol=1e-4)
    with torch.no_grad():
        layer.weight.mul_(40.0)
    assert torch.allclose(layer(x), logits, atol=1e-5)
    # a feature parallel to a class weight scores exactly `scale`
    assert torch.allclose(
        layer(layer.weight[1:2].detach() * 3)[0, 1], torch.tensor(20.0))


def test_zero_feature_gives_zero_logits():
    layer = CosineSimLinear(4, 3)
    out = layer(torch.zeros(2, 4))
    assert torch.isfinite(out).all() and torch.count_nonzero(out) == 0


def test_learnable_scale():
    fixed = CosineSimLinear(4, 2, scale=10.0)
    assert 'scale' not in dict(fixed.named_parameters())
    assert fixed.scale.item() == 10.0
    layer = CosineSimLinear(4, 2, scale=10.0, learnable_scale=True)
    assert isinstance(layer.scale, torch.nn.Parameter)
    layer(torch.randn(3, 4)).sum().backward()
    assert layer.scale.grad is not None and layer.scale.grad.abs() > 0


def test_box_head_predictor_from_config():
    """The TFA configs use it as Shared2FCBBoxHead's classifier."""
    import mmdet_maskdiff  # noqa: F401
    head = MODELS.build(
        dict(
            type='Shared2FCBBoxHead',
            in_channels=4,
            roi_feat_size=2,
            fc_out_channels=16,
            num_classes=5,
            cls_predictor_cfg=dict(type='CosineSimLinear', scale=20.0)))
    assert isinstance(head.fc_cls, CosineSimLinear)
    assert head.fc_cls.weight.shape == (6, 16)  # classes + background
    cls_score, bbox_pred = head(torch.randn(3, 4, 2, 2))
    assert cls_score.shape == (3, 6) and cls_score.abs().max() <= 20 + 1e-4
