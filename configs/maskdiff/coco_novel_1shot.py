# MaskDiff stage 2 for the novel-only FSIS protocol, K = 1: the 20-class
# novel detector of stage 1b is frozen; the diffusion mask head trains on the
# K-shot novel instances only (20 classes x K) and the support set k is the
# same K-shot set. Evaluation reports novel bbox / segm AP, AP50, AP75 (the
# `coco/novel/...` keys; `coco/all/...` is the same 20 classes).
#   tools/dist_train.sh configs/maskdiff/coco_novel_1shot.py 8
#   python tools/analysis_tools/fsis_seeds.py run configs/maskdiff/coco_novel_1shot.py --seeds 0-9 --launcher pytorch --gpus 8 --with-fcn
# K-shot sample: --cfg-options few_shot.seed=N moves the training set, the
# support set, load_from and the work dir (see coco_1shot.py).
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
