# COCO -> VOC (FGN; MTFA / iMTFA's `LIKE_FGN_TEST_VOC`): coco_novel_1shot.py
# with the test set replaced by PASCAL VOC 2012 val instance masks (a
# COCO-format json with COCO class names); the support set stays the COCO
# K-shot set of the seed. Data and the json conversion: docs/data.md,
# "COCO -> VOC".
#   tools/dist_test.sh configs/maskdiff/coco_novel_1shot_voc-test.py \
#       work_dirs/coco_novel_1shot/seed0/iter_2500.pth 8 --cfg-options few_shot.seed=0
_base_ = ['./coco_novel_1shot.py']

voc_root = 'data/voc/'
voc_ann = 'annotations/voc_2012_val_instances_coco-names.json'
test_dataloader = dict(
    dataset=dict(
        data_root=voc_root,
        ann_file=voc_ann,
        data_prefix=dict(img='VOC2012/JPEGImages/')))
val_dataloader = test_dataloader
test_evaluator = dict(ann_file=voc_root + voc_ann)
val_evaluator = test_evaluator
