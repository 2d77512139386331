# MaskDiff stage 1b, K = 1: changes stage 1a to TFA fine-tuning on the
# balanced K-shot set (only the cosine classifier and box regressor train),
# from stage 1a with TFA's novel-row initialisation
# (tools/model_converters/tfa_novel_init.py; docs/protocols.md), one K-shot
# sample per few_shot.seed (FewShotRunner; docs/protocols.md).
#   tools/dist_train.sh configs/maskdiff/maskdiff_r101_fpn_8xb2-tfa_coco-1shot-det.py 8 --cfg-options few_shot.seed=N
# Produces: work_dirs/maskdiff_r101_fpn_8xb2-tfa_coco-1shot-det/seed<N>/iter_16000.pth
_base_ = ['./maskdiff_r101_fpn_8xb2-110k_coco-base-det.py']

load_from = ('work_dirs/maskdiff_r101_fpn_8xb2-110k_coco-base-det/'
             'iter_110000_novel-init.pth')

runner_type = 'FewShotRunner'
few_shot = dict(seed=0)  # the K-shot sample of this run (TFA seed 0-9)

model = dict(
    frozen_modules=('backbone', 'neck', 'rpn_head',
                    'roi_head.bbox_head.shared_fcs'),
    roi_head=dict(
        bbox_head=dict(
            cls_predictor_cfg=dict(type='CosineSimLinear', scale=20.0))))

# the balanced K-shot set of the dataset config (K = 1, seed few_shot.seed)
train_dataloader = dict(
    dataset=dict(_base_.few_shot_dataset, _delete_=True))

# TFA's COCO schedule: lr 0.001, iterations growing with K (16k at K = 1)
train_cfg = dict(max_iters=16000, val_interval=4000)
param_scheduler = [
    dict(type='LinearLR', start_factor=0.001, by_epoch=False, begin=0,
         end=10),
    dict(type='MultiStepLR', begin=0, end=16000, by_epoch=False,
         milestones=[14400], gamma=0.1)
]
optim_wrapper = dict(optimizer=dict(lr=0.001))
default_hooks = dict(checkpoint=dict(interval=4000))
