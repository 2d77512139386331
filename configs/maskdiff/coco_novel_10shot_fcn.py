# Baseline for coco_novel_10shot.py: mmdet's class-agnostic FCNMaskHead
# instead of the diffusion head, on the same frozen novel detector, data and
# schedule (no support set or sampler hooks).
#   tools/dist_train.sh configs/maskdiff/coco_novel_10shot_fcn.py 8
_base_ = ['./coco_novel_10shot.py']

model = dict(
    roi_head=dict(
        mask_roi_extractor={{_base_.fcn_mask_roi_extractor}},
        mask_head=dict(_base_.fcn_mask_head, num_classes=20)),
    train_cfg=dict(rcnn=dict(mask_size=28)))
custom_hooks = []  # no support set or sampler for a point-estimate head
