# MaskDiff stage 2, all-class protocol, K = 10: coco_1shot.py with 10 shots
# per class (mask head, K-shot training and support set) and the 10-shot
# stage-1b checkpoint of the same seed.
#   tools/dist_train.sh configs/maskdiff/coco_10shot.py 8
# Loads: work_dirs/maskdiff_r101_fpn_8xb2-tfa_coco-10shot-det/seed<N>/iter_160000.pth
_base_ = ['./coco_1shot.py']

load_from = ('work_dirs/maskdiff_r101_fpn_8xb2-tfa_coco-10shot-det/seed{seed}/'
             'iter_160000.pth')
model = dict(roi_head=dict(mask_head=dict(num_shots=10)))

# config inheritance replaces lists: the dataset list is rebuilt from the
# base config's variables with the K-shot set (the support set follows it)
few_shot_set = dict(_base_.few_shot_set, num_base_shots=10, num_novel_shots=10)
train_dataloader = dict(
    dataset=dict(datasets=[
        _base_.base_train_dataset,
        dict(few_shot_set, num_base_shots=0),
    ]))
