import pytest
import torch
from torch import nn

from mmdet_maskdiff.diffusion import GaussianDiffusion, get_beta_schedule
from mmdet_maskdiff.networks import ConditionEncoding, MaskDenoisingUNet
from mmdet_maskdiff.networks.unet_blocks import AttentionBlock, ResidualBlock

SMALL = dict(
    base_channels=32,
    channel_mults=(1, 2, 2),
    attention_channels=(64, ),
    mask_size=28,
    num_classes=5)


def randomize(model, seed=0):
    """Re-initialise every parameter (zero-initialised layers hide bugs)."""
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for parameter in model.parameters():
            parameter.copy_(
                torch.randn(parameter.shape, generator=generator) * 0.05)
    return model.eval()


def inputs(model, batch=2, seed=1):
    g = torch.Generator().manual_seed(seed)
    m = model.mask_size
    y_t = torch.randn(batch, model.mask_channels, m, m, generator=g)
    cond = torch.randn(batch, model.cond_channels, m, m, generator=g)
    t = torch.randint(0, 1000, (batch, ), generator=g)
    labels = torch.randint(0, model.num_classes, (batch, ), generator=g)
    return y_t, t, cond, labels


def run(model, y_t, t, cond, labels, cond_vector=None):
    """The denoiser on a raw condition (encoded once, as callers do)."""
    return model(y_t, t, model.encode_condition(cond, cond_vector), labels)


def attention_widths(blocks):
    return [
        layer.channels for block in blocks for layer in block
        if isinstance(layer, AttentionBlock)
    ]


def test_small_config_output_shape():
    model = randomize(MaskDenoisingUNet(**SMALL))
    y_t, t, cond, labels = inputs(model)
    out = run(model, y_t, t, cond, labels)
    assert out.shape == (2, 1, 28, 28) and torch.isfinite(out).all()


def test_output_is_zero_initialised():
    model = MaskDenoisingUNet(**SMALL)
    out = run(model, *inputs(model))
    assert torch.count_nonzero(out) == 0


def test_paper_default_layout():
    model = MaskDenoisingUNet()
    assert model.widths == (128, 256, 384, 512) and model.mask_size == 64
    # 2 residual blocks per level down + 3 downsamplings, 3 per level up.
    assert sum(isinstance(b[0], ResidualBlock) for b in model.down_blocks) == 8
    assert len(model.up_blocks) == 12
    assert attention_widths(model.down_blocks) == [384, 384]
    assert attention_widths(model.up_blocks) == [384, 384, 384]
    assert attention_widths([model.middle_block]) == [512]
    assert [type(layer) for layer in model.middle_block
            ] == [ResidualBlock, AttentionBlock, ResidualBlock]
    assert model.in_conv_cond.in_channels == 4
    assert model.in_conv_cond.bias is None
    assert model.down_blocks[0][0].class_embedding.num_embeddings == 81


def test_parameter_names_and_shapes_are_pinned():
    """Every parameter name and shape is pinned by a digest: a change breaks
    the loading of stage-2 checkpoints and must be deliberate
    (CHANGELOG.md). Last changed by the scale-shift residual blocks (each
    ``time_proj`` gives 2 × C)."""
    import hashlib
    model = MaskDenoisingUNet(cond_vector_dim=256)
    state = model.state_dict()
    text = ';'.join(f'{k}:{tuple(v.shape)}' for k, v in state.items())
    assert len(state) == 333
    assert hashlib.sha256(text.encode()).hexdigest()[:16] == \
        '122039d4c89143e3'


def test_paper_shape_layout_forward_at_64():
    # Paper multipliers and mask size, narrower for speed.
    model = randomize(
        MaskDenoisingUNet(
            base_channels=32, attention_channels=(96, ), num_head_channels=32))
    y_t, t, cond, labels = inputs(model)
    assert run(model, y_t, t, cond, torch.tensor([0, 80])).shape == (2, 1, 64,
                                                                     64)


