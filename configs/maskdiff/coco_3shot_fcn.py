# Baseline for coco_3shot.py: the same frozen detector, data and schedule
# with mmdet's FCNMaskHead (a point estimate) instead of the diffusion head,
# so both mask heads are compared on identical detections.
#   tools/dist_train.sh configs/maskdiff/coco_3shot_fcn.py 8
_base_ = ['./coco_3shot.py']

model = dict(
    roi_head=dict(
        mask_roi_extractor={{_base_.fcn_mask_roi_extractor}},
        mask_head={{_base_.fcn_mask_head}}),
    train_cfg=dict(rcnn=dict(mask_size=28)))
custom_hooks = []  # no support set or sampler for a point-estimate head
