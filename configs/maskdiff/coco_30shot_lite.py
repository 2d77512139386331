# MaskDiff-lite stage 2, K = 30: coco_30shot.py (same detector, data and
# schedule) with the compact denoiser and one denoiser pass per RoI at test
# time (`lite_model` in configs/_base_/models/maskdiff_r101_fpn.py).
#   tools/dist_train.sh configs/maskdiff/coco_30shot_lite.py 8
_base_ = ['./coco_30shot.py']

model = _base_.lite_model
