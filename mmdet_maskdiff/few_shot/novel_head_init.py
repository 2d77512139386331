"""TFA's novel-class initialisation of the box predictor (stage 1a -> 1b).

TFA (Wang et al., "Frustratingly Simple Few-Shot Object Detection", ICML
2020) fine-tunes the last box layers of the base detector on a balanced
K-shot set. Before that, its checkpoint surgery (``tools/ckpt_surgery.py
--method randinit --coco``) gives the box predictor fresh *novel* rows:
weights drawn from N(0, 0.01²), biases zero, while the base-class rows and
the classifier's background row are copied from the base detector.

Here the base detector already has the full label space (one 80-class label
space in every stage; the novel rows of stage 1a only ever see negatives), so
the surgery re-draws the novel rows *in place*:

* classifier (``roi_head.bbox_head.fc_cls``, C + 1 rows, mmdet puts the
  background last): novel rows of ``weight`` ~ N(0, ``std``²), novel entries
  of ``bias`` = 0; base rows and the background row are copied exactly;
* box regressor (``roi_head.bbox_head.fc_reg``, 4C rows, class c at rows
  4c .. 4c + 3): the same for the 4 rows of every novel class; a
  class-agnostic regressor (4 rows) is shared by all classes and is kept;
* bias of a cosine classifier: :class:`CosineSimLinear` (TFA's cosine
  classifier) has no bias, so when the target config uses it the
  classifier's ``bias`` is *removed* from the checkpoint, with a note
  (loading it would only give mmengine's "unexpected key" warning);
* everything else (backbone, neck, RPN, shared FCs) is copied; the
  optimizer, scheduler and message-hub states are dropped (TFA's
  ``reset_ckpt``), ``meta`` records what was done.

Which rows are novel comes from the target config's training dataset (its
label space ``classes`` and ``class_splits``, see
:mod:`mmdet_maskdiff.datasets.class_splits`), never from a fixed list.
"""
import os
import os.path as osp
from dataclasses import dataclass
from typing import Dict, List, Optional, Tuple

import torch
from mmengine.config import Config
from torch import Tensor

from mmdet_maskdiff.datasets.class_splits import (get_class_splits,
                                                  resolve_classes)
from mmdet_maskdiff.utils.config_tree import iter_config_dicts
from mmdet_maskdiff.utils.safe_checkpoint import load_checkpoint_file

#: TFA's ``torch.nn.init.normal_(new_weight, 0, 0.01)`` for both layers
NOVEL_WEIGHT_STD = 0.01
#: suffix of the surgery output: ``iter_110000.pth`` -> this
OUTPUT_SUFFIX = '_novel-init.pth'
TOOL = 'tools/model_converters/tfa_novel_init.py'
CLS_PREFIX = 'roi_head.bbox_head.fc_cls'
REG_PREFIX = 'roi_head.bbox_head.fc_reg'
#: top-level checkpoint entries that only make sense for resuming
DROPPED_ENTRIES = ('optimizer', 'param_schedulers', 'message_hub')


@dataclass(frozen=True)
class BoxPredictorLayout:
    """What the surgery needs to know about the target (stage-1b) model.

    Attributes:
        class_names (tuple[str, ...]): the label space, in label order.
        novel_labels (tuple[int, ...]): labels of the novel classes.
        cls_has_bias (bool): the target classifier has a bias (``Linear``)
            or not (``CosineSimLinear``).
        reg_class_agnostic (bool): one set of 4 regression rows for all
            classes.
        cls_prefix (str): state-dict prefix of the classifier.
        reg_prefix (str): state-dict prefix of the box regressor.
    """
    class_names: Tuple[str, ...]
    novel_labels: Tuple[int, ...]
    cls_has_bias: bool
    reg_class_agnostic: bool
    cls_prefix: str = CLS_PREFIX
    reg_prefix: str = REG_PREFIX

    @property
    def num_classes(self) -> int:
        """int: C, the number of foreground classes."""
        return len(self.class_names)


