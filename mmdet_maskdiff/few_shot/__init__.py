"""The K-shot domain: which K-shot sample a run uses, where its split files
are, and the checks that the data, support set and checkpoint agree on it.

* :mod:`.config_keys` — the config keys users type (``few_shot.seed``,
  ``few_shot.check_checkpoint``, ``{seed}`` in ``load_from``);
* :mod:`.sample` — ``few_shot.seed`` applied to a config, and the K-shot
  datasets and support set a config names;
* :mod:`.checkpoint_sample` — a loaded checkpoint's K-shot sample against
  the run's;
* :mod:`.split_paths` — the seed -> split folder -> split file mapping
  (TFA's ``cocosplit`` layout);
* :mod:`.split_folder_check` — the one check (and message) that a seed's
  split files are on disk;
* :mod:`.data_check` — data mix, training shots and K-shot sample of a
  config, from annotations only (``tools/analysis_tools/check_fsis_data.py``);
* :mod:`.novel_head_init` — TFA's novel-row re-initialisation of the box
  predictor between stage 1a and stage 1b.

The modules exported here import nothing above :mod:`mmdet_maskdiff.utils`,
so that the datasets can use the split paths and check; :mod:`.data_check`
(which builds datasets and data loaders) and :mod:`.novel_head_init` (which
builds box predictors) are imported by their module path.
"""
from .checkpoint_sample import (check_checkpoint_sample, checkpoint_sample,
                                checkpoint_file_sample)
from .config_keys import FEW_SHOT_KEY, FEW_SHOT_KEYS, SEED_PLACEHOLDER
from .sample import (apply_few_shot_seed, few_shot_seed, k_shot_datasets,
                     run_k_shot_datasets, support_set_config,
                     support_set_hook_config, training_sample)
from .split_folder_check import check_split_folders, split_folder_problem
from .split_paths import SPLIT_FILE_TEMPLATE, few_shot_split_path, split_folder

__all__ = [
    'FEW_SHOT_KEY', 'FEW_SHOT_KEYS', 'SEED_PLACEHOLDER', 'apply_few_shot_seed',
    'few_shot_seed', 'k_shot_datasets', 'run_k_shot_datasets',
    'support_set_config', 'support_set_hook_config', 'training_sample',
    'check_checkpoint_sample', 'checkpoint_sample', 'checkpoint_file_sample',
    'check_split_folders', 'split_folder_problem', 'SPLIT_FILE_TEMPLATE',
    'few_shot_split_path', 'split_folder'
]
