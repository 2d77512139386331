"""Predict boxes and masks on your own images; the flags mirror mmdet 3.3.0's
``demo/image_demo.py``.

    python tools/image_demo.py demo.jpg configs/maskdiff/coco_5shot.py \\
        --weights work_dirs/coco_5shot/iter_40000.pth --num-samples 8

Writes, under ``--out-dir`` (default ``outputs``), ``vis/<image>`` (boxes and
masks drawn by mmdet's ``DetLocalVisualizer``), ``preds/<image stem>.json``
(labels, scores, boxes, RLE masks: mmdet's format), with
``--num-samples`` > 1 ``vis/<image stem>_uncertainty.png`` (the per-pixel
variance of the sampled masks of each instance as a heat map) and, with
``--save-trajectory``, ``vis/<first image stem>_trajectory.png`` per batch
(the denoising panel of ``DiffusionSamplerHook``, same code).

Additions to mmdet's flags: several inputs (images and folders), the sampler
settings ``--steps``, ``--guidance-weight``, ``--num-samples``,
``--save-trajectory``,
``--support-from-config`` (use the K-shot set of the config's
``SupportSetHook`` instead of the one stored in the checkpoint), and
``--cfg-options`` (checked as ``tools/test.py``'s: a key the config does not
have, or a variable of the config files, is refused; the sampler flags win
over it). A stage-2 checkpoint carries its K-shot support set, so no data is
needed on disk.

Outputs are named by the image's file name, so two inputs with the same
name (without extension) from different folders are refused up front (they
would overwrite each other's outputs); a file given twice is processed once.

Bad input stops with one line: a missing config or checkpoint, a checkpoint
of another model (or of another mask head: a MaskDiff checkpoint with an FCN
config) or without a support set, two inputs with the same output name, a
negative ``--guidance-weight``, a ``--cfg-options`` key the config does not
have (exit status 2); an image that does not exist, cannot be read or is a
damaged JPEG (libjpeg's message, with the file's name), or a folder without
images, is reported in one line and the other inputs are still processed
(exit status 1 at the end).
"""
import argparse
import contextlib
import json
import os
import os.path as osp
import sys
import tempfile
from typing import Dict, Iterator, List, Optional, Tuple

import mmcv
import torch
from mmengine.config import DictAction

import mmdet_maskdiff  # noqa: F401  (registers components, applies fixes)
from mmdet_maskdiff.apis import (MaskDiffInferencer, get_diffusion_sampling,
                                 set_diffusion_sampling,
                                 use_config_support_set)
from mmdet_maskdiff.models.roi_heads.few_shot_roi_head import \
    TRAJECTORY_RESULT
from mmdet_maskdiff.models.roi_heads.support_encoder import (
    NO_SUPPORT_HINT, support_encoder_of)
from mmdet_maskdiff.utils import (InputError, check_checkpoint, load_config,
                                  run_cli)
from mmdet_maskdiff.utils.config_overrides import (CFG_OPTIONS_HELP,
                                                   merge_cfg_options)
from mmdet_maskdiff.visualization import (roi_labels, trajectory_panel,
                                          uncertainty_heatmap)

#: the first bytes of every JPEG file (SOI marker)
JPEG_MAGIC = b'\xff\xd8'
#: what mmdet's DetInferencer takes from a folder
IMG_EXTENSIONS = ('.jpg', '.jpeg', '.png', '.ppm', '.bmp', '.pgm', '.tif',
                  '.tiff', '.webp')


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description='MaskDiff inference on images (mmdet image_demo flags)')
    parser.add_argument(
        'inputs', nargs='+', help='image files and/or folders of images')
    parser.add_argument('model', help='config file')
    parser.add_argument('--weights', required=True, help='checkpoint file')
    parser.add_argument(
        '--out-dir', default='outputs', help='output directory')
    parser.add_argument(
        '--device',
        default=None,
        help='device used for inference (default: cuda:0 if available, '
        'else cpu)')
    parser.add_argument(
        '--pred-score-thr',
        type=float,
        default=0.3,
        help='score threshold of the drawn instances')
    parser.add_argument(
        '--batch-size', type=int, default=1, help='inference batch size')
    parser.add_argument(
        '--show', action='store_true', help='display each picture')
    parser.add_argument(
        '--no-save-vis',
        action='store_true',
        help='do not save the pictures (nor the uncertainty maps)')
    parser.add_argument(
        '--no-save-pred', action='store_true', help='do not save json')
    parser.add_argument(
        '--print-result',
        action='store_true',
        help='print each prediction as one json line')
    parser.add_argument(
        '--palette',
        default='none',
        choices=['coco', 'voc', 'citys', 'random', 'none'],
        help='colour palette of the visualizer')
    group = parser.add_argument_group(
        'diffusion sampler (MaskDiff only; each overrides the config\'s '
        'model.test_cfg.rcnn.diffusion_sampling.<key>)')
    group.add_argument('--steps', type=int, help='denoising steps (steps)')
    group.add_argument(
        '--guidance-weight',
        type=float,
        help='classifier-free guidance w >= 0 (guidance_weight)')
    group.add_argument(
        '--num-samples',
        type=int,
        help='masks sampled per instance; > 1 also saves the uncertainty map '
        '(num_samples)')
    group.add_argument(
        '--save-trajectory',
        action='store_true',
        help='also save the denoising trajectory of the first instances of '
        'each batch (<first image>_trajectory.png; the panel of '
        'DiffusionSamplerHook)')
    parser.add_argument(
        '--support-from-config',
        action='store_true',
        help="build the K-shot support set from the config's SupportSetHook "
        '(its K-shot files must exist) instead of the checkpoint\'s')
    parser.add_argument(
        '--cfg-options',
        nargs='+',
        action=DictAction,
        help=CFG_OPTIONS_HELP + '; the sampler flags above win over it')
    args = parser.parse_args()
    if args.batch_size < 1:
        parser.error('--batch-size must be >= 1')
    return args


