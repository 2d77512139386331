"""model-index.yml / configs/maskdiff/metafile.yml (mmdet's model-zoo
format, read by ``mim search``) name every config, and only existing ones."""
import os
import os.path as osp

import yaml

REPO = osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__))))


def load(path):
    with open(osp.join(REPO, path), encoding='utf-8') as f:
        return yaml.safe_load(f)


def test_model_index_imports_the_metafile():
    assert load('model-index.yml') == {
        'Import': ['configs/maskdiff/metafile.yml']
    }


def test_metafile_lists_every_config_once_without_weights():
    meta = load('configs/maskdiff/metafile.yml')
    assert [c['Name'] for c in meta['Collections']] == ['MaskDiff']
    models = meta['Models']
    configs = [m['Config'] for m in models]
    assert len(set(configs)) == len(configs)
    assert len({m['Name'] for m in models}) == len(models)
    on_disk = sorted(
        f'configs/maskdiff/{name}'
        for name in os.listdir(osp.join(REPO, 'configs', 'maskdiff'))
        if name.endswith('.py'))
    assert sorted(configs) == on_disk
    for model in models:
        assert model['In Collection'] == 'MaskDiff'
        assert model['Weights'] is None, model['Name']  # none published yet
