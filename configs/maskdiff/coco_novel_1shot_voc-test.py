# COCO -> VOC (FGN, Fan et al. 2020; MTFA / iMTFA's `LIKE_FGN_TEST_VOC`): the
# novel-only 1-shot model of coco_novel_1shot.py (trained on COCO: base
# classes in stage 1a, the 20 novel = VOC classes from COCO K-shot files)
# tested on PASCAL VOC 2012 val instance masks given as a COCO-format json.
# Compare with MTFA / iMTFA / FGN's COCO->VOC 1-shot AP / AP50 (README).
# Data (docs/data.md, "COCO -> VOC"):
#   data/voc/VOC2012/JPEGImages/*.jpg
#   data/voc/annotations/voc_2012_val_instances.json          (VOC names)
#   python tools/dataset_converters/voc_json_to_coco_names.py \
#       data/voc/annotations/voc_2012_val_instances.json \
#       data/voc/annotations/voc_2012_val_instances_coco-names.json
# Test (the support set stays the COCO K-shot set of the seed):
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
