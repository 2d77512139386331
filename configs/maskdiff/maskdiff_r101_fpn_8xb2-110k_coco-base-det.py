# MaskDiff stage 1a — base detector (TFA base training).
# Trains the R-101 FPN detector on the 60 base classes (80-class label space;
# novel classes never appear as foreground). No mask head: masks come from
# the diffusion stage.
#   tools/dist_train.sh configs/maskdiff/maskdiff_r101_fpn_8xb2-110k_coco-base-det.py 8
# Needs: data/coco (docs/data.md); ImageNet weights from torchvision.
# Produces: work_dirs/maskdiff_r101_fpn_8xb2-110k_coco-base-det/iter_110000.pth
_base_ = [
    '../_base_/models/maskdiff_r101_fpn.py',
    '../_base_/datasets/fsis_coco_instance.py',
    '../_base_/schedules/iter_based_runtime.py'
]

model = dict(roi_head=dict(mask_roi_extractor=None, mask_head=None))

train_cfg = dict(max_iters=110000, val_interval=10000)
param_scheduler = [
    dict(type='LinearLR', start_factor=0.001, by_epoch=False, begin=0,
         end=1000),
    dict(type='MultiStepLR', begin=0, end=110000, by_epoch=False,
         milestones=[85000, 100000], gamma=0.1)
]
optim_wrapper = dict(
    type='OptimWrapper',
    optimizer=dict(type='SGD', lr=0.02, momentum=0.9, weight_decay=0.0001))
val_evaluator = dict(metric=['bbox'])
test_evaluator = val_evaluator
