# MaskDiff stage 2, novel-only FSIS protocol, K = 3: coco_novel_1shot.py with
# 3 shots per class (mask head, training and support set) and the 3-shot
# novel stage-1b checkpoint of the same seed.
#   tools/dist_train.sh configs/maskdiff/coco_novel_3shot.py 8
# Loads: work_dirs/maskdiff_r101_fpn_8xb2-tfa_coco-novel-3shot-det/seed<N>/iter_2500.pth
_base_ = ['./coco_novel_1shot.py']

load_from = ('work_dirs/maskdiff_r101_fpn_8xb2-tfa_coco-novel-3shot-det/'
             'seed{seed}/iter_2500.pth')
model = dict(roi_head=dict(mask_head=dict(num_shots=3)))
train_dataloader = dict(dataset=dict(num_novel_shots=3))
