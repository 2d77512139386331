# Stage 1a (base training of the detector) on your own COCO-format dataset
# (docs/custom_dataset.md). Copy it into your project and point _base_ at
# this repository's
# configs/maskdiff/maskdiff_r101_fpn_8xb2-110k_coco-base-det.py (by path,
# relative to your file). Files under data_root:
#   annotations/instances_{train,test}.json, images/{train,test}/
# The detector trains on the base classes' annotations only, in the label
# space base + novel. Produces work_dirs/my_fsis_base/iter_110000.pth, which
# tools/model_converters/tfa_novel_init.py turns into stage 1b's load_from.
_base_ = ['../maskdiff/maskdiff_r101_fpn_8xb2-110k_coco-base-det.py']

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
