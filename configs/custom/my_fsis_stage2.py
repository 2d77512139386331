# Stage 2 (the diffusion mask head, K = 1) on your own COCO-format dataset:
# the whole downstream config (docs/custom_dataset.md). Copy it into your
# project and point _base_ at this repository's configs/maskdiff/coco_1shot.py
# (by path, relative to your file). Files under data_root:
#   annotations/instances_{train,test}.json, images/{train,test}/,
#   few_shot/ (tools/dataset_converters/prepare_few_shot_splits.py)
# Loads stage 1b of the same seed on this dataset (my_fsis_tfa_1shot.py);
# change load_from if your stage-1b config has another name.
_base_ = ['../maskdiff/coco_1shot.py']

load_from = 'work_dirs/my_fsis_tfa_1shot/seed{seed}/iter_16000.pth'

data_root = 'data/my_dataset/'
class_splits = dict(
    base=['cat', 'dog', 'horse', 'sheep', 'cow', 'bird'],
    novel=['zebra', 'giraffe', 'bear'])
num_classes = 9  # base + novel: the label space 'ALL' of every dataset

train_files = dict(data_root=data_root, class_splits=class_splits,
                   ann_file='annotations/instances_train.json',
                   data_prefix=dict(img='images/train/'))
few_shot_set = dict(_base_.few_shot_set, **train_files)
train_dataloader = dict(dataset=dict(datasets=[
    dict(_base_.base_train_dataset, **train_files),
    dict(few_shot_set, num_base_shots=0),
]))
val_dataloader = dict(dataset=dict(
    data_root=data_root, class_splits=class_splits,
    ann_file='annotations/instances_test.json',
    data_prefix=dict(img='images/test/')))
test_dataloader = val_dataloader
val_evaluator = dict(ann_file=data_root + 'annotations/instances_test.json')
test_evaluator = val_evaluator
model = dict(roi_head=dict(bbox_head=dict(num_classes=num_classes),
                           mask_head=dict(num_classes=num_classes)))
