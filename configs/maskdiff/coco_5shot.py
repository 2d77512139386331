# MaskDiff stage 2 with K = 5 (see coco_1shot.py for usage).
#   tools/dist_train.sh configs/maskdiff/coco_5shot.py 8
# Loads: work_dirs/maskdiff_r101_fpn_8xb2-tfa_coco-5shot-det/iter_80000.pth
_base_ = ['./coco_1shot.py']

load_from = ('work_dirs/maskdiff_r101_fpn_8xb2-tfa_coco-5shot-det/'
             'iter_80000.pth')
model = dict(roi_head=dict(mask_head=dict(num_shots=5)))

# config inheritance replaces lists instead of merging them: restate the
# dataset list and the hooks with K = 5
novel_shots = dict(
    type='FewShotCocoDataset',
    data_root={{_base_.data_root}},
    ann_file='annotations/instances_train2017.json',
    data_prefix=dict(img='train2017/'),
    classes='ALL',
    class_splits={{_base_.class_splits}},
    few_shot_root={{_base_.few_shot_root}},
    num_base_shots=0,
    num_novel_shots=5,
    seed=0,
    pipeline={{_base_.train_pipeline}})
train_dataloader = dict(
    dataset=dict(datasets=[{{_base_.base_train_dataset}}, novel_shots]))
custom_hooks = [
    dict(
        type='SupportSetHook',
        dataset=dict(novel_shots, num_base_shots=5),
        crop_size=64,
        context=0.1,
        max_train_per_class=200),
    {{_base_.sampler_hook}},
]
