"""StateDictDiff against torch's own account of a non-strict load."""
import re

import pytest
import torch.nn as nn

from mmdet_maskdiff.structures import StateDictDiff, first_and_count


def _pair():
    model = nn.Sequential(nn.Linear(3, 4), nn.Linear(4, 2), nn.Linear(2, 2))
    # layers 0 and 1 wider, no layer 2, one extra key
    other = nn.Sequential(nn.Linear(3, 5), nn.Linear(5, 2))
    state = dict(other.state_dict(), extra=other[0].weight)
    return model, state


def test_keys_agree_with_load_state_dict():
    model, state = _pair()
    diff = StateDictDiff.between(model.state_dict(), state)
    with pytest.raises(RuntimeError) as info:
        model.load_state_dict(state, strict=False)
    torch_reshaped = re.findall(r'size mismatch for ([\w.]+):',
                                str(info.value))
    assert diff.reshaped == torch_reshaped == [
        '0.weight', '0.bias', '1.weight']
    # with the reshaped ones at the model's shape, torch loads and reports
    loadable = dict(state,
                    **{k: model.state_dict()[k] for k in diff.reshaped})
    result = model.load_state_dict(loadable, strict=False)
    assert diff.missing == result.missing_keys == ['2.weight', '2.bias']
    assert diff.unexpected == result.unexpected_keys == ['extra']


def test_lines_and_ignore():
    model, state = _pair()
    own = model.state_dict()
    lines = StateDictDiff.between(own, state).lines(own, state)
    assert lines[0] == ('0.weight has shape (5, 3) in the checkpoint, '
                        '(4, 3) in the model')
    assert lines[3:] == [
        '2.weight is missing from the checkpoint',
        '2.bias is missing from the checkpoint',
        'extra is in the checkpoint but not in the model'
    ]
    assert first_and_count(lines) == lines[0] + ' (and 5 more)'
    assert first_and_count(lines[:1]) == lines[0]
    ignored = StateDictDiff.between(own, state, lambda k: k != '1.bias')
    assert ignored == StateDictDiff([], [], [])
    assert StateDictDiff.between(own, own) == StateDictDiff([], [], [])
