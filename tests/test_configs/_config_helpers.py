"""Helpers shared by the config tests."""
from mmengine.config import Config


def flatten(value, prefix=''):
    """A nested config dict as ``{dotted key: leaf value}``."""
    if isinstance(value, dict):
        out = {}
        for key, item in value.items():
            out.update(flatten(item, f'{prefix}{key}.'))
        return out
    return {prefix[:-1]: value}


def differences(path, reference):
    """``{dotted key: (value in path, value in reference)}`` for every key
    whose values differ between the two config files (None: absent)."""
    a = flatten(Config.fromfile(path).to_dict())
    b = flatten(Config.fromfile(reference).to_dict())
    return {
        key: (a.get(key), b.get(key))
        for key in set(a) | set(b) if a.get(key) != b.get(key)
    }
