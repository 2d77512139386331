# MaskDiff stage 1b — TFA fine-tuning with K = 3 (see the 1-shot config).
# Produces: work_dirs/maskdiff_r101_fpn_8xb2-tfa_coco-3shot-det/seed<N>/iter_48000.pth
_base_ = ['./maskdiff_r101_fpn_8xb2-tfa_coco-1shot-det.py']

train_dataloader = dict(dataset=dict(num_base_shots=3, num_novel_shots=3))
train_cfg = dict(max_iters=48000, val_interval=8000)
param_scheduler = [
    dict(type='LinearLR', start_factor=0.001, by_epoch=False, begin=0,
         end=10),
    dict(type='MultiStepLR', begin=0, end=48000, by_epoch=False,
         milestones=[43200], gamma=0.1)
]
default_hooks = dict(checkpoint=dict(interval=8000))
