"""The model a hook acts on."""
from mmengine.model import is_model_wrapper


def unwrap_model(runner):
    """``runner.model`` without its DDP / FSDP wrapper, if it has one."""
    model = runner.model
    return model.module if is_model_wrapper(model) else model
