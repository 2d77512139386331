# MaskDiff-lite, novel-only protocol, K = 1: coco_novel_1shot.py with the
# compact denoiser and one denoiser pass per RoI at test time (`lite_model`
# in configs/_base_/models/maskdiff_r101_fpn.py).
#   tools/dist_train.sh configs/maskdiff/coco_novel_1shot_lite.py 8
_base_ = ['./coco_novel_1shot.py']

model = _base_.lite_model
