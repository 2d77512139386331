# MaskDiff stage 2, all-class protocol, K = 5: coco_1shot.py with 5 shots
# per class (mask head, K-shot training and support set) and the 5-shot
# stage-1b checkpoint of the same seed.
#   tools/dist_train.sh configs/maskdiff/coco_5shot.py 8
# Loads: work_dirs/maskdiff_r101_fpn_8xb2-tfa_coco-5shot-det/seed<N>/iter_80000.pth
_base_ = ['./coco_1shot.py']

load_from = ('work_dirs/maskdiff_r101_fpn_8xb2-tfa_coco-5shot-det/seed{seed}/'
             'iter_80000.pth')
model = dict(roi_head=dict(mask_head=dict(num_shots=5)))

# config inheritance replaces lists: the dataset list is rebuilt from the
# base config's variables (the support set follows its K-shot member)
few_shot_set = dict(_base_.few_shot_set, num_base_shots=5, num_novel_shots=5)
train_dataloader = dict(
    dataset=dict(datasets=[
        _base_.base_train_dataset,
        dict(few_shot_set, num_base_shots=0),
    ]))
