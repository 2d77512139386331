# Regression twin of coco_3shot.py: its RegressionMaskHead (same network and
# conditioning, K = 3) trained in one forward pass on the mask instead of
# by diffusion; no sampler hook (docs/defaults.md, "The regression twin").
#   tools/dist_train.sh configs/maskdiff/coco_3shot_twin.py 8
_base_ = ['./coco_3shot.py']

model = dict(
    roi_head=dict(
        mask_head=dict(_base_.regression_mask_head, num_shots=3)))
custom_hooks = [_base_.support_set_hook]  # the shots; no sampler to log
