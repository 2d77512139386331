# MaskDiff stage 1b, novel-only FSIS protocol, K = 1: changes the all-class
# stage 1b to the 20 novel classes (20-class box predictor, trained from a
# fresh initialisation of stage 1a's; docs/protocols.md).
#   tools/dist_train.sh configs/maskdiff/maskdiff_r101_fpn_8xb2-tfa_coco-novel-1shot-det.py 8
# Produces: work_dirs/maskdiff_r101_fpn_8xb2-tfa_coco-novel-1shot-det/seed<N>/iter_2500.pth
_base_ = ['./maskdiff_r101_fpn_8xb2-tfa_coco-1shot-det.py']

load_from = 'work_dirs/maskdiff_r101_fpn_8xb2-110k_coco-base-det/iter_110000.pth'

model = dict(roi_head=dict(bbox_head=dict(num_classes=20)))

# the K-shot files of the 20 novel classes, in a 20-class label space
novel_few_shot_dataset = dict(
    _base_.few_shot_dataset, classes='NOVEL', num_base_shots=0,
    num_novel_shots=1)
train_dataloader = dict(dataset=dict(novel_few_shot_dataset, _delete_=True))
# evaluation on the novel classes only: base-class objects of val2017 are
# not in the label space (neither ground truth nor predictions)
val_dataloader = dict(dataset=dict(classes='NOVEL'))
test_dataloader = val_dataloader
val_evaluator = dict(class_splits=dict(_delete_=True, novel='NOVEL'))
test_evaluator = val_evaluator

# iFS-RCNN's novel fine-tuning schedule (16 images per batch, lr 0.01, 2500
# iterations for every K); iMTFA uses 8 images, lr 0.005, 1000-4000 iterations
train_cfg = dict(max_iters=2500, val_interval=2500)
param_scheduler = [
    dict(type='LinearLR', start_factor=0.001, by_epoch=False, begin=0,
         end=10)
]
optim_wrapper = dict(optimizer=dict(lr=0.01))
default_hooks = dict(checkpoint=dict(interval=2500))
