# MaskDiff stage 1b, novel-only FSIS protocol, K = 2 (see the 1-shot config).
# Produces: work_dirs/maskdiff_r101_fpn_8xb2-tfa_coco-novel-2shot-det/seed<N>/iter_2500.pth
_base_ = ['./maskdiff_r101_fpn_8xb2-tfa_coco-novel-1shot-det.py']

train_dataloader = dict(dataset=dict(num_novel_shots=2))
