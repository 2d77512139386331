"""Checkpoints that do not fit the model: the mismatch list and a file that
cannot be read, each named in one line."""
import pytest
import torch

from mmdet_maskdiff.models.checkpoint_checks import (checkpoint_mismatch,
                                                     read_checkpoint)
from mmdet_maskdiff.utils import InputError


def test_checkpoint_mismatch_lists_reshaped_missing_unexpected():
    model = {'a.weight': torch.zeros(2, 3), 'b.bias': torch.zeros(4)}
    assert checkpoint_mismatch(model, {'state_dict': dict(model)}) == []
    # the 'module.' prefix of a DDP-saved checkpoint is ignored
    assert checkpoint_mismatch(
        model, {'state_dict': {
            f'module.{k}': v
            for k, v in model.items()
        }}) == []
    problems = checkpoint_mismatch(
        model,
        {'state_dict': {
            'a.weight': torch.zeros(2, 5),
            'c': torch.zeros(1)
        }})
    assert problems == [
        'a.weight has shape (2, 5) in the checkpoint, (2, 3) in the model',
        'b.bias is missing from the checkpoint',
        'c is in the checkpoint but not in the model'
    ]
    assert checkpoint_mismatch(
        model, {'a.weight': torch.zeros(2, 3)},
        allowed_missing=('b.', )) == []


@pytest.mark.parametrize('content', [b'', b'PK\x03\x04 truncated zip'])
def test_unreadable_checkpoint_names_its_path(tmp_path, content):
    path = tmp_path / 'broken.pth'
    path.write_bytes(content)
    with pytest.raises(
            InputError, match=r'cannot read checkpoint .*broken\.pth'):
        read_checkpoint(str(path))
    with pytest.raises(InputError, match='does not exist'):
        read_checkpoint(str(tmp_path / 'none.pth'))
