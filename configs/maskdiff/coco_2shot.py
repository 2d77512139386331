# MaskDiff stage 2, all-class protocol, K = 2: coco_1shot.py with 2 shots
# per class (mask head, K-shot training and support set) and the 2-shot
# stage-1b checkpoint of the same seed.
#   tools/dist_train.sh configs/maskdiff/coco_2shot.py 8
# Loads: work_dirs/maskdiff_r101_fpn_8xb2-tfa_coco-2shot-det/seed<N>/iter_32000.pth
_base_ = ['./coco_1shot.py']

load_from = ('work_dirs/maskdiff_r101_fpn_8xb2-tfa_coco-2shot-det/seed{seed}/'
             'iter_32000.pth')
model = dict(roi_head=dict(mask_head=dict(num_shots=2)))

# config inheritance replaces lists: the dataset list is rebuilt from the
# base config's variables (the support set follows its K-shot member)
few_shot_set = dict(_base_.few_shot_set, num_base_shots=2, num_novel_shots=2)
train_dataloader = dict(
    dataset=dict(datasets=[
        _base_.base_train_dataset,
        dict(few_shot_set, num_base_shots=0),
    ]))
