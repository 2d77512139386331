# A tiny mmdet Mask R-CNN on the embedded synthetic FSIS dataset, for the
# end-to-end tests of tools/train.py, tools/test.py and tools/dist_train.sh.
# It uses only mmdet components (no plugin type), so it also checks that the
# tools work for a plain mmdet config.
#
# Data: the root written by
#   mmdet_maskdiff.datasets.synthetic_fsis.make_synthetic_fsis(ROOT)
# is read from the environment variable MASKDIFF_SYNTHETIC_ROOT (mmengine
# substitutes `{{$NAME:default}}` when it reads the file), default
# data/synthetic_fsis:
#   MASKDIFF_SYNTHETIC_ROOT=/tmp/syn \
#       python tools/train.py tests/data/tiny_mask_rcnn.py
_base_ = [
    'mmdet::_base_/models/mask-rcnn_r50_fpn.py',
    'mmdet::_base_/default_runtime.py',
]

data_root = '{{$MASKDIFF_SYNTHETIC_ROOT:data/synthetic_fsis}}/'
classes = ('circle', 'square', 'triangle', 'ring', 'cross', 'star', 'crescent',
           'heart')
metainfo = dict(classes=classes)
image_scale = (128, 128)

model = dict(
    backbone=dict(
        depth=18,
        base_channels=16,
        frozen_stages=-1,
        norm_eval=False,
        init_cfg=None),  # random init: nothing is downloaded
    neck=dict(in_channels=[16, 32, 64, 128], out_channels=64),
    rpn_head=dict(
        in_channels=64, feat_channels=64, anchor_generator=dict(scales=[4])),
    roi_head=dict(
        bbox_roi_extractor=dict(out_channels=64),
        bbox_head=dict(
            in_channels=64, fc_out_channels=128, num_classes=len(classes)),
        mask_roi_extractor=dict(out_channels=64),
        mask_head=dict(
            num_convs=2,
            in_channels=64,
            conv_out_channels=64,
            num_classes=len(classes))),
    train_cfg=dict(
        rpn_proposal=dict(nms_pre=500, max_per_img=200),
        rcnn=dict(sampler=dict(num=64))),
    test_cfg=dict(
        rpn=dict(nms_pre=300, max_per_img=100), rcnn=dict(max_per_img=20)))

train_pipeline = [
    dict(type='LoadImageFromFile'),
    dict(type='LoadAnnotations', with_bbox=True, with_mask=True),
    dict(type='Resize', scale=image_scale, keep_ratio=True),
    dict(type='RandomFlip', prob=0.5),
    dict(type='PackDetInputs')
]
test_pipeline = [
    dict(type='LoadImageFromFile'),
    dict(type='Resize', scale=image_scale, keep_ratio=True),
    dict(type='LoadAnnotations', with_bbox=True, with_mask=True),
    dict(
        type='PackDetInputs',
        meta_keys=('img_id', 'img_path', 'ori_shape', 'img_shape',
                   'scale_factor'))
]
train_dataloader = dict(
    batch_size=2,
    num_workers=0,
    persistent_workers=False,
    sampler=dict(type='InfiniteSampler', shuffle=True),
    dataset=dict(
        type='CocoDataset',
        data_root=data_root,
        metainfo=metainfo,
        ann_file='annotations/instances_train.json',
        data_prefix=dict(img='images/train/'),
        filter_cfg=dict(filter_empty_gt=True, min_size=4),
        pipeline=train_pipeline))
val_dataloader = dict(
    batch_size=4,
    num_workers=0,
    persistent_workers=False,
    drop_last=False,
    sampler=dict(type='DefaultSampler', shuffle=False),
    dataset=dict(
        type='CocoDataset',
        data_root=data_root,
        metainfo=metainfo,
        ann_file='annotations/instances_test.json',
        data_prefix=dict(img='images/test/'),
        test_mode=True,
        pipeline=test_pipeline))
test_dataloader = val_dataloader
val_evaluator = dict(
    type='CocoMetric',
    ann_file=data_root + 'annotations/instances_test.json',
    metric=['bbox', 'segm'],
    format_only=False)
test_evaluator = val_evaluator

train_cfg = dict(type='IterBasedTrainLoop', max_iters=2, val_interval=2)
val_cfg = dict(type='ValLoop')
test_cfg = dict(type='TestLoop')
param_scheduler = [
    dict(type='LinearLR', start_factor=0.1, by_epoch=False, begin=0, end=2)
]
optim_wrapper = dict(
    type='OptimWrapper',
    optimizer=dict(type='SGD', lr=0.01, momentum=0.9, weight_decay=0.0001))

default_hooks = dict(
    logger=dict(type='LoggerHook', interval=1),
    checkpoint=dict(type='CheckpointHook', by_epoch=False, interval=2),
    visualization=dict(type='DetVisualizationHook', draw=False))
log_processor = dict(type='LogProcessor', window_size=1, by_epoch=False)