def test_split_input_conv_equals_conv_over_concatenation():
    model = MaskDenoisingUNet(**SMALL)
    y_t, _, cond, _ = inputs(model)
    joint = nn.Conv2d(5, 32, 3, padding=1)
    with torch.no_grad():
        joint.weight.copy_(
            torch.cat([model.in_conv_mask.weight, model.in_conv_cond.weight],
                      dim=1))
        joint.bias.copy_(model.in_conv_mask.bias)
    split = model.in_conv_mask(y_t) + model.encode_condition(cond).cond_feat
    torch.testing.assert_close(
        split, joint(torch.cat([y_t, cond], dim=1)), atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize('cond_vector_dim', [0, 16])
def test_encoding_is_reused_and_doubled(cond_vector_dim):
    model = randomize(
        MaskDenoisingUNet(**SMALL, cond_vector_dim=cond_vector_dim))
    y_t, t, cond, labels = inputs(model)
    vector = torch.randn(2, cond_vector_dim) if cond_vector_dim else None
    encoding = model.encode_condition(cond, vector)
    assert isinstance(
        encoding,
        ConditionEncoding) and encoding.cond_feat.shape == (2, 32, 28, 28)
    once = model(y_t, t, encoding, labels)
    # the same encoding at another step: as good as encoding again
    assert torch.equal(model(y_t, t, encoding, labels), once)
    doubled = encoding.cat_with_self()
    out2 = model(
        torch.cat([y_t, y_t]), torch.cat([t, t]), doubled,
        torch.cat([labels, labels]))
    torch.testing.assert_close(out2[2:], once, atol=1e-5, rtol=1e-5)
    if cond_vector_dim:
        other = run(model, y_t, t, cond, labels, vector + 1)
        assert not torch.allclose(other, once)
        with pytest.raises(ValueError, match='cond_vector'):
            model.encode_condition(cond)
        with pytest.raises(ValueError, match=r'cond_vector must have shape'):
            model.encode_condition(cond, vector[:1])
    else:
        with pytest.raises(ValueError, match='cond_vector_dim=0'):
            model.encode_condition(cond, torch.randn(2, 4))


def test_null_class_and_class_conditioning():
    model = randomize(MaskDenoisingUNet(**SMALL))
    y_t, t, cond, _ = inputs(model)
    null = run(model, y_t, t, cond, torch.full((2, ), model.num_classes))
    real = run(model, y_t, t, cond, torch.zeros(2, dtype=torch.long))
    assert torch.isfinite(null).all() and not torch.allclose(null, real)
    with pytest.raises(IndexError):
        run(model, y_t, t, cond, torch.full((2, ), model.num_classes + 1))


def test_attention_block_matches_reference():
    block = randomize(AttentionBlock(64, num_head_channels=16, norm_groups=8))
    x = torch.randn(2, 64, 5, 7, generator=torch.Generator().manual_seed(3))
    qkv = block.qkv(block.norm(x).flatten(2))
    heads = [part.reshape(2, 4, 16, 35)
             for part in qkv.chunk(3, dim=1)]  # (N, heads, d, L)
    q, k, v = heads
    weights = torch.softmax(
        torch.einsum('nhdl,nhdm->nhlm', q, k) / 16**0.5, dim=-1)
    attended = torch.einsum('nhlm,nhdm->nhdl', weights, v).reshape(2, 64, 35)
    reference = x + block.proj_out(attended).reshape(x.shape)
    torch.testing.assert_close(block(x), reference, atol=1e-5, rtol=1e-5)


def test_timestep_changes_output():
    model = randomize(MaskDenoisingUNet(**SMALL))
    y_t, t, cond, labels = inputs(model)
    assert not torch.allclose(
        run(model, y_t, t, cond, labels), run(model, y_t, t + 100, cond,
                                              labels))


def relative_change(a, b):
    return ((a - b).norm() / a.norm()).item()


# the CPU demo's UNet (every width 16 or 32: one channel per GroupNorm group)
# and the compact one; a per-channel bias added before a GroupNorm with one
# channel per group is removed by it, which made these blind to t, c and k
NARROW = [
    dict(base_channels=16, channel_mults=(1, 2, 2), attention_channels=(32, ),
         num_head_channels=16),
    dict(base_channels=32, channel_mults=(1, 2, 2), attention_channels=(64, ),
         num_head_channels=32),
]


@pytest.mark.parametrize('sizes', NARROW)
def test_narrow_unet_sees_time_class_and_prototype(sizes):
    model = randomize(
        MaskDenoisingUNet(mask_size=28, num_classes=5, cond_vector_dim=8,
                          **sizes))
    y_t, t, cond, labels = inputs(model)
    g = torch.Generator().manual_seed(4)
    proto = torch.randn(2, 8, generator=g)
    ref = model(y_t, t, model.encode_condition(cond, proto), labels)
    other_t = model(y_t, t + 300, model.encode_condition(cond, proto), labels)
    null = model(y_t, t, model.encode_condition(cond, proto),
                 torch.full_like(labels, model.num_classes))
    other_proto = model(y_t, t, model.encode_condition(cond, -proto), labels)
    assert relative_change(ref, other_t) > 1e-3  # 2e-7 before the fix
    assert relative_change(ref, null) > 1e-3
    assert relative_change(ref, other_proto) > 1e-3


def test_block_conditioning_survives_one_channel_groups():
    """Scale-shift after norm2: with ``gcd(norm_groups, C) == C`` (one
    channel per group) the time and class inputs still reach the output and
    get gradients."""
    block = randomize(ResidualBlock(16, 16, emb_channels=8, num_classes=3,
                                    dropout=0.0, norm_groups=32))
    assert block.norm2.num_groups == 16
    g = torch.Generator().manual_seed(5)
    x = torch.randn(2, 16, 6, 6, generator=g)
    emb = torch.randn(2, 8, generator=g)
    labels = torch.tensor([0, 1])
    out = block(x, emb, labels)
    assert relative_change(out, block(x, emb, labels.flip(0))) > 0.01
    assert relative_change(out, block(x, -emb, labels)) > 0.01
    block.train()
    block(x, emb, labels).square().sum().backward()
    assert block.class_embedding.weight.grad[:2].abs().min() > 1e-4
    assert block.time_proj.weight.grad.abs().max() > 1e-3


def test_residual_block_matches_scale_shift_formula():
    block = randomize(ResidualBlock(8, 16, emb_channels=4, num_classes=3,
                                    dropout=0.0, norm_groups=4))
    g = torch.Generator().manual_seed(6)
    x = torch.randn(2, 8, 5, 5, generator=g)
    emb = torch.randn(2, 4, generator=g)
    labels = torch.tensor([2, 0])
    h = block.conv1(torch.nn.functional.silu(block.norm1(x)))
    proj = block.time_proj(torch.nn.functional.silu(emb))
    scale, shift = proj[:, :16], proj[:, 16:]
    shift = shift + block.class_embedding.weight[labels]
    h = torch.nn.functional.group_norm(h, 4, block.norm2.weight,
                                       block.norm2.bias)
    h = h * (1 + scale[..., None, None]) + shift[..., None, None]
    expected = block.skip(x) + block.conv2(torch.nn.functional.silu(h))
    torch.testing.assert_close(block(x, emb, labels), expected)


@pytest.mark.parametrize('kwargs, match', [
    (dict(mask_size=30), 'mask_size'),
    (dict(attention_channels=(48, )), 'attention_channels'),
    (dict(num_head_channels=48), 'num_head_channels'),
    (dict(channel_mults=()), 'channel_mults'),
    (dict(cond_channels=0), 'cond_channels'),
    (dict(num_res_blocks=0), 'num_res_blocks'),
    (dict(dropout=1.0), 'dropout'),
    (dict(with_cp=1), 'with_cp'),
    (dict(with_cp='yes'), 'with_cp'),
])
def test_invalid_construction(kwargs, match):
    with pytest.raises(ValueError, match=match):
        MaskDenoisingUNet(**{**SMALL, **kwargs})


def _loss_and_grads(with_cp, seed=0):
    """One training forward/backward (dropout on, prototype input); the
    same seed gives the same weights, inputs and dropout masks."""
    model = randomize(
        MaskDenoisingUNet(
            **SMALL, dropout=0.3, cond_vector_dim=8, with_cp=with_cp),
        seed).train()
    y_t, t, cond, labels = inputs(model, batch=3, seed=seed + 1)
    vector = torch.randn(3, 8, generator=torch.Generator().manual_seed(seed))
    torch.manual_seed(seed + 2)  # dropout
    loss = run(model, y_t, t, cond, labels, vector).square().mean()
    loss.backward()
    return loss.detach(), {
        name: p.grad.clone()
        for name, p in model.named_parameters()
    }


def test_checkpointing_gives_equal_losses_and_gradients():
    loss, grads = _loss_and_grads(with_cp=False)
    loss_cp, grads_cp = _loss_and_grads(with_cp=True)
    assert loss > 0
    assert torch.equal(loss, loss_cp)
    assert grads.keys() == grads_cp.keys()
    for name in grads:
        # CPU kernels are deterministic: the recomputation is bit-equal
        assert torch.equal(grads[name], grads_cp[name]), name
    # and dropout was really on (a different seed changes the loss)
    assert not torch.equal(loss, _loss_and_grads(False, seed=5)[0])


def test_checkpointing_keeps_only_block_inputs():
    from mmdet_maskdiff.networks import SavedTensorCounter
    saved = {}
    for with_cp in (False, True):
        model = MaskDenoisingUNet(**SMALL, with_cp=with_cp).train()
        with SavedTensorCounter(exclude=model.parameters()) as counter:
            run(model, *inputs(model, batch=4)).sum()
        saved[with_cp] = counter.activation_bytes
    assert 0 < saved[True] < saved[False] / 3


def test_checkpointing_is_off_without_autograd(monkeypatch):
    import torch.utils.checkpoint as cp

    def fail(*args, **kwargs):
        raise AssertionError('checkpoint called without autograd')

    model = randomize(MaskDenoisingUNet(**SMALL, with_cp=True))
    expected = run(model, *inputs(model))  # autograd on: checkpointed
    monkeypatch.setattr(cp, 'checkpoint', fail)
    with torch.no_grad():
        assert torch.equal(run(model, *inputs(model)), expected)


def test_invalid_inputs():
    """Shapes are checked once, by encode_condition; forward takes only an
    encoding (one meaning per argument)."""
    model = MaskDenoisingUNet(**SMALL)
    y_t, t, cond, labels = inputs(model)
    with pytest.raises(ValueError, match=r'cond must have shape'):
        model.encode_condition(cond[:, :3])
    with pytest.raises(ValueError, match=r'cond must have shape'):
        model.encode_condition(cond[:, :, :14, :14])
    with pytest.raises(TypeError, match='encode_condition'):
        model(y_t, t, cond, labels)


def test_forward_does_not_check_shapes_at_every_step(monkeypatch):
    model = MaskDenoisingUNet(**SMALL)
    y_t, t, cond, labels = inputs(model)
    encoding = model.encode_condition(cond)
    calls = []
    for name in ('_check_spatial', '_check_vector'):
        monkeypatch.setattr(model, name,
                            lambda *args, _n=name: calls.append(_n))
    model(y_t, t, encoding, labels)
    assert calls == []


def test_overfits_one_mask():
    torch.manual_seed(0)
    model = MaskDenoisingUNet(
        mask_channels=1,
        cond_channels=2,
        num_classes=3,
        base_channels=16,
        channel_mults=(1, 2),
        num_res_blocks=1,
        attention_channels=(),
        num_head_channels=32,
        mask_size=16,
        norm_groups=8)
    diffusion = GaussianDiffusion(get_beta_schedule('linear', 100))
    mask = torch.zeros(1, 1, 16, 16)
    mask[..., 4:12, 3:10] = 1.0
    x0 = (mask * 2 - 1).expand(16, -1, -1, -1)
    cond = torch.cat([mask, torch.ones_like(mask)],
                     dim=1).expand(16, -1, -1, -1)
    labels = torch.ones(16, dtype=torch.long)

    def kwargs():  # a fresh encoding per step (its graph is freed)
        return dict(condition=model.encode_condition(cond), labels=labels)

    g = torch.Generator().manual_seed(1)
    eval_t = torch.randint(0, 100, (16, ), generator=g)
    eval_noise = torch.randn(x0.shape, generator=g)

    def eval_loss():
        with torch.no_grad():
            return diffusion.training_losses(
                model, x0, eval_t, eval_noise,
                model_kwargs=kwargs())['loss'].mean()

    initial = eval_loss()
    optimizer = torch.optim.Adam(model.parameters(), lr=2e-3)
    for _ in range(150):
        t = torch.randint(0, 100, (16, ), generator=g)
        loss = diffusion.training_losses(
            model, x0, t, model_kwargs=kwargs())['loss'].mean()
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    final = eval_loss()
    assert final < initial / 5, (initial.item(), final.item())
