"""Data that would be scored wrongly without a word is refused, in one line
naming the file, the record and the rule (issue 20, item 3).

Each case corrupts a copy of the session's synthetic test set (8 images of
128x128, tests/conftest.py) and checks the error of the dataset or the metric
(fast, in this process); the tool cases run ``tools/test.py`` and the split
tool in this process (``run_tool_here``) and check exit status 2 and the one
line. Valid data still loads (last tests).
"""
import copy
import json
import os
import os.path as osp
import shutil
import sys

import pytest
from mmengine.registry import init_default_scope

import mmdet_maskdiff  # noqa: F401  (registers components)
from mmdet_maskdiff.datasets import FewShotCocoDataset
from mmdet_maskdiff.datasets import few_shot_coco
from mmdet_maskdiff.evaluation import FewShotCocoMetric

sys.path.insert(0, osp.join(osp.dirname(osp.dirname(__file__)), 'test_tools'))
from _tool_helpers import describe, run_tool_here, write_config  # noqa: E402

SPLIT_TOOL = 'dataset_converters/prepare_few_shot_splits.py'
PIPELINE = [
    dict(type='LoadImageFromFile'),
    dict(type='LoadAnnotations', with_bbox=True, with_mask=True),
]


def _read(path):
    with open(path, encoding='utf-8') as f:
        return json.load(f)


def _write(path, data):
    with open(path, 'w', encoding='utf-8') as f:
        json.dump(data, f)
    return str(path)


def _dataset(ann_file, img_dir, test_mode=True, **kwargs):
    init_default_scope('mmdet')  # mmdet's LoadAnnotations
    return FewShotCocoDataset(
        ann_file=ann_file,
        data_prefix=dict(img=img_dir),
        classes='ALL',
        class_splits='synthetic',
        test_mode=test_mode,
        pipeline=PIPELINE,
        **kwargs)


def _one_line(message):
    assert '\n' not in str(message).strip(), message
    return str(message)


# ---------------------------------------------------------------------- #
# corruptions of the test json (data -> data, in place) and the words of
# the error: file name, record, rule
# ---------------------------------------------------------------------- #
def _repeat_image_record(data):
    data['images'].append(copy.deepcopy(data['images'][0]))


def _two_files_one_id(data):
    data['images'][1]['id'] = data['images'][0]['id']


def _one_file_two_ids(data):
    data['images'][1]['file_name'] = data['images'][0]['file_name']


def _undeclared_category(data):
    data['annotations'][2]['category_id'] = 99


def _no_annotation_of_the_classes(data):
    data['categories'].append(dict(id=99, name='unicorn'))
    for ann in data['annotations']:
        ann['category_id'] = 99


def _zero_area_boxes(data):
    for ann in data['annotations'][::3]:
        ann['area'] = 0


def _polygons_outside(data):
    for ann in data['annotations'][::3]:
        x, y, w, h = ann['bbox']
        ann['segmentation'] = [[x, y, x + 500, y, x + 500, y + h]]


def _empty_segmentations(data):
    for ann in data['annotations'][::3]:
        ann['segmentation'] = []


def _recorded_smaller(data):
    for img in data['images']:
        img['width'] = img['height'] = 64


def _recorded_larger(data):
    """Image 3 recorded 160 px wide; its masks become polygons (an RLE
    records its size, so it would be invalid at 160 px already)."""
    data['images'][2]['width'] = 160
    for ann in data['annotations']:
        if ann['image_id'] == 3:
            x, y, w, h = ann['bbox']
            ann['segmentation'] = [[x, y, x + w, y, x + w, y + h, x, y + h]]


def _invalid_rule(first):
    return [
        'bad.json', 'are invalid, more than max_invalid_fraction=0.01',
        'first: annotation 1 (image 1) ' + first, 'instance_validity.py'
    ]