@contextlib.contextmanager
def c_library_output() -> Iterator[List[str]]:
    """Capture what C libraries write to file descriptor 2 while the block
    runs (libjpeg reports a damaged file there, without its name); yields
    the list that receives its lines when the block ends."""
    lines: List[str] = []
    sys.stderr.flush()
    saved = os.dup(2)
    with tempfile.TemporaryFile() as captured:
        os.dup2(captured.fileno(), 2)
        try:
            yield lines
        finally:
            os.dup2(saved, 2)
            os.close(saved)
            captured.seek(0)
            text = captured.read().decode('utf-8', 'replace')
            lines += [line for line in text.splitlines() if line.strip()]


def check_output_names(paths: List[str]) -> None:
    """Refuse two images whose outputs would overwrite each other: the
    outputs are named by the file name without its extension
    (``vis/<name>``, ``preds/<stem>.json``, ``<stem>_uncertainty.png``).

    Raises:
        InputError: naming both files.
    """
    seen: Dict[str, str] = {}
    for path in paths:
        stem = osp.splitext(osp.basename(path))[0]
        if stem in seen:
            raise InputError(
                f'images {seen[stem]} and {path} would write the same '
                f'outputs (preds/{stem}.json, vis/...): outputs are named by '
                'the file name, so rename one or run them separately')
        seen[stem] = path


def read_error(path: str) -> Optional[str]:
    """Why ``path`` cannot be used as an image, or None.

    A file that does not decode is refused (with the decoder's line when it
    printed one). A JPEG that libjpeg reports on while decoding it (damaged
    data: it decodes only partly, the rest grey) is refused with libjpeg's
    first line; what the decoders say about other files becomes a warning
    naming the file.
    """
    try:
        with c_library_output() as messages:
            image = mmcv.imread(path)
    except Exception:  # mmcv / cv2 raise various types on bad data
        image = None
    if image is None:
        return f'image {path} cannot be read (' + (
            f'decoder: {messages[0]})' if messages else 'not an image file?)')
    with open(path, 'rb') as f:
        is_jpeg = f.read(2) == JPEG_MAGIC
    if is_jpeg and messages:
        return (f'image {path} is damaged (libjpeg: {messages[0]}): a '
                'truncated or corrupted file; replace it')
    for message in messages:
        print(f'warning: image {path}: {message}', file=sys.stderr)
    return None


def collect_images(inputs: List[str]) -> Tuple[List[str], List[str]]:
    """Image paths of ``inputs`` (files, folders; a file given twice once)
    and one error line per input that gives none: a missing path, a folder
    without images, an unreadable or damaged file.

    Raises:
        InputError: two files whose outputs would have the same name
            (:func:`check_output_names`).
    """
    candidates, errors = [], []
    for item in inputs:
        if osp.isdir(item):
            found = sorted(
                osp.join(item, name) for name in os.listdir(item)
                if name.lower().endswith(IMG_EXTENSIONS)
                and osp.isfile(osp.join(item, name)))
            if not found:
                errors.append(f'folder {item} has no images '
                              f'({", ".join(IMG_EXTENSIONS)})')
            candidates += found
        elif osp.isfile(item):
            candidates.append(item)
        else:
            errors.append(f'image {item} does not exist')
    unique: Dict[str, str] = {}  # a file given twice is read once
    for path in candidates:
        unique.setdefault(osp.realpath(path), path)
    check_output_names(list(unique.values()))
    images = []
    for path in unique.values():
        error = read_error(path)
        if error is None:
            images.append(path)
        else:
            errors.append(error)
    return images, errors


def has_sampler(model) -> bool:
    """Whether the model's mask head samples (a ``DiffusionMaskHead``; not
    ``FCNMaskHead`` or the regression twin)."""
    roi_head = getattr(model, 'roi_head', None)
    return getattr(roi_head, 'diffusion_sampling', None) is not None


