"""Data structures shared by the data pipeline and the models (torch only,
like ``mmdet.structures``): importing this package pulls no image reader in.
"""
from .state_dict_diff import StateDictDiff, first_and_count
from .support_bank import SupportBank

__all__ = ['StateDictDiff', 'SupportBank', 'first_and_count']