#: case -> (corruption, words of the load-time error)
LOAD_CASES = {
    'repeated_image_record':
    (_repeat_image_record,
     ['image id 1 appears twice in', 'bad.json', '(images[0] and images[8])',
      'needs its own id']),
    'two_files_one_id': (_two_files_one_id, [
        'image id 1 appears twice in', 'bad.json',
        '(images[0] and images[1])'
    ]),
    'one_file_two_ids': (_one_file_two_ids, [
        "file name '000001.png' appears twice in", 'bad.json',
        '(image ids 1 and 2)', 'scored twice'
    ]),
    'undeclared_category': (_undeclared_category, [
        'annotation 3 of', 'bad.json', 'has category_id 99',
        "not in 'categories'"
    ]),
    'no_annotation_of_the_classes': (_no_annotation_of_the_classes, [
        'bad.json', 'has no annotation of the 8 classes evaluated',
        'every AP would be -1'
    ]),
    'zero_area_boxes': (_zero_area_boxes, _invalid_rule('has zero area')),
    'polygons_outside':
    (_polygons_outside,
     _invalid_rule('has a polygon outside the 128x128 image')),
    'empty_segmentations':
    (_empty_segmentations,
     _invalid_rule('has an empty segmentation ([])')),
    'recorded_smaller_than_the_image':
    (_recorded_smaller,
     ['bad.json', 'are invalid', 'outside the 64x64 image']),
}


@pytest.fixture
def corrupt(synthetic_data, tmp_path):
    """``corrupt(fn)``: a copy of the test json changed by ``fn``, as
    ``tmp_path/bad.json``."""

    def make(change):
        data = _read(synthetic_data['test_ann'])
        change(data)
        return _write(tmp_path / 'bad.json', data)

    return make


@pytest.mark.parametrize('case', sorted(LOAD_CASES))
def test_dataset_refuses_at_load(case, corrupt, synthetic_data):
    change, words = LOAD_CASES[case]
    with pytest.raises(ValueError) as info:
        _dataset(corrupt(change), synthetic_data['test_img_dir'])
    message = _one_line(info.value)
    for word in words:
        assert word in message, message


#: the file rules the metric applies to its own ann_file
METRIC_CASES = ('repeated_image_record', 'one_file_two_ids',
                'undeclared_category', 'no_annotation_of_the_classes')


@pytest.mark.parametrize('case', METRIC_CASES)
def test_metric_refuses_its_ann_file(case, corrupt, synthetic_data):
    change, words = LOAD_CASES[case]
    good = _dataset(synthetic_data['test_ann'],
                    synthetic_data['test_img_dir'])
    with pytest.raises(ValueError) as info:
        metric = FewShotCocoMetric(ann_file=corrupt(change))
        metric.dataset_meta = good.metainfo  # the classes are known here
    message = _one_line(info.value)
    for word in words:
        assert word in message, message


def test_decoded_size_differs_from_record(corrupt, synthetic_data):
    """Recorded larger than the image: every annotation is valid at the
    recorded size, so only decoding the image tells."""
    dataset = _dataset(
        corrupt(_recorded_larger), synthetic_data['test_img_dir'])
    dataset[0]  # the other images load
    with pytest.raises(ValueError) as info:
        dataset[2]
    assert _one_line(info.value) == (
        f"image {osp.join(synthetic_data['test_img_dir'], '000003.png')} "
        f"(image 3 of {dataset.ann_file}) is 128x128 (W x H) when decoded "
        'but 160x128 in its record: its boxes and masks would not fit the '
        'picture; correct width / height in the annotation file')


def test_missing_image_files_are_found_when_a_test_set_loads(
        synthetic_data, tmp_path):
    img_dir = tmp_path / 'images'
    shutil.copytree(synthetic_data['test_img_dir'], img_dir)
    os.remove(img_dir / '000003.png')
    os.remove(img_dir / '000005.png')
    with pytest.raises(FileNotFoundError) as info:
        _dataset(synthetic_data['test_ann'], str(img_dir))
    assert _one_line(info.value) == (
        f"2 of 8 image files of {synthetic_data['test_ann']} not found "
        f"(first: image 3, {img_dir / '000003.png'}); check data_root / "
        'data_prefix.img')
    # a training set is not checked up front; its missing file is named
    # with its record when it is read
    train_set = _dataset(
        synthetic_data['test_ann'], str(img_dir), test_mode=False)
    with pytest.raises(FileNotFoundError) as info:
        train_set[2]
    assert _one_line(info.value) == (
        f"image file {img_dir / '000003.png'} (image 3 of "
        f"{synthetic_data['test_ann']}) not found; check data_root / "
        'data_prefix.img')


def test_image_folder_pointing_nowhere(synthetic_data, tmp_path):
    nowhere = str(tmp_path / 'no_such_folder')
    with pytest.raises(FileNotFoundError) as info:
        _dataset(synthetic_data['test_ann'], nowhere)
    assert _one_line(info.value) == (
        f'image folder {nowhere} (data_prefix.img under data_root) not '
        'found; it should hold the 8 images of '
        f"{synthetic_data['test_ann']}")


