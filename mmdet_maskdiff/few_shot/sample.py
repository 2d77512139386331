"""One K-shot sample per run, named once: ``few_shot = dict(seed=N)``.

TFA's protocol (Wang et al. 2020) repeats every few-shot experiment over 10
random K-shot samples (seeds 0-9). Five places of a run depend on the sample:
the fine-tuning set (stage 1b), stage 2's novel training set, the support set
k, the stage-1b checkpoint that stage 2 loads and the work dir. mmengine
resolves config variables when it parses a file, so a variable cannot carry a
``--cfg-options`` override to all of them; :func:`apply_few_shot_seed` does it
after parsing and overrides:

* every ``FewShotCocoDataset`` with a ``few_shot_root`` gets
  ``seed=few_shot.seed`` (a seed already written there must agree: a
  seed set by hand in one place only is an error, not silently replaced);
* ``{seed}`` in ``load_from`` is replaced by the seed;
* ``work_dir`` gets a ``seed<N>`` sub-directory (unless it already ends
  with it), so ``work_dirs/<config>/seed<N>/`` by default.

``SupportSetHook`` without a ``dataset`` derives the support set from the
training set's K-shot member (:func:`support_set_config`), so the support
set has no seed of its own. :mod:`.split_folder_check` stops a run whose
seed has no split files on disk, and :mod:`.checkpoint_sample` one that
loads a checkpoint trained on another seed or K.

:class:`~mmdet_maskdiff.engine.runner.FewShotRunner` (``runner_type`` in the
configs) applies all of this for ``tools/train.py``, ``tools/test.py``,
mmdet's own tools and mim.
"""
import os.path as osp
from typing import Any, Dict, List, Optional, Tuple

from mmengine.config import Config

from mmdet_maskdiff.utils.cli_checks import InputError
from mmdet_maskdiff.utils.config_tree import iter_config_dicts
from .config_keys import FEW_SHOT_KEY, SEED_PLACEHOLDER

DATASET_TYPE = 'FewShotCocoDataset'


def _is_k_shot_dataset(node: dict) -> bool:
    kind = node.get('type')
    return (isinstance(kind, str) and kind.split('.')[-1] == DATASET_TYPE
            and bool(node.get('few_shot_root')))


def k_shot_datasets(tree: Any, path: str = '') -> List[Tuple[str, dict]]:
    """``(dotted path, dataset config)`` of every ``FewShotCocoDataset``
    that reads K-shot files (has ``few_shot_root``) in ``tree``."""
    return [(p, node) for p, node in iter_config_dicts(tree, path)
            if _is_k_shot_dataset(node)]


def support_set_hook_config(cfg: Any) -> Optional[dict]:
    """The ``SupportSetHook`` entry of ``cfg.custom_hooks`` (a stage-2
    config), or None."""
    for hook in cfg.get('custom_hooks', None) or []:
        kind = hook.get('type')
        if isinstance(kind, str) and kind.split('.')[-1] == 'SupportSetHook':
            return hook
    return None


#: the parts of a config that build datasets (top-level variables such as
#: ``few_shot_set`` are only text that these copy)
RUN_KEYS = ('train_dataloader', 'val_dataloader', 'test_dataloader',
            'custom_hooks')


def run_k_shot_datasets(cfg: Config) -> List[Tuple[str, dict]]:
    """:func:`k_shot_datasets` of the parts of ``cfg`` a run builds (the
    nodes themselves, so that they can be changed in place)."""
    found = []
    for key in RUN_KEYS:
        if cfg.get(key) is not None:
            found += k_shot_datasets(cfg._cfg_dict[key], key)
    return found


def few_shot_seed(cfg: Config) -> Optional[int]:
    """``few_shot.seed`` of ``cfg``, or None when the config has none.

    Raises:
        InputError: the seed is not an int >= 0.
    """
    few_shot = cfg.get(FEW_SHOT_KEY)
    if not few_shot:
        return None
    seed = few_shot.get('seed')
    if isinstance(seed, bool) or not isinstance(seed, int) or seed < 0:
        raise InputError(f'{FEW_SHOT_KEY}.seed must be an int >= 0 (a TFA '
                         f'seed, 0-9), got {seed!r}')
    return seed


def apply_few_shot_seed(cfg: Config) -> Optional[int]:
    """Point every K-shot dependent place of ``cfg`` at ``few_shot.seed``
    (in place; applying it twice changes nothing more).

    Args:
        cfg (Config): A parsed config after ``--cfg-options``; ``work_dir``
            set or not.

    Returns:
        int | None: The seed, or None when ``cfg`` has no ``few_shot``.

    Raises:
        InputError: a bad seed, or a dataset whose ``seed`` was set to
            another value by hand.
    """
    seed = few_shot_seed(cfg)
    if seed is None:
        return None
    for path, node in run_k_shot_datasets(cfg):
        if node.get('seed', seed) != seed:
            raise InputError(
                f'{path}.seed={node["seed"]} but {FEW_SHOT_KEY}.seed={seed}: '
                'the config names the K-shot sample twice (a seed written '
                'into a dataset by hand, or the config the Runner saved '
                'beside a checkpoint, which has its run\'s seed resolved '
                'into every dataset); take the config from configs/, whose '
                'datasets leave seed unset, and choose the sample only with '
                f'--cfg-options {FEW_SHOT_KEY}.seed=N')
        node['seed'] = seed
    load_from = cfg.get('load_from')
    if isinstance(load_from, str) and SEED_PLACEHOLDER in load_from:
        cfg.load_from = load_from.replace(SEED_PLACEHOLDER, str(seed))
    work_dir = cfg.get('work_dir')
    if work_dir and osp.basename(osp.normpath(work_dir)) != f'seed{seed}':
        cfg.work_dir = osp.join(work_dir, f'seed{seed}')
    return seed


def training_sample(tree: Any) -> Optional[Dict[str, Any]]:
    """The K-shot sample (``seed``, ``num_novel_shots``) of the first K-shot
    member of a config's training set, or None (e.g. base training).

    Args:
        tree: A config (``Config`` or its dict).
    """
    loader = tree.get('train_dataloader') if hasattr(tree, 'get') else None
    found = k_shot_datasets(loader or {})
    if not found:
        return None
    node = found[0][1]
    return dict(
        seed=node.get('seed', 0), num_novel_shots=node.get('num_novel_shots'))


def support_set_config(cfg: Any, hook_dataset: Optional[dict] = None) -> dict:
    """The dataset config of the support set k.

    ``hook_dataset`` (``SupportSetHook``'s ``dataset``) when given;
    otherwise the training set's K-shot member with every class at K shots
    (K = its ``num_novel_shots``): stage 2 trains on the member's novel
    shots, and the support set holds the base and novel shots of the same
    files and seed.

    Raises:
        InputError: ``hook_dataset`` is None and the training set has not
            exactly one K-shot member.
    """
    if hook_dataset is not None:
        return hook_dataset
    members = k_shot_datasets(cfg.get('train_dataloader') or {},
                              'train_dataloader')
    if len(members) != 1:
        raise InputError(
            'SupportSetHook without a dataset takes the support set from the '
            'K-shot member of train_dataloader, but it has '
            f'{len(members)} ({", ".join(p for p, _ in members) or "none"});'
            ' give the hook a dataset')
    member = dict(members[0][1])
    shots = member.get('num_novel_shots') or member.get('num_base_shots')
    member.update(num_base_shots=shots, num_novel_shots=shots)
    return member
