"""The numbered steps of a demo run and their headers.

Every run of the demo (training a stage, testing a head) prints mmengine's
own log; a header before each, ``== [3/9] stage 2: MaskDiff (350 iters)
==``, says which step the log below belongs to and how many are left.
"""
from typing import Dict, List


class DemoSteps:
    """The steps of one demo run, in order, by id.

    Args:
        titles (dict): step id -> title, in the order the steps run.
    """

    def __init__(self, titles: Dict[str, str]):
        self.titles = dict(titles)
        self._ids: List[str] = list(self.titles)

    def header(self, step: str) -> str:
        """The header line of ``step``.

        Raises:
            KeyError: a step that is not in the plan (names the known ones).
        """
        if step not in self.titles:
            raise KeyError(f'demo step {step!r} is not planned; planned: '
                           f'{self._ids}')
        number = self._ids.index(step) + 1
        return f'== [{number}/{len(self._ids)}] {self.titles[step]} =='

    def announce(self, step: str) -> None:
        """Print the header of ``step`` (after a blank line)."""
        print(f'\n{self.header(step)}', flush=True)


def plan_steps(settings, heads: Dict[str, str],
               untrained_row: str) -> DemoSteps:
    """The steps of a demo run, titled.

    Args:
        settings (DemoSettings): the run's settings
            (:class:`~mmdet_maskdiff.demo.pipeline.DemoSettings`).
        heads (dict): stage name -> table row of every mask head trained
            in stage 2, in the order they run.
        untrained_row (str): the row of the untrained diffusion head, tested
            when ``settings.untrained``.

    Returns:
        DemoSteps: data, stage 1a, the novel-row initialisation, stage 1b,
        stage 2 per head, the tests (end to end, the untrained head, oracle
        boxes) and the results.
    """
    titles = dict(
        data=f'synthetic dataset ({settings.difficulty}): '
        f'{settings.data_root}',
        base_det=f'stage 1a: base detector ({settings.base_iters} iters)',
        novel_init='stage 1b: TFA novel-row initialisation of the box '
        'predictor',
        ft_det=f'stage 1b: TFA fine-tuning on the {settings.shots}-shot set '
        f'({settings.ft_iters} iters)')
    for name, row in heads.items():
        titles[f'train_{name}'] = (
            f'stage 2: {row} mask head ({settings.mask_iters} iters)')
    for name, row in heads.items():
        titles[f'test_{name}'] = f'test: {row}, end to end'
    if settings.untrained:
        titles['test_untrained'] = (
            f'test: {untrained_row} (stage-1b weights), end to end')
    if settings.oracle:
        for name, row in heads.items():
            titles[f'oracle_{name}'] = f'test: {row}, oracle boxes'
    titles['results'] = 'results'
    return DemoSteps(titles)
