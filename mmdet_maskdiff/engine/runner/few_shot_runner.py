"""mmengine's Runner that applies the config's K-shot sample first."""
import copy
from typing import Callable, Union

from mmengine.config import Config
from mmengine.runner import Runner

from mmdet.registry import RUNNERS
from mmdet_maskdiff.datasets.num_classes_check import check_num_classes
from mmdet_maskdiff.few_shot.checkpoint_sample import check_checkpoint_sample
from mmdet_maskdiff.few_shot.sample import apply_few_shot_seed
from mmdet_maskdiff.few_shot.split_folder_check import check_split_folders
from mmdet_maskdiff.utils.config_text import FormattedOnceConfig


@RUNNERS.register_module()
class FewShotRunner(Runner):
    """A :class:`mmengine.runner.Runner` for one K-shot sample of a few-shot
    config, selected with ``runner_type = 'FewShotRunner'``.

    mmdet's ``tools/train.py`` / ``tools/test.py`` (and so ``mim``) and this
    package's tools build ``RUNNERS.build(cfg)`` when a config sets
    ``runner_type``. Before building, :meth:`from_cfg` applies
    ``few_shot.seed`` to the config (the K-shot datasets, ``{seed}`` in
    ``load_from``, a ``seed<N>`` work dir; see
    :mod:`mmdet_maskdiff.few_shot.sample`) and checks that the seed's
    split files exist (:mod:`mmdet_maskdiff.few_shot.split_folder_check`),
    and that the heads' ``num_classes`` match the datasets' classes
    (:func:`check_num_classes`). :meth:`load_checkpoint`
    refuses a checkpoint trained on another seed or K. A config without
    ``few_shot`` runs exactly as with the default Runner.

    The run's config formats its text once
    (:class:`~mmdet_maskdiff.utils.config_text.FormattedOnceConfig`), where
    mmengine would format it again for the log, the dumped config, the
    visualizer, the runtime info and every checkpoint.
    """

    @classmethod
    def from_cfg(cls, cfg: Config) -> 'FewShotRunner':
        """Apply ``few_shot`` to a copy of ``cfg``, check its split files
        and ``num_classes``, then build as :meth:`Runner.from_cfg`."""
        cfg = copy.deepcopy(cfg)
        if apply_few_shot_seed(cfg) is not None:
            check_split_folders(cfg)
        check_num_classes(cfg)
        return super().from_cfg(FormattedOnceConfig.of(cfg))

    def load_checkpoint(self,
                        filename: str,
                        map_location: Union[str, Callable] = 'cpu',
                        strict: bool = False,
                        revise_keys: list = [(r'^module.', '')]) -> dict:
        """:meth:`Runner.load_checkpoint`, then raise if the checkpoint's
        K-shot sample (stored training config) differs from this run's."""
        checkpoint = super().load_checkpoint(filename, map_location, strict,
                                             revise_keys)
        check_checkpoint_sample(self.cfg, checkpoint, filename)
        return checkpoint
