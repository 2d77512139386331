# The regression twin of coco_novel_3shot.py (see coco_3shot_twin.py):
# the same frozen novel detector, data, schedule, network and conditioning,
# one forward pass trained on the mask instead of the diffusion.
#   tools/dist_train.sh configs/maskdiff/coco_novel_3shot_twin.py 8
_base_ = ['./coco_novel_3shot.py']

model = dict(
    roi_head=dict(
        mask_head=dict(
            _base_.regression_mask_head, num_shots=3, num_classes=20)))
custom_hooks = [_base_.support_set_hook]  # the shots; no sampler to log
