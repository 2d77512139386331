"""Helpers shared by the model tests."""

#: a denoiser small enough for a CPU forward pass in a few milliseconds
TINY_DENOISER = dict(
    type='MaskDenoisingUNet',
    base_channels=16,
    channel_mults=(1, 2),
    num_res_blocks=1,
    attention_channels=(32, ),
    num_head_channels=16)


def conditions_of_one_step(model, data):
    """One training forward pass of ``model`` on ``data``, recording the
    :class:`MaskCondition` the RoI head hands to the mask head.

    Returns:
        tuple: The first recorded condition and the losses.
    """
    seen = []
    original = model.roi_head.mask_head.loss_and_target

    def spy(condition, **kwargs):
        seen.append(condition)
        return original(condition, **kwargs)

    model.roi_head.mask_head.loss_and_target = spy
    model.train()
    losses = model(**data, mode='loss')
    return seen[0], losses
