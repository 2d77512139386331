from .activation_memory import (SavedTensorCounter, Stage2ActivationMemory,
                                stage2_activation_memory)
from .checkpoint_checks import (checkpoint_mismatch, load_checkpoint_strictly,
                                read_checkpoint)
from .cli_checks import (InputError, build_runner, check_checkpoint,
                         check_mixed_precision, load_config, run_cli)
from .config_overrides import merge_cfg_options

__all__ = [
    'SavedTensorCounter', 'Stage2ActivationMemory', 'stage2_activation_memory',
    'InputError', 'build_runner', 'check_checkpoint', 'check_mixed_precision',
    'load_config', 'run_cli', 'merge_cfg_options', 'checkpoint_mismatch',
    'load_checkpoint_strictly', 'read_checkpoint'
]