def test_a_few_invalid_annotations_are_a_warning_naming_file_and_count(
        corrupt, synthetic_data, monkeypatch):
    """Under max_invalid_fraction: skipped, with file, count and the first
    one; a training set (no limit) is the same."""
    logged = []
    monkeypatch.setattr(few_shot_coco, 'print_log',
                        lambda msg, **kwargs: logged.append(msg))

    def one_zero_area(data):
        data['annotations'][1]['area'] = 0

    bad = corrupt(one_zero_area)
    anns = _read(bad)['annotations']
    num, first = len(anns), anns[1]
    dataset = _dataset(
        bad, synthetic_data['test_img_dir'], max_invalid_fraction=0.2)
    assert sum(len(dataset.get_data_info(i)['instances'])
               for i in range(len(dataset))) == num - 1
    assert logged == [
        f'FewShotCocoDataset: skipped 1 of {num} annotations '
        f"({100 / num:.2f} %) of {bad} as invalid (first: annotation "
        f"{first['id']} (image {first['image_id']}) has zero area (area=0); "
        'rule: '
        'mmdet_maskdiff/datasets/instance_validity.py)'
    ]
    with pytest.raises(ValueError, match='more than max_invalid_fraction'):
        _dataset(bad, synthetic_data['test_img_dir'])
    _dataset(bad, synthetic_data['test_img_dir'], test_mode=False)
    with pytest.raises(ValueError, match='max_invalid_fraction must be'):
        _dataset(bad, synthetic_data['test_img_dir'], max_invalid_fraction=2)


# ---------------------------------------------------------------------- #
# through tools/test.py: exit status 2 and one line
# ---------------------------------------------------------------------- #
@pytest.fixture(scope='module')
def tiny_run(synthetic_data, tmp_path_factory):
    """coco_1shot.py at CPU scale on the session's synthetic data, and a
    checkpoint that fits its model (freshly initialised: these runs stop
    before any prediction)."""
    import torch
    from mmengine.config import Config
    from mmengine.registry import init_default_scope
    from mmdet.registry import MODELS
    base = tmp_path_factory.mktemp('bad_data_run')
    config = write_config(str(base / 'tiny_coco_1shot.py'),
                          synthetic_data['root'])
    init_default_scope('mmdet')
    model = MODELS.build(Config.fromfile(config).model)
    checkpoint = str(base / 'fresh.pth')
    torch.save(dict(state_dict=model.state_dict()), checkpoint)
    return dict(base=base, config=config, checkpoint=checkpoint)


def _test_tool(tiny_run, tmp_path, options):
    return run_tool_here('test.py', [
        tiny_run['config'], tiny_run['checkpoint'], '--work-dir',
        str(tmp_path / 'work_dir'), '--cfg-options'
    ] + [f'{key}={value}' for key, value in options.items()], str(tmp_path))


def _error_line(proc):
    assert proc.returncode == 2, describe(proc)
    assert 'Traceback' not in proc.stdout + proc.stderr, describe(proc)
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith('error: '), describe(proc)
    return lines[0]


def _in_test_set(change):
    """Options: the dataset and the metric read the corrupted file."""

    def options(make_bad, tmp_path):
        bad = make_bad(change)
        return {
            'test_dataloader.dataset.ann_file': bad,
            'test_evaluator.ann_file': bad
        }

    return options


#: case -> (--cfg-options builder, words of the error line); the file
#: rules of the dataset and of the metric, the decoded size (read in this
#: process and in a data loader worker) and the image folder
TOOL_CASES = {
    'repeated_image_record':
    (_in_test_set(_repeat_image_record),
     ['image id 1 appears twice in', 'bad.json', '(images[0] and images[8])']),
    'metric_file_only': (lambda make_bad, tmp_path: {
        'test_evaluator.ann_file': make_bad(_undeclared_category)
    }, ['annotation 3 of', 'bad.json', 'has category_id 99']),
    'decoded_size':
    (_in_test_set(_recorded_larger),
     ['000003.png (image 3 of', 'bad.json', 'is 128x128 (W x H) when '
      'decoded but 160x128 in its record']),
    'decoded_size_in_a_worker': (lambda make_bad, tmp_path: dict(
        _in_test_set(_recorded_larger)(make_bad, tmp_path),
        **{'test_dataloader.num_workers': 1}), [
            '000003.png (image 3 of', 'bad.json',
            'is 128x128 (W x H) when decoded but 160x128 in its record'
        ]),
    'image_folder_nowhere': (lambda make_bad, tmp_path: {
        'test_dataloader.dataset.data_prefix.img': str(tmp_path / 'nowhere')
    }, ['image folder', 'nowhere (data_prefix.img under data_root) not found'
        ]),
}