def _label_space(cfg: Config,
                 source: str) -> Tuple[Tuple[str, ...], Tuple[str, ...]]:
    """Label space and novel class names of ``cfg``'s training dataset."""
    datasets = [
        node for _, node in iter_config_dicts(cfg.to_dict().get(
            'train_dataloader', {}))
        if node.get('type') == 'FewShotCocoDataset'
    ]
    if not datasets:
        raise ValueError(f'{source}: train_dataloader has no '
                         'FewShotCocoDataset, so the base / novel split of '
                         'the label space is unknown')
    node = datasets[0]
    class_splits = node.get('class_splits')
    classes = resolve_classes(node.get('classes', 'ALL'), class_splits)
    novel = get_class_splits(class_splits)['NOVEL']
    return classes, novel


def _predictor_has_bias(predictor_cfg: dict) -> bool:
    """Whether the classifier built from ``predictor_cfg`` has a bias."""
    from mmdet.registry import MODELS
    from mmengine.registry import DefaultScope
    cfg = dict(predictor_cfg, in_features=2, out_features=3)
    with DefaultScope.overwrite_default_scope('mmdet'):
        module = MODELS.build(cfg)
    return getattr(module, 'bias', None) is not None


def layout_from_config(cfg: Config,
                       source: str = 'the config') -> BoxPredictorLayout:
    """Read the box predictor of a stage-1b config.

    Args:
        cfg (Config): the config the surgery output is for (stage 1b),
            after any ``--cfg-options``.
        source (str): the config's name in error messages.

    Returns:
        BoxPredictorLayout: the label space, novel labels and predictor
        shape.

    Raises:
        ValueError: no ``FewShotCocoDataset`` in ``train_dataloader``, or a
            label space whose size differs from the box head's
            ``num_classes``.
    """
    bbox_head = cfg.model.roi_head.bbox_head
    classes, novel = _label_space(cfg, source)
    num_classes = bbox_head.num_classes
    if len(classes) != num_classes:
        raise ValueError(f'{source}: the training dataset has {len(classes)} '
                         f'classes but bbox_head.num_classes is '
                         f'{num_classes}')
    novel_labels = tuple(i for i, c in enumerate(classes) if c in novel)
    predictor = bbox_head.get('cls_predictor_cfg') or dict(type='Linear')
    return BoxPredictorLayout(
        class_names=classes,
        novel_labels=novel_labels,
        cls_has_bias=_predictor_has_bias(predictor),
        reg_class_agnostic=bool(bbox_head.get('reg_class_agnostic', False)))


def _get(state_dict: Dict[str, Tensor], key: str, source: str) -> Tensor:
    if key not in state_dict:
        raise ValueError(f'{source} has no {key} (not a two-stage detector '
                         'checkpoint of this box head?)')
    return state_dict[key]


def _checked_weights(state_dict: Dict[str, Tensor],
                     layout: BoxPredictorLayout,
                     source: str) -> Tuple[Tensor, Tensor]:
    """The classifier and box regressor weights of ``state_dict``, after
    checking their row counts against ``layout``."""
    num_classes = layout.num_classes
    cls_weight = _get(state_dict, f'{layout.cls_prefix}.weight', source)
    if cls_weight.shape[0] != num_classes + 1:
        raise ValueError(
            f'{source}: {layout.cls_prefix}.weight has {cls_weight.shape[0]} '
            f'rows ({cls_weight.shape[0] - 1} classes + background) but the '
            f'config has {num_classes} classes (+ background)')
    reg_rows = 4 if layout.reg_class_agnostic else 4 * num_classes
    reg_weight = _get(state_dict, f'{layout.reg_prefix}.weight', source)
    if reg_weight.shape[0] != reg_rows:
        found = reg_weight.shape[0]
        raise ValueError(
            f'{source}: {layout.reg_prefix}.weight has {found} rows '
            f'({found / 4:g} classes x 4) but the config expects {reg_rows} '
            f'({num_classes} classes, '
            f"{'class-agnostic' if layout.reg_class_agnostic else '4 per class'})"
        )
    return cls_weight, reg_weight


