"""check_mixed_precision: AmpOptimWrapper only where mmengine can run it."""
import mmengine.device
import pytest
import torch
from mmengine.config import Config

from mmdet_maskdiff.utils import InputError, check_mixed_precision


def config(**wrapper):
    return Config(
        dict(optim_wrapper=dict(optimizer=dict(type='SGD'), **wrapper)))


def test_plain_optim_wrapper_passes_anywhere():
    check_mixed_precision(config(type='OptimWrapper'), 'cfg.py')


@pytest.mark.skipif(torch.cuda.is_available(), reason='needs a CPU-only host')
def test_amp_on_the_cpu_is_one_clear_error():
    with pytest.raises(
            InputError,
            match=r'mixed precision .*AmpOptimWrapper '
            r'in cfg\.py\) needs a CUDA GPU'):
        check_mixed_precision(
            config(type='AmpOptimWrapper', dtype='bfloat16'), 'cfg.py')


def test_bf16_on_a_card_without_bf16_suggests_float16(monkeypatch):
    monkeypatch.setattr(mmengine.device, 'is_cuda_available', lambda: True)
    monkeypatch.setattr(torch.cuda, 'is_bf16_supported', lambda: False)
    monkeypatch.setattr(torch.cuda, 'get_device_name', lambda: 'Old GPU')
    with pytest.raises(InputError, match='Old GPU has no bfloat16.*float16'):
        check_mixed_precision(
            config(type='AmpOptimWrapper', dtype='bfloat16'), 'cfg.py')
    check_mixed_precision(  # float16 is fine there
        config(type='AmpOptimWrapper', dtype='float16'), 'cfg.py')
