# MaskDiff stage 2, all-class protocol, K = 1 (the entry point: every
# coco_*shot*.py inherits it). Changes stage 1b's config: loads its checkpoint
# (same seed), freezes the detector, adds the DiffusionMaskHead with its
# support-set and sampler hooks, and trains only the mask head (AdamW, 40k
# iterations) on the base images plus the K-shot novel images (25 % of the
# sampled instances). Walk-through and few_shot.seed: docs/protocols.md.
#   tools/dist_train.sh configs/maskdiff/coco_1shot.py 8
_base_ = ['./maskdiff_r101_fpn_8xb2-tfa_coco-1shot-det.py']

load_from = ('work_dirs/maskdiff_r101_fpn_8xb2-tfa_coco-1shot-det/seed{seed}/'
             'iter_16000.pth')

model = dict(
    frozen_modules=('backbone', 'neck', 'rpn_head', 'roi_head.bbox_head'),
    roi_head=dict(mask_head={{_base_.diffusion_mask_head}}))

# the K-shot set of this seed: its novel shots join the base training set,
# and all its shots (base and novel) are the support set k (derived by
# SupportSetHook from the training set's member below)
few_shot_set = dict(_base_.few_shot_dataset, num_base_shots=1,
                    num_novel_shots=1)
# The K-shot novel images are a few dozen among ~98k base images: sampled
# uniformly they would be ~0.01 % of the instances (the novel rows of the
# class embedding would barely train). FewShotShareSampler draws images so
# that `few_shot_share` of the sampled instances come from the K-shot member
# (docs/defaults.md, "Stage-2 data mix"; measured on the embedded dataset).
train_dataloader = dict(
    sampler=dict(_delete_=True, type='FewShotShareSampler',
                 few_shot_share=0.25),
    dataset=dict(
        _delete_=True,
        type='ConcatDataset',
        datasets=[
            _base_.base_train_dataset,
            dict(few_shot_set, num_base_shots=0),
        ]))

# the sampler itself: model.test_cfg.rcnn.diffusion_sampling (_base_/models)
sampler_hook = dict(type='DiffusionSamplerHook', save_trajectory=True)
support_set_hook = dict(
    type='SupportSetHook',
    crop_size=64,
    context=0.1,
    max_train_per_class=200)
custom_hooks = [support_set_hook, sampler_hook]

# our choice (the paper gives no schedule): AdamW, constant lr after warm-up
train_cfg = dict(max_iters=40000, val_interval=40000)
param_scheduler = [
    dict(type='LinearLR', start_factor=0.01, by_epoch=False, begin=0,
         end=500)
]
optim_wrapper = dict(
    _delete_=True,
    type='OptimWrapper',
    optimizer=dict(type='AdamW', lr=1e-4, weight_decay=0.0),
    clip_grad=dict(max_norm=1.0))
default_hooks = dict(checkpoint=dict(interval=10000))
val_evaluator = dict(metric=['bbox', 'segm'])
test_evaluator = val_evaluator