def configure(inferencer: MaskDiffInferencer,
              args: argparse.Namespace) -> None:
    """Sampler settings and the support set of the loaded model."""
    model = inferencer.model
    roi_head = getattr(model, 'roi_head', None)
    sampler = dict(
        steps=args.steps,
        guidance_weight=args.guidance_weight,
        num_samples=args.num_samples)
    sampler = {k: v for k, v in sampler.items() if v is not None}
    if not has_sampler(model) and (sampler or args.save_trajectory):
        raise InputError('--steps/--guidance-weight/--num-samples/'
                         '--save-trajectory need a MaskDiff config; '
                         f'{args.model} has no DiffusionMaskHead')
    if not getattr(roi_head, 'needs_condition', False):
        return
    try:
        if has_sampler(model) and sampler:
            set_diffusion_sampling(model, **sampler)
        if args.support_from_config:
            use_config_support_set(model, inferencer.cfg)
    except (ValueError, KeyError) as exc:
        raise InputError(str(exc).strip('"\''))
    if not support_encoder_of(model).has_support:
        raise InputError(f'checkpoint {args.weights} has no support set; '
                         f'{NO_SUPPORT_HINT}')


def save_uncertainty(path: str, sample, score_thr: float, out_dir: str) -> str:
    """Write ``<out_dir>/vis/<stem>_uncertainty.png``; return its path."""
    instances = sample.pred_instances
    keep = instances.scores >= score_thr
    picture = uncertainty_heatmap(
        mmcv.imread(path), instances.mask_uncertainty[keep],
        instances.bboxes[keep])
    stem = osp.splitext(osp.basename(path))[0]
    out = osp.join(out_dir, 'vis', f'{stem}_uncertainty.png')
    mmcv.imwrite(picture, out)
    return out


def save_trajectory(paths: List[str], samples: list, inferencer,
                    out_dir: str) -> Optional[str]:
    """Write the batch's trajectory panel as ``<out_dir>/vis/<stem of the
    first image>_trajectory.png``; return its path (None without one)."""
    trajectory = samples[0].pred_instances.metainfo.get(TRAJECTORY_RESULT)
    if trajectory is None:
        return None
    # the trajectory holds the first chunk of RoIs (then other samples)
    chunk = get_diffusion_sampling(inferencer.model)['chunk_size']
    labels = torch.cat([s.pred_instances.labels for s in samples])[:chunk]
    scores = torch.cat([s.pred_instances.scores for s in samples])[:chunk]
    classes = (inferencer.model.dataset_meta or {}).get('classes')
    panel = trajectory_panel(
        trajectory, roi_labels(labels.tolist(), scores.tolist(), classes))
    stem = osp.splitext(osp.basename(paths[0]))[0]
    out = osp.join(out_dir, 'vis', f'{stem}_trajectory.png')
    mmcv.imwrite(panel, out)
    return out


def main() -> None:
    args = parse_args()
    cfg = load_config(args.model)
    merge_cfg_options(cfg, args.cfg_options)
    check_checkpoint(args.weights)
    images, errors = collect_images(args.inputs)
    for message in errors:
        print(f'error: {message}', file=sys.stderr)
    num_failed = len(errors)
    if not images:
        print(f'error: {num_failed} input(s) failed, 0 image(s) processed',
              file=sys.stderr)
        sys.exit(1)
    device = args.device or ('cuda:0' if torch.cuda.is_available() else 'cpu')
    try:
        inferencer = MaskDiffInferencer(
            model=cfg,
            weights=args.weights,
            device=device,
            palette=args.palette,
            trajectory_every=1 if args.save_trajectory else None)
    except ValueError as exc:
        raise InputError(str(exc))
    configure(inferencer, args)
    num_samples = (
        get_diffusion_sampling(inferencer.model)['num_samples']
        if has_sampler(inferencer.model) else 1)

    pred_dir = '' if args.no_save_pred else args.out_dir
    for start in range(0, len(images), args.batch_size):
        batch = images[start:start + args.batch_size]
        try:
            result = inferencer(
                batch,
                batch_size=len(batch),
                show=args.show,
                no_save_vis=args.no_save_vis,
                no_save_pred=True,  # written below, with the data samples
                pred_score_thr=args.pred_score_thr,
                return_datasamples=True,
                out_dir=args.out_dir)
        except Exception as exc:  # one bad batch must not stop the others
            last = (str(exc).strip().splitlines() or [''])[-1]
            for path in batch:
                print(
                    f'error: image {path}: {type(exc).__name__}: {last}',
                    file=sys.stderr)
            num_failed += len(batch)
            continue
        for path, sample in zip(batch, result['predictions']):
            pred = inferencer.pred2dict(sample, pred_dir)
            if args.print_result:
                print(json.dumps(dict(img_path=path, **pred)))
            if num_samples > 1 and not args.no_save_vis:
                save_uncertainty(path, sample, args.pred_score_thr,
                                 args.out_dir)
        if args.save_trajectory and not args.no_save_vis:
            save_trajectory(batch, result['predictions'], inferencer,
                            args.out_dir)
    if not args.no_save_vis or not args.no_save_pred:
        print(f'results have been saved at {args.out_dir}')
    if num_failed:
        print(
            f'error: {num_failed} input(s) failed, '
            f'{len(images) - (num_failed - len(errors))} image(s) processed',
            file=sys.stderr)
        sys.exit(1)


if __name__ == '__main__':
    run_cli(main)
