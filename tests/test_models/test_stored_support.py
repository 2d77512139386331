"""The K-shot support set travels with the weights: state_dict, mmengine's
checkpoints, and the refusal of a set that does not fit the model."""
import copy

import pytest
import torch
from mmengine.runner.checkpoint import (get_state_dict, load_checkpoint,
                                        save_checkpoint, weights_to_cpu)

from mmdet_maskdiff.models.roi_heads.stored_support import (StoredSupport,
                                                            first_shots)
from mmdet_maskdiff.structures import SupportBank

K = 5  # the fixture config is coco_5shot.py
INFO = dict(crop_size=32, context=0.1, dataset=dict(seed=0))


def predict(model, batch):
    with torch.no_grad():
        data = model.data_preprocessor(copy.deepcopy(batch), False)
        return model(**data, mode='predict')[0].pred_instances


def stored_model(build_model, support_bank, **model_keys):
    model = build_model(**model_keys).eval()
    model.roi_head.support_encoder.store(support_bank, INFO)
    return model


def test_first_shots_keeps_what_inference_uses(support_bank):
    """The stored sub-bank gives the same test-time shots (crop, mask,
    label) as the whole bank, and only those (here 2 of the 5 per class)."""
    sub = first_shots(support_bank, 2)
    classes = torch.unique(support_bank.labels)
    whole = support_bank.fixed(classes, 2)
    part = sub.fixed(classes, 2)
    assert torch.equal(sub.crops[part], support_bank.crops[whole])
    assert torch.equal(sub.masks[part], support_bank.masks[whole])
    assert torch.equal(sub.labels[part], support_bank.labels[whole])
    assert sub.num_per_class().tolist() == [2] * len(classes)
    assert torch.equal(sub.img_ids,
                       support_bank.img_ids[whole.flatten().sort().values])


def test_tensors_round_trip(support_bank):
    stored = StoredSupport(
        first_shots(support_bank, K), dict(INFO, num_shots=K))
    back = StoredSupport.from_tensors(stored.to_tensors())
    for name in ('crops', 'masks', 'labels', 'img_ids'):
        assert torch.equal(
            getattr(back.bank, name), getattr(stored.bank, name)), name
    assert back.bank.class_names == support_bank.class_names
    assert back.info == dict(INFO, num_shots=K)


def test_state_dict_carries_the_support_set(build_model, support_bank):
    model = stored_model(build_model, support_bank)
    state = model.state_dict()
    keys = {k for k in state if '.support_set.' in k}
    assert keys == {
        f'roi_head.support_encoder.support_set.{n}'
        for n in ('crops', 'masks', 'labels', 'img_ids', 'info')
    }
    assert all(isinstance(state[k], torch.Tensor) for k in keys)
    # a model without a stored set writes none
    assert not any('.support_set.' in k for k in build_model().state_dict())


def test_checkpoint_restores_the_support_set_and_the_masks(
        build_model, support_bank, test_batch, tmp_path):
    """mmengine's save_checkpoint / load_checkpoint (what the Runner and
    init_detector use): the loaded model predicts the same masks with no
    bank given, as the original with the hook's bank."""
    model = stored_model(build_model, support_bank)
    model.roi_head.support_encoder.use_bank(support_bank)  # as SupportSetHook does at test
    expected = predict(model, test_batch)
    assert len(expected) > 0
    path = str(tmp_path / 'stage2.pth')
    # what Runner.save_checkpoint writes
    save_checkpoint({'state_dict': weights_to_cpu(get_state_dict(model))},
                    path)

    loaded = build_model(seed=1).eval()  # other random weights
    load_checkpoint(loaded, path, map_location='cpu', strict=True)
    assert loaded.roi_head.support_encoder.bank is None
    assert loaded.roi_head.support_encoder.stored.info['num_shots'] == K
    got = predict(loaded, test_batch)
    assert torch.equal(got.bboxes, expected.bboxes)
    assert torch.equal(got.masks, expected.masks)
    # and the loaded model saves it again
    assert 'roi_head.support_encoder.support_set.crops' in loaded.state_dict()


def test_other_k_is_refused_in_one_line(build_model, support_bank):
    state = stored_model(build_model, support_bank).state_dict()
    one_shot = build_model(**{'roi_head.mask_head.num_shots': 1})
    with pytest.raises(ValueError) as info:
        one_shot.load_state_dict(state, strict=False)
    message = str(info.value)
    assert '\n' not in message
    assert '5-shot support set' in message
    assert '1-shot model over 8 classes' in message
    assert 'coco_5shot.py' in message


def test_other_class_count_is_refused(build_model, support_bank):
    state = stored_model(build_model, support_bank).state_dict()
    other = build_model(**{'roi_head.mask_head.num_classes': 80})
    with pytest.raises(ValueError, match='over 80 classes'):
        other.load_state_dict(state, strict=False)


def test_other_class_list_cannot_replace_the_stored_set(
        build_model, support_bank):
    model = stored_model(build_model, support_bank)
    renamed = SupportBank(
        crops=support_bank.crops,
        masks=support_bank.masks,
        labels=support_bank.labels,
        img_ids=support_bank.img_ids,
        num_classes=support_bank.num_classes,
        class_names=tuple(f'x{i}' for i in range(support_bank.num_classes)))
    with pytest.raises(ValueError, match='support set classes differ'):
        model.roi_head.support_encoder.use_bank(renamed)
    assert model.roi_head.support_encoder._require_bank() is model.roi_head.support_encoder.stored.bank


def test_a_given_bank_overrides_the_stored_one(build_model, support_bank):
    """SupportSetHook's set (or use_config_support_set) replaces the
    checkpoint's at test time when its class list is the same."""
    model = stored_model(build_model, support_bank)
    other = first_shots(support_bank, 1)  # another K-shot sample
    model.roi_head.support_encoder.use_bank(other)
    assert model.roi_head.support_encoder._require_bank() is other


def test_no_support_set_says_how_to_fix_it(build_model, test_batch):
    model = build_model().eval()
    with pytest.raises(RuntimeError) as info:
        predict(model, test_batch)
    message = str(info.value)
    assert '\n' not in message
    assert message.startswith('no support set')
    assert 'SupportSetHook' in message
    assert 'use_config_support_set' in message


def test_stored_set_is_not_a_training_pool(build_model, support_bank,
                                           train_batch):
    """Training needs the hook's pool; the K-shot set alone is refused."""
    model = stored_model(build_model, support_bank).train()
    data = model.data_preprocessor(copy.deepcopy(train_batch), True)
    with pytest.raises(RuntimeError, match='no support set'):
        model(**data, mode='loss')


def test_config_support_set_replaces_the_stored_one(build_model, support_bank,
                                                    maskdiff_cfg):
    """use_config_support_set: the K-shot set of the config's hook becomes
    the model's, also in later checkpoints."""
    from mmdet_maskdiff.apis import use_config_support_set
    model = build_model().eval()
    use_config_support_set(model, maskdiff_cfg)
    bank = model.roi_head.support_encoder.bank
    assert bank is not None
    assert model.roi_head.support_encoder.stored.bank.class_names == bank.class_names
    assert 'roi_head.support_encoder.support_set.crops' in model.state_dict()


def test_config_without_support_set_hook_is_named(build_model, maskdiff_cfg):
    from mmdet_maskdiff.apis import use_config_support_set
    cfg = copy.deepcopy(maskdiff_cfg)
    cfg.custom_hooks = []
    with pytest.raises(ValueError, match='has no SupportSetHook'):
        use_config_support_set(build_model(), cfg)
