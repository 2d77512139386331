# Few-shot instance segmentation on COCO 2017 (60 base / 20 novel = VOC
# classes). One 80-class label space in every stage. Expected on disk (see
# docs/data.md):
#   data/coco/annotations/instances_{train,val}2017.json
#   data/coco/{train,val}2017/*.jpg
#   data/coco/few_shot/full_box_{K}shot_{class}_trainval.json (seed 0)
#   data/coco/few_shot/seed{N}/...                             (seeds 1-9)
# made by tools/dataset_converters/prepare_few_shot_splits.py or copied from
# TFA's published cocosplit folder.
dataset_type = 'FewShotCocoDataset'
data_root = 'data/coco/'
few_shot_root = 'few_shot/'
# COCO's 60 base / 20 novel classes, label order = category ids. A dict
# (each side a preset name or a list of names), so that a child config's
# class_splits=dict(base=[...], novel=[...]) merges over it without
# `_delete_` (docs/custom_dataset.md)
class_splits = dict(base='coco', novel='coco')
backend_args = None

train_pipeline = [
    dict(type='LoadImageFromFile', backend_args=backend_args),
    dict(type='LoadAnnotations', with_bbox=True, with_mask=True),
    dict(
        type='RandomChoiceResize',
        scales=[(1333, 640), (1333, 672), (1333, 704), (1333, 736),
                (1333, 768), (1333, 800)],
        keep_ratio=True),
    dict(type='RandomFlip', prob=0.5),
    dict(type='PackDetInputs')
]
test_pipeline = [
    dict(type='LoadImageFromFile', backend_args=backend_args),
    dict(type='Resize', scale=(1333, 800), keep_ratio=True),
    dict(type='LoadAnnotations', with_bbox=True, with_mask=True),
    dict(
        type='PackDetInputs',
        meta_keys=('img_id', 'img_path', 'ori_shape', 'img_shape',
                   'scale_factor'))
]

# stage 1a: base training, annotations of the 60 base classes only
base_train_dataset = dict(
    type=dataset_type,
    data_root=data_root,
    ann_file='annotations/instances_train2017.json',
    data_prefix=dict(img='train2017/'),
    classes='ALL',
    ann_classes='BASE',
    class_splits=class_splits,
    filter_cfg=dict(filter_empty_gt=True, min_size=32),
    pipeline=train_pipeline,
    backend_args=backend_args)
# stage 1b / support set: K instances of every class, from the split files
few_shot_dataset = dict(
    type=dataset_type,
    data_root=data_root,
    ann_file='annotations/instances_train2017.json',
    data_prefix=dict(img='train2017/'),
    classes='ALL',
    class_splits=class_splits,
    few_shot_root=few_shot_root,
    num_base_shots=1,
    num_novel_shots=1,
    # no `seed` here: the configs name the K-shot sample once, with
    # few_shot = dict(seed=N) (mmdet_maskdiff.few_shot.sample)
    pipeline=train_pipeline,
    backend_args=backend_args)
test_dataset = dict(
    type=dataset_type,
    data_root=data_root,
    ann_file='annotations/instances_val2017.json',
    data_prefix=dict(img='val2017/'),
    classes='ALL',
    class_splits=class_splits,
    test_mode=True,
    pipeline=test_pipeline,
    backend_args=backend_args)

train_dataloader = dict(
    batch_size=2,
    num_workers=2,
    persistent_workers=True,
    sampler=dict(type='InfiniteSampler', shuffle=True),
    batch_sampler=dict(type='AspectRatioBatchSampler'),
    dataset=base_train_dataset)
val_dataloader = dict(
    batch_size=1,
    num_workers=2,
    persistent_workers=True,
    drop_last=False,
    sampler=dict(type='DefaultSampler', shuffle=False),
    dataset=test_dataset)
test_dataloader = val_dataloader

# bbox and segm AP / AP50 / AP75 for base, novel and all classes in one run
val_evaluator = dict(
    type='FewShotCocoMetric',
    ann_file=data_root + 'annotations/instances_val2017.json',
    metric=['bbox', 'segm'],
    class_splits=dict(base='BASE', novel='NOVEL'),
    backend_args=backend_args)
test_evaluator = val_evaluator
