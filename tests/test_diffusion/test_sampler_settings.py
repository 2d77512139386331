"""Test-time sampler settings: defaults, checks, the fast-path keys."""
import pytest
import torch

from mmdet_maskdiff.diffusion import (FastPath, SamplerSettings,
                                      parse_sampler_settings)
from mmdet_maskdiff.diffusion.sampler_settings import SAMPLER_KEYS

T = 100


def test_defaults_and_round_trip():
    settings = parse_sampler_settings(None, T)
    assert settings == SamplerSettings()
    # the dataclass is the one place the defaults are written
    assert settings.to_dict() == dict(
        type='ddim', steps=2, eta=0.0, guidance_weight=1.0, num_samples=1,
        seed=0, chunk_size=None, amp=False, fast=None, spacing='linspace',
        x0_between_steps='clip', output='binary')
    assert tuple(settings.to_dict()) == SAMPLER_KEYS
    given = dict(
        type='ddpm',
        steps=None,
        num_samples=3,
        chunk_size=5,
        amp='bf16',
        fast=dict(bucket_sizes=[8, 16]))
    settings = parse_sampler_settings(given, T)
    assert settings.amp is True and settings.fast == FastPath(
        bucket_sizes=(8, 16))
    assert parse_sampler_settings(settings.to_dict(), T) == settings
    assert parse_sampler_settings(dict(fast=True), T).fast == FastPath()
    assert parse_sampler_settings(dict(fast=False), T).fast is None


def test_enabled_false_is_checked_but_off():
    assert parse_sampler_settings(dict(fast=dict(enabled=False)),
                                  T).fast is None
    on = parse_sampler_settings(dict(fast=dict(enabled=True)), T).fast
    assert on == FastPath()
    with pytest.raises(ValueError, match=r'fast\.bucket_sizes'):
        parse_sampler_settings(
            dict(fast=dict(enabled=False, bucket_sizes=(0, ))), T)
    with pytest.raises(ValueError, match=r'fast\.enabled must be True or'):
        parse_sampler_settings(dict(fast=dict(enabled='cuda')), T)


def test_buckets():
    fast = FastPath(devices=('cpu', ), bucket_sizes=(4, 8, 32))
    assert [fast.bucket(n)
            for n in (1, 4, 5, 8, 9, 32)] == [4, 4, 8, 8, 32, 32]
    assert fast.applies_to(torch.device('cpu'))
    assert not FastPath().applies_to(torch.device('cpu'))  # off on the CPU


@pytest.mark.parametrize('fast, match', [
    (dict(bucket_sizes=(0, 8)), r'fast\.bucket_sizes must be increasing '
     r'ints >= 1, got \(0, 8\)'),
    (dict(bucket_sizes=()), r'fast\.bucket_sizes'),
    (dict(bucket_sizes=(16, 8)), r'fast\.bucket_sizes'),
    (dict(bucket_sizes=(8, 8)), r'fast\.bucket_sizes'),
    (dict(bucket_sizes=(8.0, )), r'fast\.bucket_sizes'),
    (dict(devices=('tpu', )), r"fast\.devices must name 'cpu' and/or "
     r"'cuda'"),
    (dict(devices=('cpu', 'cuda'),
          compile=True), r'fast\.compile runs on CUDA only'),
    (dict(cuda_graphs=True), r'fast\.cuda_graphs needs compile=True'),
    (dict(compile='yes'), r'fast\.compile must be True or False'),
    (dict(buckets=(8, )), r"fast: unknown key 'buckets'"),
    ('on', r'fast must be None, True or a dict'),
])
def test_bad_fast_settings_are_one_line_errors(fast, match):
    with pytest.raises(ValueError, match=match) as info:
        parse_sampler_settings(dict(fast=fast), T)
    assert '\n' not in str(info.value)
    assert str(info.value).startswith('model.test_cfg.rcnn.diffusion_sampling')


def test_compile_on_a_torch_without_it(monkeypatch):
    monkeypatch.delattr(torch, 'compile')
    with pytest.raises(
            ValueError,
            match=r'fast\.compile needs '
            r'torch\.compile, which torch .* lacks'):
        parse_sampler_settings(dict(fast=dict(compile=True)), T)
    # without compile the fast path (buckets) needs nothing special
    assert parse_sampler_settings(dict(fast=dict()), T).fast is not None


def test_compile_on_cuda_is_accepted():
    fast = parse_sampler_settings(
        dict(fast=dict(compile=True, cuda_graphs=True)), T).fast
    assert fast.compile_mode == 'reduce-overhead'
    assert FastPath(compile=True).compile_mode is None


def test_step_choices():
    settings = parse_sampler_settings(
        dict(spacing='trailing', x0_between_steps='sign', output='soft'), T)
    assert (settings.spacing, settings.x0_between_steps,
            settings.output) == ('trailing', 'sign', 'soft')
    assert parse_sampler_settings(settings.to_dict(), T) == settings


@pytest.mark.parametrize('key, value, choices', [
    ('spacing', 'leading', "['linspace', 'trailing']"),
    ('x0_between_steps', 'round', "['clip', 'sign']"),
    ('output', 'probs', "['binary', 'soft']"),
])
def test_bad_step_choice_is_a_one_line_error(key, value, choices):
    with pytest.raises(ValueError) as info:
        parse_sampler_settings({key: value}, T)
    assert str(info.value) == (f'model.test_cfg.rcnn.diffusion_sampling.{key} must be '
                               f"one of {choices}, got '{value}'")
