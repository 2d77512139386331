"""Data structures shared by the data pipeline and the models (torch only,
like ``mmdet.structures``): importing this package pulls no image reader in.
"""
from .support_bank import SupportBank

__all__ = ['SupportBank']
