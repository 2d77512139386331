"""The config keys that name a run's K-shot sample: ``few_shot = dict(
seed=N, check_checkpoint=True)`` and ``{seed}`` in ``load_from``.

Kept apart from :mod:`.sample` and free of imports, so that the
``--cfg-options`` key check (:mod:`mmdet_maskdiff.utils.config_overrides`)
can name them without importing the few-shot code.
"""

#: the top-level config key that names the K-shot sample
FEW_SHOT_KEY = 'few_shot'
#: the keys of ``few_shot``: the sample's seed, and whether a loaded
#: checkpoint must have been trained on it (default True)
FEW_SHOT_KEYS = ('seed', 'check_checkpoint')
#: replaced by the seed in ``load_from``
SEED_PLACEHOLDER = '{seed}'