def _redraw(weight: Tensor, rows: List[int], std: float,
            generator: Optional[torch.Generator]) -> Tensor:
    """A copy of ``weight`` whose ``rows`` are drawn from N(0, std^2) (in
    float32, then cast to the weight's dtype)."""
    weight = weight.clone()
    if rows:
        draw = torch.empty(
            (len(rows), ) + tuple(weight.shape[1:]), dtype=torch.float32)
        draw.normal_(0.0, std, generator=generator)
        weight[rows] = draw.to(weight.dtype)
    return weight


def _zero(bias: Tensor, rows: List[int]) -> Tensor:
    """A copy of ``bias`` with ``rows`` set to 0."""
    bias = bias.clone()
    bias[rows] = 0
    return bias


def _reinit_classifier(new: Dict[str, Tensor], cls_weight: Tensor,
                       layout: BoxPredictorLayout, std: float,
                       generator: Optional[torch.Generator],
                       source: str) -> List[str]:
    """Re-draw the novel classifier rows in ``new`` (zero their bias, or
    remove the bias the target lacks); returns the notes."""
    novel = list(layout.novel_labels)
    notes = []
    bias_key = f'{layout.cls_prefix}.bias'
    new[f'{layout.cls_prefix}.weight'] = _redraw(cls_weight, novel, std,
                                                 generator)
    if not layout.cls_has_bias:
        if bias_key in new:
            del new[bias_key]
            notes.append(f'removed {bias_key}: the target classifier (e.g. '
                         "CosineSimLinear, TFA's cosine classifier) has no "
                         'bias')
    elif bias_key in new:
        new[bias_key] = _zero(new[bias_key], novel)
    else:
        notes.append(f'{source} has no {bias_key}: the target classifier '
                     'keeps its initial bias')
    notes.append(f'{layout.cls_prefix}: {len(novel)} novel rows re-drawn '
                 f'(N(0, {std:g}^2) weights, zero bias), '
                 f'{layout.num_classes - len(novel)} base rows and the '
                 'background row copied')
    return notes


def _reinit_regressor(new: Dict[str, Tensor], reg_weight: Tensor,
                      layout: BoxPredictorLayout, std: float,
                      generator: Optional[torch.Generator]) -> List[str]:
    """Re-draw the novel classes' 4 box regressor rows each in ``new``
    (zero their bias; class-agnostic: kept); returns the notes."""
    if layout.reg_class_agnostic:
        return [f'{layout.reg_prefix}: class-agnostic, kept as is']
    novel = list(layout.novel_labels)
    rows = [4 * c + i for c in novel for i in range(4)]
    new[f'{layout.reg_prefix}.weight'] = _redraw(reg_weight, rows, std,
                                                 generator)
    reg_bias = f'{layout.reg_prefix}.bias'
    if reg_bias in new:
        new[reg_bias] = _zero(new[reg_bias], rows)
    return [
        f'{layout.reg_prefix}: {len(rows)} novel rows '
        f'({len(novel)} classes x 4) re-drawn, the base rows copied'
    ]


def reinit_novel_rows(
        state_dict: Dict[str, Tensor],
        layout: BoxPredictorLayout,
        generator: Optional[torch.Generator] = None,
        std: float = NOVEL_WEIGHT_STD,
        source: str = 'the checkpoint') -> Tuple[Dict[str, Tensor], List[str]]:
    """Re-draw the novel rows of the classifier and box regressor.

    Args:
        state_dict (dict[str, Tensor]): the base detector's weights; not
            modified.
        layout (BoxPredictorLayout): the target model (see
            :func:`layout_from_config`).
        generator (torch.Generator, optional): source of the random draws.
        std (float): standard deviation of the novel weight rows. Defaults
            to TFA's 0.01.
        source (str): the checkpoint's name in messages.

    Returns:
        tuple[dict[str, Tensor], list[str]]: the new state dict (other
        entries shared with ``state_dict``) and human-readable notes.

    Raises:
        ValueError: a missing classifier / regressor weight, or a row count
            that does not match ``layout`` (the message names both class
            counts and ``source``).
    """
    cls_weight, reg_weight = _checked_weights(state_dict, layout, source)
    new = dict(state_dict)
    notes = _reinit_classifier(new, cls_weight, layout, std, generator,
                               source)
    notes += _reinit_regressor(new, reg_weight, layout, std, generator)
    return new, notes


