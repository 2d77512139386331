from .cli_checks import (InputError, check_checkpoint, check_mixed_precision,
                         load_config, run_cli)
from .config_overrides import merge_cfg_options

__all__ = [
    'InputError', 'check_checkpoint', 'check_mixed_precision', 'load_config',
    'run_cli', 'merge_cfg_options'
]