@pytest.mark.parametrize('case', sorted(TOOL_CASES))
def test_test_tool_refuses_bad_test_data(case, tiny_run, corrupt, tmp_path):
    make_options, words = TOOL_CASES[case]
    line = _error_line(
        _test_tool(tiny_run, tmp_path, make_options(corrupt, tmp_path)))
    for word in words:
        assert word in line, line


def test_test_tool_refuses_batch_size_zero(tiny_run, tmp_path):
    line = _error_line(
        _test_tool(tiny_run, tmp_path, {'test_dataloader.batch_size': 0}))
    assert line == ('error: test_dataloader.batch_size must be an integer '
                    '>= 1, got 0')


# ---------------------------------------------------------------------- #
# the split tool
# ---------------------------------------------------------------------- #
def _split_tool(args, cwd):
    return run_tool_here(SPLIT_TOOL, [str(a) for a in args], str(cwd))


def test_split_tool_never_draws_an_instance_without_mask(
        synthetic_data, tmp_path):
    data = _read(synthetic_data['train_ann'])
    hearts = [a for a in data['annotations'] if a['category_id'] == 8]
    for ann in hearts[:-2]:
        ann['segmentation'] = []
    source = _write(tmp_path / 'train.json', data)
    out = tmp_path / 'splits'
    line = _error_line(
        _split_tool([source, out, '--shots', '3', '--seeds', '0'], tmp_path))
    assert line == (f"error: class 'heart' has 2 valid non-crowd instances "
                    f'in {source}, fewer than K=3 (valid: '
                    'mmdet_maskdiff.datasets.instance_validity)')
    proc = _split_tool([source, out, '--shots', '2', '--seeds', '0-2'],
                       tmp_path)
    assert proc.returncode == 0, describe(proc)
    drawn = set()
    for seed in range(3):
        folder = out if seed == 0 else out / f'seed{seed}'
        split = _read(folder / 'full_box_2shot_heart_trainval.json')
        drawn |= {a['id'] for a in split['annotations']}
    assert drawn == {a['id'] for a in hearts[-2:]}


def test_split_tool_refuses_bad_source_and_output(synthetic_data, tmp_path):
    data = _read(synthetic_data['train_ann'])
    _two_files_one_id(data)
    source = _write(tmp_path / 'train.json', data)
    line = _error_line(_split_tool([source, tmp_path / 'out'], tmp_path))
    assert line.startswith(f'error: image id 1 appears twice in {source} '
                           '(images[0] and images[1])'), line
    a_file = tmp_path / 'a_file'
    a_file.write_text('')
    line = _error_line(
        _split_tool([synthetic_data['train_ann'], a_file / 'splits'],
                    tmp_path))
    assert line == (f'error: cannot write split files to {a_file}/splits: '
                    f'{a_file} is a file, not a folder')
    assert not os.path.exists(tmp_path / 'out')  # nothing was written


@pytest.mark.skipif(
    os.geteuid() == 0, reason='root writes into read-only folders')
def test_split_tool_refuses_a_read_only_folder(synthetic_data, tmp_path):
    read_only = tmp_path / 'read_only'
    read_only.mkdir(mode=0o555)
    line = _error_line(
        _split_tool([synthetic_data['train_ann'], read_only / 'splits'],
                    tmp_path))
    assert line == (f'error: cannot write split files to {read_only}/splits'
                    f': {read_only} is not writable')


# ---------------------------------------------------------------------- #
# valid data
# ---------------------------------------------------------------------- #
def test_valid_test_set_loads_without_a_word(synthetic_data, monkeypatch):
    logged = []
    monkeypatch.setattr(few_shot_coco, 'print_log',
                        lambda msg, **kwargs: logged.append(msg))
    dataset = _dataset(synthetic_data['test_ann'],
                       synthetic_data['test_img_dir'])
    assert len(dataset) == 8 and logged == []
    sample = dataset[0]
    assert sample['img'].shape[:2] == (128, 128)
    assert len(sample['gt_masks']) == len(
        dataset.get_data_info(0)['instances'])
    metric = FewShotCocoMetric(ann_file=synthetic_data['test_ann'])
    metric.dataset_meta = dataset.metainfo
