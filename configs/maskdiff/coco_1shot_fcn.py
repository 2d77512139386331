# Baseline for coco_1shot.py: the same frozen detector, data and schedule
# with mmdet's FCNMaskHead (a point estimate) instead of the diffusion head,
# so both mask heads are compared on identical detections.
#   tools/dist_train.sh configs/maskdiff/coco_1shot_fcn.py 8
_base_ = ['./coco_1shot.py']

# Same data as the diffusion head, including its share of novel instances
# (the inherited FewShotShareSampler). The mask predictor is class-agnostic,
# as in iMTFA (Ganea et al. 2021): one mask for any class, so the novel
# classes use the mask branch that all classes train (a class-specific head
# would leave its novel channels with K instances each).
model = dict(
    roi_head=dict(
        mask_roi_extractor={{_base_.fcn_mask_roi_extractor}},
        mask_head={{_base_.fcn_mask_head}}),
    train_cfg=dict(rcnn=dict(mask_size=28)))
custom_hooks = []  # no support set or sampler for a point-estimate head
