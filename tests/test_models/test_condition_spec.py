"""ConditionSpec: what a mask head asks the RoI head to gather per RoI, read
once when the RoI head is built, and the channel checks made then."""
import copy
import types

import pytest
from _model_helpers import TINY_DENOISER, conditions_of_one_step
from mmengine.config import ConfigDict

from mmdet.models.roi_heads.mask_heads import FCNMaskHead
from mmdet.registry import MODELS
from mmdet_maskdiff.models.roi_heads.stored_support import StoredSupport
from mmdet_maskdiff.models import (ConditionSpec, DiffusionMaskHead,
                                   condition_spec_of)

def small_extractor(out_channels, output_size=7):
    return dict(
        type='SingleRoIExtractor',
        roi_layer=dict(
            type='RoIAlign', output_size=output_size, sampling_ratio=0),
        out_channels=out_channels,
        featmap_strides=[4, 8, 16, 32])


@pytest.mark.parametrize('region_source, use_prototypes, expected', [
    ('image', True,
     ConditionSpec(
         mask_size=16,
         num_shots=3,
         region_image=True,
         region_feat_channels=None,
         prototype_dim=12)),
    ('feature', False,
     ConditionSpec(
         mask_size=16,
         num_shots=3,
         region_image=False,
         region_feat_channels=20,
         prototype_dim=None)),
    ('both', True,
     ConditionSpec(
         mask_size=16,
         num_shots=3,
         region_image=True,
         region_feat_channels=20,
         prototype_dim=12)),
])
def test_diffusion_head_declares_what_it_is_conditioned_on(
        region_source, use_prototypes, expected):
    head = DiffusionMaskHead(
        num_classes=4,
        mask_size=16,
        denoiser=TINY_DENOISER,
        region_source=region_source,
        region_feat_channels=20,
        num_shots=3,
        use_prototypes=use_prototypes,
        prototype_dim=12,
        num_timesteps=100)
    assert condition_spec_of(head) == expected
    # the head's own settings read the spec (one home)
    assert (head.mask_size, head.num_shots, head.use_prototypes,
            head.uses_region_image,
            head.uses_region_features) == (16, 3, use_prototypes,
                                           expected.region_image,
                                           expected.region_features)
    # and the denoiser was sized from it: 3 image channels, 8 projected
    # feature channels, 4 per shot (concat)
    assert head.denoiser.cond_channels == (3 * expected.region_image +
                                           8 * expected.region_features +
                                           4 * 3)
    assert head.denoiser.cond_vector_dim == (12 if use_prototypes else 0)


def test_unconditioned_heads_have_no_spec():
    fcn = FCNMaskHead(
        num_convs=1, in_channels=8, conv_out_channels=8, num_classes=4)
    assert condition_spec_of(fcn) is None
    assert condition_spec_of(None) is None


def test_a_spec_of_the_wrong_type_is_refused():
    head = types.SimpleNamespace(condition_spec=True)
    with pytest.raises(
            TypeError,
            match='^SimpleNamespace.condition_spec must be a ConditionSpec '
            'or None, got bool$'):
        condition_spec_of(head)


def test_roi_head_reads_the_spec_once(build_model):
    roi_head = build_model().roi_head
    assert roi_head.needs_condition
    assert roi_head.condition_spec is roi_head.mask_head.condition_spec
    assert roi_head.condition_spec == ConditionSpec(
        mask_size=16, num_shots=5, region_image=True, prototype_dim=64)


