"""Walking a config as a tree of dicts and lists."""
from typing import Any, Iterator, Tuple


def iter_config_dicts(node: Any, path: str = '') -> Iterator[Tuple[str, dict]]:
    """Yield ``(dotted path, dict)`` for every dict in a (nested) config.

    The path uses the ``--cfg-options`` syntax: keys joined by dots, list
    items by their index (``custom_hooks.0.dataset``); the root's path is
    ``path``.

    Args:
        node: A config as plain dicts, lists and tuples
            (``Config.to_dict()``) or any part of one.
        path (str): The dotted path of ``node`` itself. Defaults to ''.
    """
    if isinstance(node, dict):
        yield path, node
        children = node.items()
    elif isinstance(node, (list, tuple)):
        children = enumerate(node)
    else:
        return
    for key, child in children:
        yield from iter_config_dicts(child,
                                     f'{path}.{key}' if path else str(key))
