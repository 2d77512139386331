"""A config that formats its text once per content.

mmengine's ``Config.pretty_text`` runs yapf over the whole config on every
access, and a Runner reads it at least four times before its first iteration
(the log, ``dump_config``, the visualizer's ``add_config``,
``RuntimeInfoHook``) and again in the meta of every checkpoint. The COCO
stage-2 config pretty-prints to ~760 lines, which yapf formats in ~0.65 s on
one CPU core: about 2.6 s of every run's start-up before any data is read.
"""
from mmengine.config import Config


class FormattedOnceConfig(Config):
    """A :class:`mmengine.config.Config` whose ``pretty_text`` is formatted
    by yapf once for each content of the config.

    The text is kept with the ``repr`` of the config's contents at the time
    it was formatted, and formatted again whenever that ``repr`` differs, so
    a config changed after a first access (a hook editing ``runner.cfg``)
    never gives stale text: the answer is always equal to
    ``Config.pretty_text`` of the same contents.
    """

    @classmethod
    def of(cls, cfg: Config) -> 'FormattedOnceConfig':
        """``cfg`` as a :class:`FormattedOnceConfig`, sharing its contents
        (as ``Config.copy`` does)."""
        other = cls.__new__(cls)
        other.__dict__.update(cfg.__dict__)
        return other

    @property
    def pretty_text(self) -> str:
        """``Config.pretty_text``, formatted once per content."""
        key = repr(self._cfg_dict)
        kept = self.__dict__.get('_formatted_text')
        if kept is None or kept[0] != key:
            kept = (key, super().pretty_text)
            # Config.__setattr__ writes into the config's contents
            object.__setattr__(self, '_formatted_text', kept)
        return kept[1]
