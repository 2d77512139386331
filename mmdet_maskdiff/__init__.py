"""MaskDiff for MMDetection 3.x: few-shot instance segmentation with a
conditional diffusion model over binary masks (Le et al., AAAI 2024,
arXiv:2303.05105).

Importing the package registers every component into mmdet's registries, so a
config only needs ``custom_imports=dict(imports=['mmdet_maskdiff'])``.

The diffusion core (:mod:`mmdet_maskdiff.diffusion`) and the denoising network
(:mod:`mmdet_maskdiff.networks`) depend on torch alone; they stay importable on
a machine without the OpenMMLab stack (for example to time the sampler on a
bare GPU box). Everything that touches mmdet is imported only when mmdet is
installed — and then for real, so a broken install fails loudly here instead of
surfacing later as "X is not in the registry". Importing it also
makes mmengine load local checkpoints without running code they carry
(:mod:`mmdet_maskdiff.utils.safe_checkpoint`).
"""
from importlib.util import find_spec

from .version import __version__

__all__ = ['__version__']

if find_spec('mmdet') is not None:
    from . import compat  # noqa: F401  (stack fixes first)
    from . import datasets, engine, evaluation, models  # noqa: F401
    from .utils.safe_checkpoint import register_checkpoint_loader
    register_checkpoint_loader()  # mmengine loads weights-only from here on
