"""Builds the K-shot support bank and hands it to the model."""
from typing import Optional

from mmengine.hooks import Hook
from mmengine.model import is_model_wrapper

from mmdet.registry import DATASETS, HOOKS
from mmdet_maskdiff.datasets.support_bank import (SupportBank,
                                                  build_support_bank)


@HOOKS.register_module()
class SupportSetHook(Hook):
    """Give the detector the support instances that form the K-shot
    information k.

    Two banks are kept:

    * the **test bank**, built from ``dataset`` — the K-shot set of the
      config's seed (``FewShotCocoDataset`` with ``few_shot_root`` and the
      shot counts). It is used for validation and testing; the RoI head
      encodes it once per run;
    * the **training bank**, built from ``train_dataset`` or, when that is
      None, from the runner's training dataset. Training shots of a class are
      drawn from it at random, from images other than the query batch.

    Both are built once (lazily) and reused; the model's test-time support
    encoding is refreshed before every val/test run.

    Args:
        dataset (dict): Dataset config of the test-time support set.
        train_dataset (dict, optional): Dataset config of the training
            support pool. Defaults to the training dataset.
        crop_size (int): Side S of the square support crops. Defaults to 64.
        context (float): Margin added on every side of a support box, as a
            fraction of its size. Defaults to 0.1.
        max_train_per_class (int, optional): Cap on training-pool instances
            per class (memory: S·S·4 bytes each). Defaults to 200.
        seed (int): Seed of the capped subset. Defaults to 0.
    """

    priority = 'HIGH'

    def __init__(self,
                 dataset: dict,
                 train_dataset: Optional[dict] = None,
                 crop_size: int = 64,
                 context: float = 0.1,
                 max_train_per_class: Optional[int] = 200,
                 seed: int = 0) -> None:
        self.dataset_cfg = dataset
        self.train_dataset_cfg = train_dataset
        self.crop_size = crop_size
        self.context = context
        self.max_train_per_class = max_train_per_class
        self.seed = seed
        self._test_bank: Optional[SupportBank] = None
        self._train_bank: Optional[SupportBank] = None

    @staticmethod
    def _model(runner):
        model = runner.model
        return model.module if is_model_wrapper(model) else model

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
            self._test_bank = self._build(self.dataset_cfg, None, 'raise')
        return self._test_bank

    def before_train(self, runner) -> None:
        """Build the training pool and give it to the model."""
        source = self.train_dataset_cfg
        if source is None:
            source = runner.train_dataloader.dataset
        # a large training set may hold a few degenerate masks: skip them
        # (build_support_bank logs how many)
        self._train_bank = self._build(source, self.max_train_per_class,
                                       'skip')
        runner.logger.info(f'SupportSetHook: training support pool of '
                           f'{len(self._train_bank.labels)} instances')
        self._model(runner).set_support_bank(self._train_bank)

    def _use_test_bank(self, runner) -> None:
        bank = self.test_bank()
        runner.logger.info(
            f'SupportSetHook: test support set of {len(bank.labels)} '
            f'instances, {len(set(bank.labels.tolist()))} classes')
        self._model(runner).set_support_bank(bank)

    def before_val(self, runner) -> None:
        self._use_test_bank(runner)

    def before_test(self, runner) -> None:
        self._use_test_bank(runner)

    def after_val(self, runner) -> None:
        """Back to the training pool when validation interrupts training."""
        if self._train_bank is not None:
            self._model(runner).set_support_bank(self._train_bank)