def test_roi_head_with_an_fcn_mask_head_has_no_condition(maskdiff_cfg):
    cfg = copy.deepcopy(maskdiff_cfg.model)
    cfg.roi_head.mask_roi_extractor = ConfigDict(small_extractor(64, 14))
    cfg.roi_head.mask_head = ConfigDict(
        type='FCNMaskHead',
        num_convs=1,
        in_channels=64,
        conv_out_channels=8,
        num_classes=8)
    roi_head = MODELS.build(cfg).roi_head
    assert roi_head.condition_spec is None and not roi_head.needs_condition
    # a stored support set is of no use to it: not kept, and refused when
    # a checkpoint carries one (a MaskDiff checkpoint with an FCN config)
    roi_head.support_encoder.store(None)
    assert roi_head.support_encoder.stored is None
    assert roi_head.diffusion_sampling is None
    with pytest.raises(ValueError, match='the config builds FCNMaskHead'):
        roi_head.support_encoder.check_fits(
            StoredSupport(bank=None, info=dict(num_shots=5)))


def test_prototype_dim_must_match_the_shared_extractor(build_model):
    # the tiny config's neck and box RoI extractor give 64 channels; the
    # mask and support extractors share the box one
    with pytest.raises(
            ValueError,
            match=r'^model\.roi_head\.mask_head\.prototype_dim=128 but the '
            r'support RoI extractor gives 64 channels '
            r'\(model\.roi_head\.bbox_roi_extractor\.out_channels\); set '
            r"them equal \(the neck's out_channels\)$"):
        build_model(**{'roi_head.mask_head.prototype_dim': 128})


def test_prototype_dim_must_match_the_support_extractor(build_model):
    with pytest.raises(
            ValueError,
            match=r'^model\.roi_head\.mask_head\.prototype_dim=64 but the '
            r'support RoI extractor gives 32 channels '
            r'\(model\.roi_head\.support_roi_extractor\.out_channels\)'):
        build_model(**{'roi_head.support_roi_extractor': small_extractor(32)})
    # matching: builds, and the spec is unchanged
    model = build_model(
        **{
            'roi_head.support_roi_extractor': small_extractor(32),
            'roi_head.mask_head.prototype_dim': 32
        })
    assert model.roi_head.condition_spec.prototype_dim == 32


def test_prototype_dim_is_not_checked_without_prototypes(build_model):
    model = build_model(
        **{
            'roi_head.mask_head.use_prototypes': False,
            'roi_head.mask_head.prototype_dim': 128
        })
    assert model.roi_head.condition_spec.prototype_dim is None


def test_region_feat_channels_must_match_the_mask_extractor(build_model):
    keys = {
        'roi_head.mask_head.region_source': 'feature',
        'roi_head.mask_head.region_feat_channels': 32
    }
    with pytest.raises(
            ValueError,
            match=r'^model\.roi_head\.mask_head\.region_feat_channels=32 but '
            r'the region RoI extractor gives 64 channels '
            r'\(model\.roi_head\.bbox_roi_extractor\.out_channels\)'):
        build_model(**keys)
    # an own mask RoI extractor (prototypes off: it would also pool them)
    keys['roi_head.mask_head.use_prototypes'] = False
    with pytest.raises(
            ValueError,
            match=r'region_feat_channels=32 .* gives 48 channels '
            r'\(model\.roi_head\.mask_roi_extractor\.out_channels\)'):
        build_model(
            **keys, **{
                'roi_head.mask_roi_extractor':
                dict(small_extractor(48), _delete_=True)
            })


def test_gathered_condition_follows_the_spec(build_model, support_bank,
                                             train_batch):
    """Region features and no prototypes: the RoI head gathers exactly the
    fields the spec asks for."""
    model = build_model(
        **{
            'roi_head.mask_head.region_source': 'feature',
            'roi_head.mask_head.use_prototypes': False
        })
    model.roi_head.support_encoder.use_bank(support_bank)
    condition, _ = conditions_of_one_step(
        model, model.data_preprocessor(copy.deepcopy(train_batch), True))
    num = len(condition)
    assert num > 0
    assert condition.region_image is None and condition.prototypes is None
    assert condition.region_feats.shape == (num, 64, 7, 7)
    assert condition.shots.shape == (num, 5, 4, 16, 16)
