# MaskDiff-lite, novel-only protocol, K = 30: coco_novel_30shot.py with the
# compact denoiser and one denoiser pass per RoI at test time (`lite_model`
# in configs/_base_/models/maskdiff_r101_fpn.py).
#   tools/dist_train.sh configs/maskdiff/coco_novel_30shot_lite.py 8
_base_ = ['./coco_novel_30shot.py']

model = _base_.lite_model
