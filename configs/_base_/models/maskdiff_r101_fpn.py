# MaskDiff detector: TFA-style R-101 FPN two-stage detector (one 80-class
# label space for all stages) + the diffusion mask head with the paper's
# denoiser (UNet 128 channels x (1, 2, 3, 4), two res blocks down / three up,
# attention at the bottleneck and the 384-channel level, 64x64 masks).
# Defaults the paper leaves open are documented in docs/defaults.md.
_base_ = 'mmdet::_base_/models/mask-rcnn_r50_fpn.py'

custom_imports = dict(imports=['mmdet_maskdiff'], allow_failed_imports=False)

mask_size = 64
# `_delete_` replaces whatever head the base config has (FCNMaskHead, None)
diffusion_mask_head = dict(
    _delete_=True,
    type='DiffusionMaskHead',
    num_classes=80,
    mask_size=mask_size,
    denoiser=dict(
        type='MaskDenoisingUNet',
        base_channels=128,
        channel_mults=(1, 2, 3, 4),
        num_res_blocks=2,
        attention_channels=(384, ),
        num_head_channels=64,
        dropout=0.1,
        # recompute each UNet block in backward: 3.3x less stage-2 memory
        # for +27 % step time on an H200 (docs/benchmarks.md)
        with_cp=True),
    region_source='image',
    num_shots=1,
    shot_fusion='concat',
    use_prototypes=True,
    prototype_dim=256,
    num_timesteps=1000,
    beta_schedule='linear',
    # ours, by measurement (docs/defaults.md); the paper's is 'epsilon'
    prediction_type='x0',
    class_dropout_prob=0.1,
    # positive RoIs per GPU that the denoiser trains on (a random subset of
    # the up to 2 x 128 sampled positives): 128 keeps the stage-2 step of
    # 2 images/GPU under 16 GB with checkpointing (docs/benchmarks.md,
    # "Stage-2 memory")
    max_train_rois=128)
model = dict(
    type='MaskDiffRCNN',
    frozen_modules=(),
    backbone=dict(
        depth=101,
        init_cfg=dict(type='Pretrained',
                      checkpoint='torchvision://resnet101')),
    roi_head=dict(
        type='FewShotRoIHead',
        bbox_head=dict(num_classes=80),
        # the diffusion head reads the image; support prototypes share the
        # box RoI extractor
        mask_roi_extractor=None,
        mask_head=diffusion_mask_head),
    # support_fallback: a training RoI whose class has no support instance
    # outside the query batch gets null shots ('null') or leaves the mask
    # loss ('drop'); it never gets its own object (docs/defaults.md)
    train_cfg=dict(rcnn=dict(mask_size=mask_size, support_fallback='null')),
    # the diffusion head's test-time sampler, its one home; only what differs
    # from the defaults of SamplerSettings (keys and checks:
    # mmdet_maskdiff/diffusion/sampler_settings.py; docs/defaults.md).
    # FCNMaskHead and the twin ignore it. `fast`: the inference fast path (RoI
    # buckets + torch.compile on CUDA), off until measured on a GPU
    # (docs/benchmarks.md); flip with `...diffusion_sampling.fast.enabled=True`.
    test_cfg=dict(
        rcnn=dict(
            diffusion_sampling=dict(
                fast=dict(enabled=False, compile=True)))))

# The same-input regression twin (coco_*shot_twin.py): the diffusion head's
# denoiser UNet and conditioning (region crop, K shots, prototype, class),
# one forward pass from a fixed input (y_t = 0, t = 999) trained on the mask
# with sigmoid cross-entropy + Dice; soft probabilities pasted like
# FCNMaskHead (docs/defaults.md, "The regression twin").
regression_mask_head = dict(
    _delete_=True,
    type='RegressionMaskHead',
    # the network and the conditioning of diffusion_mask_head, shared
    **{
        key: diffusion_mask_head[key]
        for key in ('num_classes', 'mask_size', 'denoiser', 'region_source',
                    'num_shots', 'shot_fusion', 'use_prototypes',
                    'prototype_dim', 'max_train_rois')
    },
    # Mask2Former's equal weights (naive Dice, eps 1); our choice
    loss_mask=dict(type='CrossEntropyLoss', use_sigmoid=True,
                   loss_weight=1.0),
    loss_dice=dict(type='DiceLoss', use_sigmoid=True, activate=True,
                   naive_dice=True, eps=1.0, loss_weight=1.0))

# The point-estimate baseline on identical detections: mmdet's FCNMaskHead
# (Mask R-CNN's head) in place of the diffusion head, see coco_*shot_fcn.py.
fcn_mask_roi_extractor = dict(
    _delete_=True,
    type='SingleRoIExtractor',
    roi_layer=dict(type='RoIAlign', output_size=14, sampling_ratio=0),
    out_channels=256,
    featmap_strides=[4, 8, 16, 32])
# Class-agnostic mask predictor, as in iMTFA (Ganea et al. 2021): the novel
# classes use the mask branch that every class trains.
fcn_mask_head = dict(
    _delete_=True,
    type='FCNMaskHead',
    num_convs=4,
    in_channels=256,
    conv_out_channels=256,
    num_classes=80,
    class_agnostic=True,
    loss_mask=dict(type='CrossEntropyLoss', use_mask=True, loss_weight=1.0))

# The lite family (coco_{K}shot_lite.py, coco_novel_{K}shot_lite.py): the
# paper's detector and data with the compact denoiser (28x28 masks, UNet
# 32 x (1, 2, 2), about 2 M parameters instead of 83.7 M) and one denoiser pass
# per RoI at test time (DDIM 1 step, no guidance). Chosen by measurement:
# docs/defaults.md, "The lite family". Checkpointing is off: the compact
# denoiser's activations are small (docs/benchmarks.md).
lite_mask_size = 28
lite_model = dict(
    roi_head=dict(
        mask_head=dict(
            mask_size=lite_mask_size,
            denoiser=dict(
                base_channels=32,
                channel_mults=(1, 2, 2),
                attention_channels=(64, ),
                num_head_channels=32,
                with_cp=False))),
    train_cfg=dict(rcnn=dict(mask_size=lite_mask_size)),
    test_cfg=dict(
        rcnn=dict(diffusion_sampling=dict(steps=1, guidance_weight=0.0))))
