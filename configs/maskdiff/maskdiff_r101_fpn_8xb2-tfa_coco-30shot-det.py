# MaskDiff stage 1b — TFA fine-tuning with K = 30 (see the 1-shot config).
# Produces: work_dirs/maskdiff_r101_fpn_8xb2-tfa_coco-30shot-det/seed<N>/iter_240000.pth
_base_ = ['./maskdiff_r101_fpn_8xb2-tfa_coco-1shot-det.py']

train_dataloader = dict(dataset=dict(num_base_shots=30, num_novel_shots=30))
train_cfg = dict(max_iters=240000, val_interval=20000)
param_scheduler = [
    dict(type='LinearLR', start_factor=0.001, by_epoch=False, begin=0,
         end=10),
    dict(type='MultiStepLR', begin=0, end=240000, by_epoch=False,
         milestones=[216000], gamma=0.1)
]
default_hooks = dict(checkpoint=dict(interval=20000))
