"""A loaded checkpoint's K-shot sample (read from its stored training
config) against the run's: another seed or K is a one-line error."""
import pytest

from mmdet_maskdiff.few_shot.checkpoint_sample import (check_checkpoint_sample,
                                                       checkpoint_sample)
from mmdet_maskdiff.few_shot.sample import apply_few_shot_seed
from mmdet_maskdiff.utils import InputError
from _sample_helpers import STAGE_2, checkpoint_trained_on, cli_config


def test_checkpoint_sample_is_read_from_its_meta_cfg():
    assert checkpoint_sample(checkpoint_trained_on(4, 10)) == dict(
        seed=4, num_novel_shots=10)
    assert checkpoint_sample(dict(meta=dict(), state_dict={})) is None
    base = dict(meta=dict(cfg="train_dataloader = dict(dataset=dict("
                          "type='FewShotCocoDataset', ann_file='a.json'))"))
    assert checkpoint_sample(base) is None  # base training: nothing to check


@pytest.mark.parametrize('seed,shots,says', [
    (1, 1, 'seed=1, K=1'),
    (0, 5, 'seed=0, K=5'),
])
def test_checkpoint_of_another_seed_or_k_is_one_line(seed, shots, says):
    cfg = cli_config(STAGE_2)
    apply_few_shot_seed(cfg)
    check_checkpoint_sample(cfg, checkpoint_trained_on(0, 1), 'same.pth')
    with pytest.raises(InputError) as info:
        check_checkpoint_sample(cfg, checkpoint_trained_on(seed, shots),
                                'w/iter_16000.pth')
    message = str(info.value)
    assert '\n' not in message
    assert message.startswith(
        f'checkpoint w/iter_16000.pth was trained on the K-shot sample {says}'
        ', but this run uses seed=0, K=1;')
