from .checkpoint_checks import (checkpoint_mismatch, load_checkpoint_strictly,
                                read_checkpoint)
from .cli_checks import (InputError, build_runner, check_checkpoint,
                         check_mixed_precision, load_config, run_cli)
from .config_overrides import merge_cfg_options

__all__ = [
    'InputError', 'build_runner', 'check_checkpoint', 'check_mixed_precision',
    'load_config', 'run_cli', 'merge_cfg_options', 'checkpoint_mismatch',
    'load_checkpoint_strictly', 'read_checkpoint'
]
