"""A detection's mask does not depend on the batch its image is in: each
RoI's noise is keyed by (sampler seed, image contents, RoI index) and
the denoiser never mixes two images in one pass.

oneDNN convolutions on the CPU may round a batch of 1 differently from a
batch of 4 (detector boxes then differ in the last bit); the comparison runs
with oneDNN off, so that any difference comes from the sampling.
"""
import copy

import pytest
import torch
from mmengine.dataset import pseudo_collate

from mmdet.registry import DATASETS
from mmdet_maskdiff.apis import set_diffusion_sampling

NUM_IMAGES = 4


@pytest.fixture(scope='module')
def test_images(maskdiff_cfg):
    dataset = DATASETS.build(
        copy.deepcopy(maskdiff_cfg.val_dataloader.dataset))
    return [dataset[i] for i in range(NUM_IMAGES)]


def predict(model, items):
    batch = model.data_preprocessor(
        pseudo_collate(copy.deepcopy(items)), False)
    with torch.no_grad():
        return model(**batch, mode='predict')


def noise_dependent_model(build_model, support_bank):
    """The untrained x0 network outputs exactly 0 whatever the noise (its
    output layers are zero-initialised): give those weights random values so
    that the masks depend on the noise, as a trained network's do."""
    model = build_model().eval()
    model.roi_head.support_encoder.use_bank(support_bank)
    generator = torch.Generator().manual_seed(0)
    with torch.no_grad():
        for param in model.roi_head.mask_head.denoiser.parameters():
            if not param.any():
                param.copy_(
                    torch.randn(param.shape, generator=generator) * 0.2)
    return model


@pytest.mark.parametrize('sampler', [
    dict(type='ddim', steps=2),
    dict(type='ddim', steps=3, eta=1.0, num_samples=2),
    dict(type='ddpm', steps=3),
])
def test_batch_size_1_and_4_give_identical_predictions(build_model,
                                                       support_bank,
                                                       test_images, sampler):
    model = noise_dependent_model(build_model, support_bank)
    set_diffusion_sampling(model, seed=0, **sampler)
    shapes = {tuple(item['inputs'].shape) for item in test_images}
    assert len(shapes) == 1, 'same-size images: batching adds no padding'

    with torch.backends.mkldnn.flags(enabled=False):
        together = predict(model, test_images)
        one_by_one = [predict(model, [item])[0] for item in test_images]
    any_mask = False
    for single, batched in zip(one_by_one, together):
        assert single.img_id == batched.img_id
        a, b = single.pred_instances, batched.pred_instances
        assert len(a) > 0
        for key in ('bboxes', 'scores', 'labels', 'masks', 'mask_uncertainty'):
            assert torch.equal(a[key], b[key]), (single.img_id, key)
        any_mask |= bool(a.masks.any())
    # not all empty (which would make the test vacuous)
    assert any_mask