def default_output_path(checkpoint: str) -> str:
    """``work_dirs/x/iter_110000.pth`` -> ``work_dirs/x/iter_110000_novel-
    init.pth`` (what the stage-1b configs' ``load_from`` names)."""
    stem, _ = osp.splitext(checkpoint)
    return stem + OUTPUT_SUFFIX


def surgery_command(load_from: str, config: str) -> Optional[str]:
    """The command that writes ``load_from``, when it is a surgery output.

    Args:
        load_from (str): a config's ``load_from``.
        config (str): the config's path.

    Returns:
        str | None: ``python tools/model_converters/tfa_novel_init.py CONFIG
        SOURCE``, or None when ``load_from`` is not named like a surgery
        output.
    """
    if not load_from.endswith(OUTPUT_SUFFIX):
        return None
    source = load_from[:-len(OUTPUT_SUFFIX)] + '.pth'
    return f'python {TOOL} {config} {source}'


def _load_checkpoint(path: str) -> dict:
    try:
        checkpoint = load_checkpoint_file(path, map_location='cpu')
    except RuntimeError as exc:  # unreadable: one line naming the file
        raise ValueError(str(exc)) from None
    if not isinstance(checkpoint, dict):
        raise ValueError(f'checkpoint {path} is not a dict of weights')
    return checkpoint


def tfa_novel_init(checkpoint: str,
                   cfg: Config,
                   out: Optional[str] = None,
                   seed: int = 0,
                   config_name: str = 'the config') -> Tuple[str, List[str]]:
    """Write the stage-1b starting checkpoint from stage 1a's.

    Args:
        checkpoint (str): the base detector (an mmengine checkpoint with
            ``state_dict``, or a bare state dict).
        cfg (Config): the stage-1b config (after ``--cfg-options``).
        out (str, optional): output path. Defaults to
            :func:`default_output_path` of ``checkpoint``.
        seed (int): seed of the novel rows' draw. Defaults to 0.
        config_name (str): the config's name in error messages.

    Returns:
        tuple[str, list[str]]: the written path and the notes of
        :func:`reinit_novel_rows`.

    Raises:
        FileNotFoundError: ``checkpoint`` does not exist.
        ValueError: an unreadable checkpoint, one that does not match the
            config (see :func:`reinit_novel_rows`), or ``out`` equal to
            ``checkpoint``.
    """
    out = out or default_output_path(checkpoint)
    if osp.abspath(out) == osp.abspath(checkpoint):
        raise ValueError(f'--out {out} would overwrite the input checkpoint')
    layout = layout_from_config(cfg, config_name)
    source = _load_checkpoint(checkpoint)
    state_dict = source.get('state_dict', source)
    generator = torch.Generator().manual_seed(seed)
    new_state, notes = reinit_novel_rows(
        state_dict, layout, generator, source=checkpoint)
    result = {
        k: v
        for k, v in source.items()
        if k != 'state_dict' and k not in DROPPED_ENTRIES
    } if 'state_dict' in source else {}
    meta = dict(result.get('meta') or {})
    meta['tfa_novel_init'] = dict(
        source=checkpoint,
        seed=seed,
        std=NOVEL_WEIGHT_STD,
        novel_classes=[layout.class_names[i] for i in layout.novel_labels])
    result['meta'] = meta
    result['state_dict'] = new_state
    os.makedirs(osp.dirname(osp.abspath(out)), exist_ok=True)
    torch.save(result, out)
    return out, notes
