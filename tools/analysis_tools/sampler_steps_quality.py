"""Segm AP against the number of DDIM steps, from one trained model.

Picks the test-time sampler by data instead of by guess: the trained
MaskDiff model of the demo (``tools/run_demo.py``) is tested on the
embedded dataset once per step count (same detections, same seed), and
base / novel / all segm AP is tabulated.

    python tools/analysis_tools/sampler_steps_quality.py --steps 1 2 4 8 16 50

Writes ``<work-dir>/steps_quality.json`` and ``.md``.
"""
import argparse
import json
import os.path as osp

import mmdet_maskdiff  # noqa: F401  (registers components, applies fixes)
from mmdet_maskdiff.demo.pipeline import DemoSettings, test_stage
from mmdet_maskdiff.demo.report import SPLITS, summarize


def main() -> None:
    defaults = DemoSettings()
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument('--work-dir', default=defaults.work_dir)
    parser.add_argument('--data-root', default=defaults.data_root)
    parser.add_argument('--shots', type=int, default=defaults.shots)
    parser.add_argument('--mask-iters', type=int,
                        default=defaults.mask_iters)
    parser.add_argument('--steps', type=int, nargs='+',
                        default=[1, 2, 4, 8, 16, 50])
    args = parser.parse_args()

    ckpt = osp.join(args.work_dir, 'maskdiff', f'iter_{args.mask_iters}.pth')
    if not osp.isfile(ckpt):
        parser.error(f'no trained model at {ckpt}: run tools/run_demo.py '
                     'first (same --work-dir, --shots, --mask-iters)')
    rows = {}
    for steps in args.steps:
        settings = DemoSettings(
            work_dir=osp.join(args.work_dir, 'steps_quality'),
            data_root=args.data_root,
            shots=args.shots,
            steps=steps,
            draw=False)
        metrics = test_stage(f'steps{steps}', 'maskdiff', settings, ckpt)
        rows[steps] = dict(
            summary=summarize({'MaskDiff': metrics})['MaskDiff'],
            seconds=settings.timings[f'test_steps{steps}'])
    lines = [
        '| DDIM steps | ' + ' | '.join(f'{s} segm AP' for s in SPLITS) +
        ' | test time (s) |', '|' + ' --- |' * (len(SPLITS) + 2)
    ]
    for steps, row in rows.items():
        cells = [
            f"{row['summary'][s].get('segm_mAP', float('nan')):.1f}"
            for s in SPLITS
        ]
        lines.append(f'| {steps} | ' + ' | '.join(cells) +
                     f" | {row['seconds']:.0f} |")
    out = osp.join(args.work_dir, 'steps_quality')
    with open(out + '.json', 'w') as f:
        json.dump(rows, f, indent=2)
    with open(out + '.md', 'w') as f:
        f.write('\n'.join(lines) + '\n')
    print('\n'.join(lines))


if __name__ == '__main__':
    main()
