# MaskDiff stage 2 — the mask distribution model, K = 1 (entry point).
# The detector of stage 1b is loaded and frozen (parameters fixed, norm
# layers in eval mode); only the DiffusionMaskHead trains, on the base
# training set plus the K-shot novel instances (a quarter of the sampled
# instances are novel, see train_dataloader). A training RoI never gets its
# own object as a shot (FewShotRoIHead; model.train_cfg.rcnn.support_fallback
# says what a class without another instance gets). Evaluation reports bbox and
# segm AP / AP50 / AP75 for base, novel and all classes.
#   tools/dist_train.sh configs/maskdiff/coco_1shot.py 8
#   tools/dist_test.sh configs/maskdiff/coco_1shot.py work_dirs/coco_1shot/seed0/iter_40000.pth 8
#   mim test mmdet_maskdiff coco_1shot.py --checkpoint work_dirs/coco_1shot/seed0/iter_40000.pth
# The K-shot sample (TFA seeds 0-9) is one key, inherited from stage 1b:
#   --cfg-options few_shot.seed=N
# moves the novel training set, the support set (SupportSetHook has no
# dataset of its own: it takes the training set's K-shot member with K shots
# of every class), the stage-1b checkpoint ({seed} in load_from) and the work
# dir (work_dirs/coco_1shot/seed<N>/). FewShotRunner applies it; a checkpoint
# of another seed or K is refused. All seeds at once:
#   python tools/analysis_tools/fsis_seeds.py run configs/maskdiff/coco_1shot.py --seeds 0-9
# Sampler at test time: --cfg-options model.test_cfg.rcnn.sampler.steps=8
# Loads: stage 1b of the same seed (below); a missing file is an error.
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

# the sampler itself: model.test_cfg.rcnn.sampler (_base_/models)
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
