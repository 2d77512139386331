import pytest
import torch

from mmdet_maskdiff.diffusion import classifier_free_guidance, drop_labels

NULL = 5


class CountingDenoiser:
    """ε(x, t, labels, cond), different per label; records batch sizes."""

    def __init__(self):
        self.batch_sizes = []

    def __call__(self, x, t, labels, cond=None, scale=1.0):
        self.batch_sizes.append(x.shape[0])
        out = 0.3 * x + 0.01 * t.view(-1, 1, 1, 1) + labels.view(-1, 1, 1,
                                                                 1).float()**2
        if cond is not None:
            out = out + cond
        return scale * out


def inputs(batch=4):
    g = torch.Generator().manual_seed(0)
    x = torch.randn(batch, 1, 3, 3, generator=g)
    t = torch.randint(0, 1000, (batch, ), generator=g)
    labels = torch.randint(0, NULL, (batch, ), generator=g)
    cond = torch.randn(batch, 1, 3, 3, generator=g)
    return x, t, labels, cond


def test_zero_weight_is_conditional_model():
    denoiser = CountingDenoiser()
    x, t, labels, cond = inputs()
    guided = classifier_free_guidance(
        denoiser, 0.0, NULL, labels, cond=cond)(x, t)
    assert torch.equal(guided, CountingDenoiser()(x, t, labels, cond=cond))
    assert denoiser.batch_sizes == [4]


@pytest.mark.parametrize('weight', [0.5, 3.0])
def test_batched_guidance_matches_two_forwards(weight):
    denoiser = CountingDenoiser()
    x, t, labels, cond = inputs()
    guided = classifier_free_guidance(
        denoiser, weight, NULL, labels, cond=cond, scale=2.0)(x, t)
    assert denoiser.batch_sizes == [8]  # one batched forward
    reference = CountingDenoiser()
    conditional = reference(x, t, labels, cond=cond, scale=2.0)
    unconditional = reference(
        x, t, torch.full_like(labels, NULL), cond=cond, scale=2.0)
    torch.testing.assert_close(guided, (1 + weight) * conditional -
                               weight * unconditional)
    assert not torch.allclose(guided, conditional)


def test_cat_with_self_hook_and_none():

    class Encoding:

        def __init__(self, value):
            self.value = value

        def cat_with_self(self):
            return Encoding(torch.cat([self.value, self.value]))

    seen = {}

    def denoiser(x, t, labels, cond, extra):
        seen['cond'], seen['extra'] = cond.value, extra
        return x + cond.value

    x, t, labels, cond = inputs()
    classifier_free_guidance(
        denoiser, 1.0, NULL, labels, cond=Encoding(cond), extra=None)(x, t)
    assert torch.equal(seen['cond'], torch.cat([cond, cond
                                                ])) and seen['extra'] is None
    with pytest.raises(TypeError, match='cond'):
        classifier_free_guidance(
            denoiser, 1.0, NULL, labels, cond=[cond], extra=None)(x, t)


def test_conditioning_is_batched_once_per_chain():
    """Every step reuses the [conditional; null] conditioning."""
    calls = []

    class Encoding:

        def __init__(self, value):
            self.value = value

        def cat_with_self(self):
            calls.append('cat')
            return Encoding(torch.cat([self.value, self.value]))

    labels_seen = []

    def denoiser(x, t, labels, cond):
        labels_seen.append(labels)
        return x + cond.value

    x, t, labels, cond = inputs()
    model_fn = classifier_free_guidance(
        denoiser, 2.0, NULL, labels, cond=Encoding(cond))
    first, second = model_fn(x, t), model_fn(x + 1, t)
    assert calls == ['cat']
    assert labels_seen[0] is labels_seen[1]
    assert torch.equal(labels_seen[0][4:], torch.full_like(labels, NULL))
    torch.testing.assert_close(second - first, torch.ones_like(x))


def test_drop_labels():
    labels = torch.zeros(10000, dtype=torch.long)
    dropped = drop_labels(
        labels, 0.2, NULL, generator=torch.Generator().manual_seed(0))
    fraction = (dropped == NULL).float().mean().item()
    assert abs(fraction - 0.2) < 0.02 and set(
        dropped.unique().tolist()) == {0, NULL}
    assert torch.equal(drop_labels(labels, 0.0, NULL), labels)
    assert (drop_labels(labels, 1.0, NULL) == NULL).all()
    with pytest.raises(ValueError):
        drop_labels(labels, 1.5, NULL)
