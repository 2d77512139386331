"""Importing mmdet_maskdiff registers its components in mmdet's registries;
the diffusion core and the denoising network import without OpenMMLab."""
import os.path as osp
import subprocess
import sys

import pytest

REPO = osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__))))

EXPECTED = {
    'MODELS': ('MaskDiffRCNN', 'FewShotRoIHead', 'DiffusionMaskHead',
               'MaskDenoisingUNet', 'CosineSimLinear'),
    'DATASETS': ('FewShotCocoDataset', ),
    'METRICS': ('FewShotCocoMetric', 'MaskIoUMetric'),
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


# Makes mmdet, mmcv and mmengine absent, as on a machine with torch only:
# a `None` entry in sys.modules is CPython's way to make `import x` raise
# ModuleNotFoundError and `importlib.util.find_spec(x)` return None (what the
# package checks); the finder in front of sys.meta_path raises ImportError
# for anything below these names that would still be looked up.
NO_OPENMMLAB = r'''
import importlib.abc
import sys

BLOCKED = ('mmdet', 'mmcv', 'mmengine')


class Blocker(importlib.abc.MetaPathFinder):

    def find_spec(self, name, path=None, target=None):
        if name.split('.')[0] in BLOCKED:
            raise ImportError(f'{name} is blocked in this test', name=name)
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
        raise SystemExit(f'{name} could still be imported')

import mmdet_maskdiff.diffusion
import mmdet_maskdiff.networks
from mmdet_maskdiff.diffusion import GaussianDiffusion, get_beta_schedule
from mmdet_maskdiff.networks import MaskDenoisingUNet

GaussianDiffusion(get_beta_schedule('linear', 100))
loaded = sorted(m for m, v in sys.modules.items()
                if v is not None and m.split('.')[0] in BLOCKED)
assert not loaded, loaded
print('ok')
'''


def test_torch_only_parts_import_without_openmmlab():
    proc = subprocess.run([sys.executable, '-c', NO_OPENMMLAB],
                          cwd=REPO,
                          stdout=subprocess.PIPE,
                          stderr=subprocess.PIPE,
                          text=True,
                          timeout=120)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert proc.stdout.strip().endswith('ok')
