"""Builds the K-shot support bank and hands it to the model."""
from typing import Iterator, Optional

from mmengine.hooks import Hook

from mmdet.registry import DATASETS, HOOKS
from mmdet_maskdiff.datasets.few_shot_coco import FewShotCocoDataset
from mmdet_maskdiff.datasets.support_bank import (SupportBank,
                                                  build_support_bank)
from mmdet_maskdiff.utils.few_shot_sample import support_set_config
from .runner_model import unwrap_model


def _members(dataset) -> Iterator:
    """``dataset`` and the datasets it wraps (Concat/Repeat/ClassBalanced)."""
    yield dataset
    for child in getattr(dataset, 'datasets', None) or []:
        yield from _members(child)
    child = getattr(dataset, 'dataset', None)
    if child is not None:
        yield from _members(child)


def _sample(dataset: FewShotCocoDataset) -> str:
    return (f'seed={dataset.seed}, num_novel_shots={dataset.num_novel_shots}'
            f', few_shot_root={dataset.few_shot_root!r}')


@HOOKS.register_module()
class SupportSetHook(Hook):
    """Give the detector the support instances that form the K-shot
    information k.

    Two banks are kept:

    * the **test bank**, built from the support set: by default the K-shot
      member of the runner's training set (``FewShotCocoDataset`` with
      ``few_shot_root``) with every class at K shots — the same split files
      and seed (``few_shot.seed``), so it is configured once
      (:func:`~mmdet_maskdiff.utils.few_shot_sample.support_set_config`);
      or ``dataset`` when given. It is used for validation and testing; the
      RoI head encodes it once per run;
    * the **training bank**, built from ``train_dataset`` or, when that is
      None, from the runner's training dataset. Training shots of a class are
      drawn from it at random, from images other than the query batch.

    Both are built once (lazily) and reused; the model's test-time support
    encoding is refreshed before every val/test run.

    Args:
        dataset (dict, optional): Dataset config of the test-time support
            set. Defaults to None: derived from the training set's K-shot
            member.
        train_dataset (dict, optional): Dataset config of the training
            support pool. Defaults to the training dataset.
        crop_size (int): Side S of the square support crops. Defaults to 64.
        context (float): Margin added on every side of a support box, as a
            fraction of its size. Defaults to 0.1.
        max_train_per_class (int, optional): Cap on training-pool instances
            per class (memory: S·S·4 bytes each). Defaults to 200.
        seed (int): Seed of the capped subset. Defaults to 0.
        check_sample (bool): Before training, require every K-shot member of
            the training set (a ``FewShotCocoDataset`` with ``few_shot_root``)
            to use the same K-shot sample as the support set — seed, novel
            shots and split folder — so that the novel instances trained on
            and the support set k come from one seed. Only a ``dataset``
            given by hand can differ; a mismatch raises ``ValueError``.
            Defaults to True.
    """

    priority = 'HIGH'

    def __init__(self,
                 dataset: Optional[dict] = None,
                 train_dataset: Optional[dict] = None,
                 crop_size: int = 64,
                 context: float = 0.1,
                 max_train_per_class: Optional[int] = 200,
                 seed: int = 0,
                 check_sample: bool = True) -> None:
        self.dataset_cfg = dataset
        self.train_dataset_cfg = train_dataset
        self.crop_size = crop_size
        self.context = context
        self.max_train_per_class = max_train_per_class
        self.seed = seed
        self.check_sample = check_sample
        self._support_set = None
        self._runner_cfg = None
        self._test_bank: Optional[SupportBank] = None
        self._train_bank: Optional[SupportBank] = None

    def _build(self, dataset, max_per_class: Optional[int],
               on_invalid: str) -> SupportBank:
        if isinstance(dataset, dict):
            dataset = DATASETS.build(dataset)
        if hasattr(dataset, 'full_init'):
            dataset.full_init()
        return build_support_bank(
            dataset,
            crop_size=self.crop_size,
            context=self.context,
            max_per_class=max_per_class,
            seed=self.seed,
            on_invalid=on_invalid)

    def test_bank(self) -> SupportBank:
        """The test-time support bank (built on first use)."""
        if self._test_bank is None:
            # the K-shot set is small and curated: a bad instance is an error
            self._test_bank = self._build(self._support_dataset(), None,
                                          'raise')
        return self._test_bank

    def _support_dataset(self):
        """The test-time support set, built once without loading its
        annotations (:meth:`test_bank` loads them)."""
        if self._support_set is None:
            cfg = self.dataset_cfg
            if cfg is None:
                if self._runner_cfg is None:
                    raise RuntimeError(
                        'SupportSetHook without a dataset needs the runner '
                        '(before_train / before_val / before_test) first')
                cfg = support_set_config(self._runner_cfg)
            self._support_set = (
                DATASETS.build(dict(cfg, lazy_init=True))
                if isinstance(cfg, dict) else cfg)
        return self._support_set

    def check_same_sample(self, train_dataset) -> None:
        """Raise if a K-shot member of ``train_dataset`` uses another K-shot
        sample than the support set (see ``check_sample``)."""
        support = self._support_dataset()
        if not isinstance(support, FewShotCocoDataset):
            return
        k_shot_members = [
            m for m in _members(train_dataset)
            if isinstance(m, FewShotCocoDataset) and m.few_shot_root
        ]
        mismatched = [
            m for m in k_shot_members
            if (m.seed, m.few_shot_root) != (support.seed,
                                             support.few_shot_root)
            or m.num_novel_shots not in (None, 0, support.num_novel_shots)
        ]
        if mismatched:
            raise ValueError(
                'SupportSetHook: the training set and the support set use '
                'different K-shot samples. Support set (the hook\'s '
                f'dataset): {_sample(support)}; training set: '
                f'{"; ".join(_sample(m) for m in mismatched)}. Leave the '
                "hook's dataset unset (it then follows the training set) "
                'and choose the seed once with --cfg-options few_shot.seed=N'
                ', or pass check_sample=False to the hook.')

    def _check_seed_applied(self, train_dataset) -> None:
        """Raise if the config names ``few_shot.seed`` but its K-shot
        datasets use another seed (a runner that did not apply it)."""
        few_shot = (self._runner_cfg or {}).get('few_shot') or {}
        seed = few_shot.get('seed')
        if seed is None:
            return
        for member in _members(train_dataset):
            if (isinstance(member, FewShotCocoDataset)
                    and member.few_shot_root and member.seed != seed):
                raise ValueError(
                    f'few_shot.seed={seed} but the training set reads the '
                    f'K-shot sample seed={member.seed}: build the runner with '
                    "runner_type='FewShotRunner' (RUNNERS.build(cfg)), "
                    'which applies few_shot to the config')

    def before_train(self, runner) -> None:
        """Check the K-shot sample, build the training pool and give it to
        the model."""
        self._remember_cfg(runner)
        loader = getattr(runner, 'train_dataloader', None)
        if self.check_sample and loader is not None:
            self._check_seed_applied(loader.dataset)
            self.check_same_sample(loader.dataset)
        source = self.train_dataset_cfg
        if source is None:
            source = runner.train_dataloader.dataset
        # a large training set may hold a few degenerate masks: skip them
        # (build_support_bank logs how many)
        self._train_bank = self._build(source, self.max_train_per_class,
                                       'skip')
        runner.logger.info(f'SupportSetHook: training support pool of '
                           f'{len(self._train_bank.labels)} instances')
        unwrap_model(runner).set_support_bank(self._train_bank)

    def _remember_cfg(self, runner) -> None:
        """Keep the runner's config: the default support set comes from its
        training set."""
        if self._runner_cfg is None:
            self._runner_cfg = getattr(runner, 'cfg', None)

    def _use_test_bank(self, runner) -> None:
        self._remember_cfg(runner)
        bank = self.test_bank()
        runner.logger.info(
            f'SupportSetHook: test support set of {len(bank.labels)} '
            f'instances, {len(set(bank.labels.tolist()))} classes')
        unwrap_model(runner).set_support_bank(bank)

    def before_val(self, runner) -> None:
        self._use_test_bank(runner)

    def before_test(self, runner) -> None:
        self._use_test_bank(runner)

    def after_val(self, runner) -> None:
        """Back to the training pool when validation interrupts training."""
        if self._train_bank is not None:
            unwrap_model(runner).set_support_bank(self._train_bank)
