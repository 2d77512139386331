from .few_shot_roi_head import FewShotRoIHead, QueryContext, SupportFeatures

__all__ = ['FewShotRoIHead', 'QueryContext', 'SupportFeatures']
