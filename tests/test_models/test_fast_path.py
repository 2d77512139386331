"""The inference fast path on the CPU: RoI buckets give the eager path's
masks, and padding rows do not move any real RoI's keyed noise.

The CPU tests disable oneDNN, as the reproducibility tests do: its
convolutions may sum in another order for another batch size, and bucketing
changes the batch size. torch.compile / CUDA graphs are CUDA-only
(``docs/benchmarks.md``, "Inference fast path")."""
import pytest
import torch
from mmdet_maskdiff.diffusion import keyed_noise, parse_sampler_settings
from mmdet_maskdiff.models import DiffusionMaskHead, MaskCondition

M = 16
FAST = dict(devices=('cpu', ), bucket_sizes=(4, 8))


def noisy_head():
    torch.manual_seed(0)
    head = DiffusionMaskHead(
        num_classes=3,
        mask_size=M,
        denoiser=dict(
            type='MaskDenoisingUNet',
            base_channels=8,
            channel_mults=(1, 2),
            num_res_blocks=1,
            attention_channels=(16, ),
            num_head_channels=8),
        use_prototypes=True,
        prototype_dim=6,
        num_timesteps=50)
    g = torch.Generator().manual_seed(1)
    with torch.no_grad():  # non-zero output layer: samples depend on noise
        for p in head.parameters():
            p.copy_(torch.randn(p.shape, generator=g) * 0.1)
    return head.eval()


def condition(num):
    g = torch.Generator().manual_seed(num)
    return MaskCondition(
        labels=torch.randint(0, 3, (num, ), generator=g),
        region_image=torch.randn(num, 3, M, M, generator=g),
        shots=torch.randn(num, 1, 4, M, M, generator=g),
        prototypes=torch.randn(num, 6, generator=g),
        noise_keys=torch.randint(0, 2**32, (num, ), generator=g))


def sampler_cfg(**sampler):
    """Parsed sampler settings (steps=3, seed=7 unless given) for the heads
    of ``make_head`` (T = 100)."""
    return parse_sampler_settings(
        dict(dict(steps=3, seed=7), **sampler), 100)


@pytest.mark.parametrize('num', [1, 5, 8, 11])
@pytest.mark.parametrize('sampler', [
    dict(type='ddim'),
    dict(type='ddim', eta=1.0, num_samples=2, chunk_size=3),
    dict(type='ddpm', guidance_weight=0.0, num_samples=3),
])
def test_buckets_give_the_eager_masks(num, sampler):
    head = noisy_head()
    batches = []
    head.denoiser.register_forward_hook(
        lambda module, args, out: batches.append(args[0].shape[0]))
    with torch.backends.mkldnn.flags(enabled=False):
        eager = head.predict(condition(num), sampler_cfg(**sampler))
        eager_batches, batches[:] = list(batches), []
        fast = head.predict(condition(num), sampler_cfg(fast=FAST, **sampler))
    for key in ('probs', 'uncertainty'):
        assert torch.equal(fast[key], eager[key]), key
    assert 0 < eager['probs'].mean() < 1  # not a blank or full mask
    # the denoiser saw only bucket sizes (x samples, x 2 with guidance)
    factor = sampler.get('num_samples', 1) * (1 if sampler.get(
        'guidance_weight', 1.0) == 0 else 2)
    assert {b // factor for b in batches} <= set(FAST['bucket_sizes'])
    assert sum(eager_batches) <= sum(batches)


def test_padding_does_not_move_any_real_rois_noise(monkeypatch):
    """The keyed noise of every real RoI (every sample, every draw) is the
    same with and without padding rows."""
    draws = []
    original = keyed_noise.KeyedNoise.__call__

    def record(self, draw):
        noise = original(self, draw)
        draws.append(noise)
        return noise

    monkeypatch.setattr(keyed_noise.KeyedNoise, '__call__', record)
    head = noisy_head()
    samples = 2
    sampler = dict(type='ddim', eta=1.0, num_samples=samples)
    head.predict(condition(5), sampler_cfg(**sampler))
    eager, draws[:] = list(draws), []
    head.predict(condition(5), sampler_cfg(fast=FAST, **sampler))
    assert len(draws) == len(eager) == 3  # x_T and the z of 2 steps
    for padded, plain in zip(draws, eager):
        assert padded.shape[0] == samples * 8  # 5 RoIs -> bucket 8
        real = padded.view(samples, 8, 1, M, M)[:, :5]
        assert torch.equal(real, plain.view(samples, 5, 1, M, M))


def test_fast_path_is_off_on_the_cpu_by_default():
    head = noisy_head()
    batches = []
    head.denoiser.register_forward_hook(
        lambda module, args, out: batches.append(args[0].shape[0]))
    head.predict(condition(5), sampler_cfg(fast=dict(bucket_sizes=(8, ))))
    assert batches == [10] * 3  # 5 RoIs x 2 (guidance), not padded


def test_trajectory_capture_runs_eager():
    head = noisy_head()
    out = head.predict(condition(5), sampler_cfg(fast=FAST),
                       trajectory_every=1)
    assert out['trajectory']['x_t'].shape[0] == 5  # no padding rows
    again = head.predict(condition(5), sampler_cfg(fast=FAST))
    with torch.backends.mkldnn.flags(enabled=False):
        assert torch.equal(
            head.predict(condition(5), sampler_cfg(fast=FAST))['probs'],
            head.predict(condition(5), sampler_cfg())['probs'])
    assert out['probs'].shape == again['probs'].shape


def test_amp_on_the_cpu_falls_back_to_fp32_with_one_warning():
    head = noisy_head()
    with pytest.warns(UserWarning, match='amp=True applies on CUDA only'):
        amp = head.predict(condition(3), sampler_cfg(amp=True))
    assert torch.equal(amp['probs'],
                       head.predict(condition(3), sampler_cfg())['probs'])


def test_compile_without_triton_is_a_one_line_error(monkeypatch):
    import torch.utils._triton as triton_utils
    from mmdet_maskdiff.diffusion import FastPath
    monkeypatch.setattr(triton_utils, 'has_triton', lambda: False)
    head = noisy_head()
    with pytest.raises(RuntimeError, match=r'fast\.compile needs Triton'):
        head.sampler._compiled_denoiser(head.denoiser,
                                        FastPath(compile=True))
