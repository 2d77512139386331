# MaskDiff stage 1b — TFA fine-tuning with K = 5 (see the 1-shot config).
# Produces: work_dirs/maskdiff_r101_fpn_8xb2-tfa_coco-5shot-det/seed<N>/iter_80000.pth
_base_ = ['./maskdiff_r101_fpn_8xb2-tfa_coco-1shot-det.py']

train_dataloader = dict(dataset=dict(num_base_shots=5, num_novel_shots=5))
train_cfg = dict(max_iters=80000, val_interval=10000)
param_scheduler = [
    dict(type='LinearLR', start_factor=0.001, by_epoch=False, begin=0,
         end=10),
    dict(type='MultiStepLR', begin=0, end=80000, by_epoch=False,
         milestones=[72000], gamma=0.1)
]
default_hooks = dict(checkpoint=dict(interval=10000))
