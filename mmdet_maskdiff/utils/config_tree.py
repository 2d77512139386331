"""Walking a config as a tree of dicts and lists."""
from typing import Any, Iterator, List, Mapping, Tuple

#: what :func:`value_at` returns for a path that is not there
MISSING = object()


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


def plain_config(node: Any) -> Any:
    """``node`` with lists for tuples and without the ``_scope_`` keys that
    mmengine adds to top-level dicts of a ``type``, so that a variable
    compares equal to the keys that took it."""
    if isinstance(node, Mapping):
        return {k: plain_config(v) for k, v in node.items() if k != '_scope_'}
    if isinstance(node, (list, tuple)):
        return [plain_config(item) for item in node]
    return node


def value_at(node: Any, parts: List[str]) -> Any:
    """The value at the dotted ``parts`` (keys, list indices) below
    ``node``, :data:`MISSING` when there is none."""
    for part in parts:
        if isinstance(node, Mapping) and part in node:
            node = node[part]
        elif (isinstance(node, (list, tuple)) and part.isdigit()
              and int(part) < len(node)):
            node = node[int(part)]
        else:
            return MISSING
    return node


def value_holders(tree: Any, value: Any, path: str = '') -> List[str]:
    """Dotted paths below ``tree`` whose value took ``value``: a string that
    contains it (a string ``value``), or a value equal to it (the first one
    on each branch). None, booleans and '' are found nowhere: too common to
    tell where they came from.

    Args:
        tree: A config as plain dicts and lists, or any part of one.
        value: The value of a config file's variable.
        path (str): The dotted path of ``tree``.

    Returns:
        list[str]: The paths, in the config's order.
    """
    if value is None or isinstance(value, bool) or value == '':
        return []
    if isinstance(value, str):
        if isinstance(tree, str) and value in tree:
            return [path]
    elif type(tree) is type(value) and tree == value:
        return [path]
    if isinstance(tree, Mapping):
        children = tree.items()
    elif isinstance(tree, (list, tuple)):
        children = enumerate(tree)
    else:
        return []
    found: List[str] = []
    for key, child in children:
        found += value_holders(child, value,
                               f'{path}.{key}' if path else str(key))
    return found
