# Iteration-based runtime shared by every MaskDiff stage.
_base_ = 'mmdet::_base_/default_runtime.py'

train_cfg = dict(type='IterBasedTrainLoop', max_iters=110000,
                 val_interval=10000)
val_cfg = dict(type='ValLoop')
test_cfg = dict(type='TestLoop')
default_hooks = dict(
    logger=dict(type='LoggerHook', interval=50),
    checkpoint=dict(type='CheckpointHook', by_epoch=False, interval=10000,
                    max_keep_ckpts=2),
    # training draws seeded per (seed, rank, iteration): `--resume` is exact
    iteration_seed=dict(type='IterationSeedHook'))
# seeded, with a different seed per rank (mmengine adds the rank): two runs
# of one config on one machine give the same weights, and `--resume`
# rebuilds the data loader (its workers' seeds) from the same seed
randomness = dict(seed=0, diff_rank_seed=True)
log_processor = dict(type='LogProcessor', window_size=50, by_epoch=False)
# 8 GPUs x 2 images; `--auto-scale-lr` rescales the lr for other sizes.
auto_scale_lr = dict(enable=False, base_batch_size=16)
