# MaskDiff stage 2, novel-only FSIS protocol, K = 1: coco_1shot.py on the
# 20-class novel detector of stage 1b; the mask head trains on the K-shot
# novel instances only (20 classes x K, 2,500 iterations), the support set
# is the same K-shot set, and the test reports novel AP (`coco/novel/...`).
# Walk-through: docs/protocols.md.
#   tools/dist_train.sh configs/maskdiff/coco_novel_1shot.py 8
# Loads: work_dirs/maskdiff_r101_fpn_8xb2-tfa_coco-novel-1shot-det/seed<N>/iter_2500.pth
_base_ = ['./coco_1shot.py']

load_from = ('work_dirs/maskdiff_r101_fpn_8xb2-tfa_coco-novel-1shot-det/'
             'seed{seed}/iter_2500.pth')
model = dict(
    roi_head=dict(
        bbox_head=dict(num_classes=20), mask_head=dict(num_classes=20)))

few_shot_set = dict(
    _base_.few_shot_set, classes='NOVEL', num_base_shots=0, num_novel_shots=1)
train_dataloader = dict(
    sampler=dict(_delete_=True, type='InfiniteSampler', shuffle=True),
    dataset=dict(few_shot_set, _delete_=True))
val_dataloader = dict(dataset=dict(classes='NOVEL'))
test_dataloader = val_dataloader
val_evaluator = dict(class_splits=dict(_delete_=True, novel='NOVEL'))
test_evaluator = val_evaluator

# our choice (20 x K training instances): the stage-1b length, constant lr
train_cfg = dict(max_iters=2500, val_interval=2500)
default_hooks = dict(checkpoint=dict(interval=2500))
