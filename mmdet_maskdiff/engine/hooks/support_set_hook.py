"""Builds the K-shot support bank and hands it to the model."""
import json
from typing import List, Optional, Union

from mmengine.dist import broadcast_object_list, get_rank, get_world_size
from mmengine.hooks import Hook

from mmdet.registry import DATASETS, HOOKS
from mmdet_maskdiff.datasets.few_shot_coco import FewShotCocoDataset
from mmdet_maskdiff.datasets.k_shot_members import k_shot_members
from mmdet_maskdiff.datasets.support_bank import build_support_bank
from mmdet_maskdiff.few_shot.sample import support_set_config
from mmdet_maskdiff.models.mask_heads.mask_condition import condition_spec_of
from mmdet_maskdiff.models.roi_heads.support_encoder import support_encoder_of
from mmdet_maskdiff.structures import SupportBank
from .runner_model import unwrap_model


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
      (:func:`~mmdet_maskdiff.few_shot.sample.support_set_config`);
      or ``dataset`` when given. It is used for validation and testing; the
      RoI head encodes it once per run;
    * the **training bank**, built from ``train_dataset`` or, when that is
      None, from the runner's training dataset. Training shots of a class are
      drawn from it at random, from images other than the query batch.

    Both are built once (lazily) and reused; the model's test-time support
    encoding is refreshed before every val/test run.

    The test bank is also stored in the model (``SupportEncoder.store``), so
    every checkpoint of the run carries the K-shot set and a model loaded
    from it (``init_detector``, ``DetInferencer``) predicts without this hook
    or the data. When the hook is present at test time its ``dataset``
    replaces the checkpoint's set (e.g. another seed's K-shot sample).

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
            Defaults to True. (A loaded checkpoint trained on another K-shot
            sample is refused by ``FewShotRunner``; opt-out
            ``few_shot.check_checkpoint=False``.)

    Before a run, the hook also requires the support set's K (both
    ``num_base_shots`` and ``num_novel_shots`` when given) to equal the
    mask head's ``num_shots`` when the head concatenates the shots
    (``shot_fusion='concat'``): fewer shots would be repeated, more dropped.
    A ``'mean'`` head averages any number of shots and is not checked. It
    also requires an instance of every class the detector predicts in the
    support set.
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
        """Build a bank on rank 0 (with a progress bar) and share it.

        Reading and cropping the support instances (up to
        ``max_train_per_class`` x the classes on COCO) is done once, by
        global rank 0; the other ranks receive the bank with
        ``broadcast_object_list`` instead of decoding the images again. An
        error on rank 0 is raised on every rank. Every rank calls this at
        the same points (the hook's stages), as collectives require.
        """
        if get_world_size() == 1:
            return self._build_here(dataset, max_per_class, on_invalid)
        shared: List[Union[SupportBank, Exception, None]] = [None]
        if get_rank() == 0:
            try:
                shared[0] = self._build_here(dataset, max_per_class,
                                             on_invalid)
            except Exception as exc:  # every rank must leave the collective
                shared[0] = exc
        broadcast_object_list(shared, src=0)
        if isinstance(shared[0], Exception):
            raise shared[0]
        return shared[0]

    def _build_here(self, dataset, max_per_class: Optional[int],
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
            on_invalid=on_invalid,
            progress=True)

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
                DATASETS.build(dict(cfg, lazy_init=True)) if isinstance(
                    cfg, dict) else cfg)
        return self._support_set

    def check_same_sample(self, train_dataset) -> None:
        """Raise if a K-shot member of ``train_dataset`` uses another K-shot
        sample than the support set (see ``check_sample``)."""
        support = self._support_dataset()
        if not isinstance(support, FewShotCocoDataset):
            return
        mismatched = [
            m for m in k_shot_members(train_dataset)
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
        for member in k_shot_members(train_dataset):
            if member.seed != seed:
                raise ValueError(
                    f'few_shot.seed={seed} but the training set reads the '
                    f'K-shot sample seed={member.seed}: build the runner with '
                    "runner_type='FewShotRunner' (RUNNERS.build(cfg)), "
                    'which applies few_shot to the config')

    def check_num_shots(self, runner) -> None:
        """Raise if the support set's K differs from the K the mask head
        concatenates."""
        head = getattr(
            getattr(unwrap_model(runner), 'roi_head', None), 'mask_head',
            None)
        spec = condition_spec_of(head)
        if spec is None or getattr(head, 'shot_fusion', 'concat') != 'concat':
            return
        support = self._support_dataset()
        for key in ('num_base_shots', 'num_novel_shots'):
            shots = getattr(support, key, None)
            if shots and shots != spec.num_shots:  # 0: no such shots
                raise ValueError(
                    f'SupportSetHook: the support set has K={shots} '
                    f'({key} of the hook\'s dataset) but the mask head '
                    f'concatenates num_shots={spec.num_shots} shots '
                    '(model.roi_head.mask_head.num_shots); use the config '
                    'of this K, or set both to the same K')

    def check_class_coverage(self, runner) -> None:
        """Raise if a class the detector can predict has no instance in the
        support set (its detections could not be given a mask)."""
        model = unwrap_model(runner)
        roi_head = getattr(model, 'roi_head', None)
        num_classes = getattr(
            getattr(roi_head, 'bbox_head', None), 'num_classes', None)
        if num_classes is None or condition_spec_of(
                getattr(roi_head, 'mask_head', None)) is None:
            return
        support = self._support_dataset()
        if not hasattr(support, 'full_init'):
            return
        support.full_init()
        covered = {
            instance['bbox_label']
            for i in range(len(support))
            for instance in support.get_data_info(i).get('instances', [])
            if not instance.get('ignore_flag', 0)
        }
        classes = support.metainfo.get('classes', ())
        missing = [
            classes[label] if label < len(classes) else label
            for label in range(num_classes)
            if label not in covered
        ]
        if missing:
            raise ValueError(
                f'SupportSetHook: the support set has no instance of '
                f'{len(missing)} class(es) the detector predicts: '
                f'{missing[:10]}{" ..." if len(missing) > 10 else ""}; check '
                'num_base_shots / num_novel_shots / classes of '
                'custom_hooks.0.dataset')

    def before_run(self, runner) -> None:
        """Fail before training or testing on a K / num_shots mismatch or a
        support set that misses a class."""
        self._remember_cfg(runner)
        self.check_num_shots(runner)
        self.check_class_coverage(runner)

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
        model = unwrap_model(runner)
        support_encoder_of(model).use_bank(self._train_bank)
        # checkpoints of this run carry the test-time K-shot set
        self.store_test_bank(model)

    def support_info(self) -> dict:
        """Provenance of the test bank, stored with it in checkpoints: the
        crop settings and the K-shot dataset's identifying settings."""
        cfg = self.dataset_cfg
        if cfg is None and self._runner_cfg is not None:
            cfg = support_set_config(self._runner_cfg)
        dataset = {}
        if isinstance(cfg, dict):
            for key in ('type', 'ann_file', 'few_shot_root', 'seed',
                        'num_base_shots', 'num_novel_shots', 'class_splits'):
                value = cfg.get(key)
                try:  # the info is stored as JSON
                    dataset[key] = json.loads(json.dumps(value))
                except TypeError:
                    dataset[key] = repr(value)
        else:
            dataset['type'] = type(cfg).__name__
        return dict(
            crop_size=self.crop_size, context=self.context, dataset=dataset)

    def store_test_bank(self, model) -> None:
        """Give ``model`` (a ``MaskDiffRCNN``) the test bank to keep with
        its weights (see the class docstring)."""
        support_encoder_of(model).store(self.test_bank(), self.support_info())

    def use_test_bank(self, model) -> None:
        """Make the test bank ``model``'s support set, replacing the one its
        checkpoint carried (same class list required), also in later
        checkpoints."""
        support_encoder_of(model).use_bank(self.test_bank())
        self.store_test_bank(model)

    def set_config(self, cfg) -> None:
        """Use ``cfg`` (a run's config, ``few_shot.seed`` applied) for the
        default support set — its training set's K-shot member — when the
        hook runs outside a runner (``mmdet_maskdiff.apis``)."""
        self._runner_cfg = cfg

    def _remember_cfg(self, runner) -> None:
        """Keep the runner's config: the default support set comes from its
        training set."""
        if self._runner_cfg is None:
            self.set_config(getattr(runner, 'cfg', None))

    def _use_test_bank(self, runner) -> None:
        self._remember_cfg(runner)
        bank = self.test_bank()
        runner.logger.info(
            f'SupportSetHook: test support set of {len(bank.labels)} '
            f'instances, {len(set(bank.labels.tolist()))} classes')
        self.use_test_bank(unwrap_model(runner))

    def before_val(self, runner) -> None:
        self._use_test_bank(runner)

    def before_test(self, runner) -> None:
        self._use_test_bank(runner)

    def after_val(self, runner) -> None:
        """Back to the training pool when validation interrupts training."""
        if self._train_bank is not None:
            support_encoder_of(unwrap_model(runner)).use_bank(
                self._train_bank)
