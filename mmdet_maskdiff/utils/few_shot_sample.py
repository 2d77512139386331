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
set has no seed of its own. :func:`check_split_folders` stops a run whose
seed has no split files on disk, and :func:`check_checkpoint_sample` one that
loads a checkpoint trained on another seed or K (read from the training
config mmengine stores in the checkpoint's ``meta``).

:class:`~mmdet_maskdiff.engine.runner.FewShotRunner` (``runner_type`` in the
configs) applies all of this for ``tools/train.py``, ``tools/test.py``,
mmdet's own tools and mim.
"""
import glob
import os.path as osp
from typing import Any, Dict, List, Optional, Tuple

from mmengine.config import Config

from mmdet_maskdiff.datasets.few_shot_splits import SPLIT_FILE_TEMPLATE
from .cli_checks import InputError
from .config_tree import iter_config_dicts
from .safe_checkpoint import load_checkpoint_file, stored_config_value

#: the top-level config key that names the K-shot sample
FEW_SHOT_KEY = 'few_shot'
#: the keys of ``few_shot``: the sample's seed, and whether a loaded
#: checkpoint must have been trained on it (default True)
FEW_SHOT_KEYS = ('seed', 'check_checkpoint')
#: replaced by the seed in ``load_from``
SEED_PLACEHOLDER = '{seed}'
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


def _split_folder(node: dict, seed: int) -> Optional[str]:
    root = node['few_shot_root']
    data_root = node.get('data_root') or ''
    if data_root and not osp.isabs(root) and '://' not in root:
        root = osp.join(data_root, root)
    if '://' in root:
        return None  # a remote backend: the dataset reports missing files
    return root if seed == 0 else osp.join(root, f'seed{seed}')


def check_split_folders(cfg: Config) -> None:
    """Raise when a K-shot dataset's split folder for its seed has no split
    files of its K (before any model or dataset is built).

    Raises:
        InputError: one line naming the seed, K and the folder.
    """
    for path, node in run_k_shot_datasets(cfg):
        seed = node.get('seed', 0)
        folder = _split_folder(node, seed)
        if folder is None:
            continue
        for shots in sorted({
                node.get(key) or 0
                for key in ('num_base_shots', 'num_novel_shots')
        } - {0}):
            pattern = SPLIT_FILE_TEMPLATE.format(shots=shots, name='*')
            if not glob.glob(osp.join(glob.escape(folder), pattern)):
                where = ('no such folder' if not osp.isdir(folder) else
                         f'no {pattern} in it')
                raise InputError(
                    f'K-shot sample seed={seed} (K={shots}, {path}): split '
                    f'folder {folder}: {where}; make it with '
                    'tools/dataset_converters/prepare_few_shot_splits.py '
                    f'--seeds {seed} or copy TFA\'s cocosplit')


def checkpoint_sample(checkpoint: dict) -> Optional[Dict[str, Any]]:
    """The K-shot sample a checkpoint was trained on, read from the training
    config mmengine stores in ``checkpoint['meta']['cfg']`` (its
    ``train_dataloader``, read without executing the text:
    :func:`~.safe_checkpoint.stored_config_value`); None when the checkpoint
    has no such config or it trained on no K-shot set."""
    loader = stored_config_value(checkpoint, 'train_dataloader')
    if not isinstance(loader, dict):
        return None
    return training_sample(dict(train_dataloader=loader))


def checkpoint_file_sample(path: str) -> Optional[Dict[str, Any]]:
    """:func:`checkpoint_sample` of a local file (None when it is absent)."""
    if not path or not osp.isfile(path):
        return None
    return checkpoint_sample(load_checkpoint_file(path, map_location='cpu'))


def check_checkpoint_sample(cfg: Config, checkpoint: dict,
                            filename: str) -> None:
    """Raise when ``checkpoint`` was trained on another K-shot sample (seed
    or K) than the one ``cfg`` trains or tests with.

    Raises:
        InputError: one line naming the file and both samples.
    """
    if not (cfg.get(FEW_SHOT_KEY) or {}).get('check_checkpoint', True):
        return
    ours = training_sample(cfg)
    theirs = checkpoint_sample(checkpoint)
    if ours is None or theirs is None:
        return
    if (ours['seed'], ours['num_novel_shots']) != (
            theirs['seed'], theirs['num_novel_shots']):
        raise InputError(
            f'checkpoint {filename} was trained on the K-shot sample '
            f'seed={theirs["seed"]}, K={theirs["num_novel_shots"]}, but this '
            f'run uses seed={ours["seed"]}, K={ours["num_novel_shots"]}; load '
            f'the checkpoint of that seed and K ({FEW_SHOT_KEY}.seed moves '
            f'load_from when it contains {SEED_PLACEHOLDER}), or pass '
            f'--cfg-options {FEW_SHOT_KEY}.check_checkpoint=False')
