# Stage 1b (TFA fine-tuning of the box predictor on the K-shot set, K = 1) on
# your own COCO-format dataset (docs/custom_dataset.md). Copy it into your
# project and point _base_ at this repository's
# configs/maskdiff/maskdiff_r101_fpn_8xb2-tfa_coco-1shot-det.py (by path,
# relative to your file). Files under data_root: those of stage 1a and
# few_shot/ (tools/dataset_converters/prepare_few_shot_splits.py).
# Loads stage 1a's checkpoint with the novel rows re-drawn, written by
#   python tools/model_converters/tfa_novel_init.py \
#       configs/my_fsis_tfa_1shot.py work_dirs/my_fsis_base/iter_110000.pth
# Produces work_dirs/my_fsis_tfa_1shot/seed<N>/iter_16000.pth (few_shot.seed).
_base_ = ['../maskdiff/maskdiff_r101_fpn_8xb2-tfa_coco-1shot-det.py']

load_from = 'work_dirs/my_fsis_base/iter_110000_novel-init.pth'
data_root = 'data/my_dataset/'
class_splits = dict(
    base=['cat', 'dog', 'horse', 'sheep', 'cow', 'bird'],
    novel=['zebra', 'giraffe', 'bear'])
num_classes = 9  # base + novel: the label space 'ALL' of every dataset

train_dataloader = dict(dataset=dict(
    data_root=data_root, class_splits=class_splits,
    ann_file='annotations/instances_train.json',
    data_prefix=dict(img='images/train/')))
val_dataloader = dict(dataset=dict(
    data_root=data_root, class_splits=class_splits,
    ann_file='annotations/instances_test.json',
    data_prefix=dict(img='images/test/')))
test_dataloader = val_dataloader
val_evaluator = dict(ann_file=data_root + 'annotations/instances_test.json')
test_evaluator = val_evaluator
model = dict(roi_head=dict(bbox_head=dict(num_classes=num_classes)))
