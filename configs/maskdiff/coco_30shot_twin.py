# The regression twin of coco_30shot.py: the same frozen detector, data,
# schedule, denoiser UNet and conditioning (region crop, K = 30 shots +
# masks, prototype, class), one forward pass trained on the mask instead of
# the diffusion (RegressionMaskHead; docs/defaults.md, "The regression
# twin"). The ablation that separates "diffusion" from "MaskDiff's inputs".
#   tools/dist_train.sh configs/maskdiff/coco_30shot_twin.py 8
#   python tools/analysis_tools/fsis_seeds.py run configs/maskdiff/coco_30shot.py --seeds 0-9 --with-fcn --with-twin
# test_cfg.rcnn.sampler (the diffusion sampler) does not apply to it.
_base_ = ['./coco_30shot.py']

model = dict(
    roi_head=dict(
        mask_head=dict(_base_.regression_mask_head, num_shots=30)))
custom_hooks = [_base_.support_set_hook]  # the shots; no sampler to log
