from .cli_checks import (InputError, build_runner, check_checkpoint,
                         load_config, run_cli)

__all__ = [
    'InputError', 'build_runner', 'check_checkpoint', 'load_config', 'run_cli'
]
