"""Importing mmdet_maskdiff registers its components in mmdet's registries;
the diffusion core, the denoising network and the support bank import
without OpenMMLab, and model code does not reach the image readers."""
import ast
import glob
import os.path as osp
import subprocess
import sys

import pytest

REPO = osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__))))

EXPECTED = {
    'MODELS': ('MaskDiffRCNN', 'FewShotRoIHead', 'DiffusionMaskHead',
               'RegressionMaskHead', 'MaskDenoisingUNet', 'CosineSimLinear'),
    'DATASETS': ('FewShotCocoDataset', ),
    'METRICS': ('FewShotCocoMetric', 'MaskIoUMetric',
                'MaskUncertaintyMetric'),
    'HOOKS': ('SupportSetHook', 'DiffusionSamplerHook'),
    'LOOPS': ('OracleBoxTestLoop', ),
}


@pytest.mark.parametrize('registry,name',
                         [(registry, name)
                          for registry, names in EXPECTED.items()
                          for name in names])
def test_registered_in_mmdet(registry, name):
    import mmdet.registry

    import mmdet_maskdiff  # noqa: F401
    reg = getattr(mmdet.registry, registry)
    assert reg.scope == 'mmdet'
    obj = reg.get(name)
    assert obj is not None, f'{name} is not in mmdet {registry}'
    assert obj is reg.module_dict[name]
    assert obj.__module__.startswith('mmdet_maskdiff.')


# Makes the BLOCKED packages absent, as on a machine with torch only:
# a `None` entry in sys.modules is CPython's way to make `import x` raise
# ModuleNotFoundError and `importlib.util.find_spec(x)` return None (what the
# package checks); the finder in front of sys.meta_path raises ImportError
# for anything below these names that would still be looked up.
BLOCK = r'''
import importlib.abc
import sys

BLOCKED = {blocked!r}


class Blocker(importlib.abc.MetaPathFinder):

    def find_spec(self, name, path=None, target=None):
        if name.split('.')[0] in BLOCKED:
            raise ImportError(f'{{name}} is blocked in this test', name=name)
        return None


sys.meta_path.insert(0, Blocker())
for name in BLOCKED:
    sys.modules[name] = None
for name in BLOCKED:
    try:
        __import__(name)
    except ImportError:
        pass
    else:
        raise SystemExit(f'{{name}} could still be imported')
'''

LOADED = r'''
loaded = sorted(m for m, v in sys.modules.items()
                if v is not None and m.split('.')[0] in BLOCKED)
assert not loaded, loaded
print('ok')
'''

NO_OPENMMLAB = BLOCK.format(blocked=('mmdet', 'mmcv', 'mmengine')) + r'''
import mmdet_maskdiff.diffusion
import mmdet_maskdiff.networks
from mmdet_maskdiff.diffusion import GaussianDiffusion, get_beta_schedule
from mmdet_maskdiff.networks import MaskDenoisingUNet

GaussianDiffusion(get_beta_schedule('linear', 100))
''' + LOADED

# The bank that model code holds: torch alone, no image reader (cv2,
# pycocotools, mmcv) and no OpenMMLab; shot selection works.
TORCH_ONLY_BANK = BLOCK.format(
    blocked=('mmdet', 'mmcv', 'mmengine', 'cv2', 'pycocotools')) + r'''
import torch
from mmdet_maskdiff.structures import SupportBank

bank = SupportBank(
    crops=torch.zeros((3, 3, 4, 4), dtype=torch.uint8),
    masks=torch.zeros((3, 1, 4, 4), dtype=torch.uint8),
    labels=torch.tensor([0, 1, 1]),
    img_ids=torch.tensor([7, 8, 9]),
    num_classes=2,
    class_names=('a', 'b'))
assert bank.fixed(torch.tensor([1, 0]), 2).tolist() == [[1, 2], [0, 0]]
assert bank.sample(torch.tensor([1]), 1, exclude_img_ids=[8]).tolist() == [[2]]
''' + LOADED


def _run_blocked(script: str) -> None:
    proc = subprocess.run([sys.executable, '-c', script],
                          cwd=REPO,
                          stdout=subprocess.PIPE,
                          stderr=subprocess.PIPE,
                          text=True,
                          timeout=120)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert proc.stdout.strip().endswith('ok')


def test_torch_only_parts_import_without_openmmlab():
    _run_blocked(NO_OPENMMLAB)


def test_support_bank_imports_without_image_readers():
    _run_blocked(TORCH_ONLY_BANK)


def test_model_code_does_not_import_the_data_package():
    """Model code gets ``SupportBank`` from ``mmdet_maskdiff.structures``:
    nothing under ``models/`` imports ``mmdet_maskdiff.datasets`` (which
    reads images with cv2 and masks with pycocotools)."""
    offenders = []
    files = glob.glob(
        osp.join(REPO, 'mmdet_maskdiff', 'models', '**', '*.py'),
        recursive=True)
    assert files
    for path in files:
        with open(path) as f:
            tree = ast.parse(f.read(), path)
        for node in ast.walk(tree):
            if isinstance(node, ast.ImportFrom):
                names = [node.module or '']
                if node.level:  # relative: resolve against the file
                    package = osp.relpath(osp.dirname(path),
                                          REPO).split(osp.sep)
                    base = package[:len(package) - node.level + 1]
                    names = [
                        '.'.join(base + ([node.module] if node.module else []))
                    ]
            elif isinstance(node, ast.Import):
                names = [alias.name for alias in node.names]
            else:
                continue
            for name in names:
                if name.split('.')[:2] == [
                        'mmdet_maskdiff', 'datasets'
                ] or (name.split('.')[0] in ('cv2', 'pycocotools')):
                    offenders.append(f'{osp.relpath(path, REPO)}: {name}')
    assert not offenders, offenders
