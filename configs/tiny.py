"""Toy sizes for the tests: R3D-10 at width 1/8 on 8 x 32 x 32 clips, a few steps.

  configs/tiny.py            pretraining, 2 trajectories (tests/pretrain_helpers.tiny_config)
  configs/tiny.py:finetune   finetuning (tests/test_finetune.py, tests/test_robustness.py)

The toy sizes themselves are `defaults.tiny_pretrain` / `tiny_finetune` (shared with
`scripts/demo.py --tiny`); here is what the tests use on top. Tests change what they are about
(epochs, steps, ...) on top of that.
"""

from ctp_tf import defaults


def get_config(arg="pretrain"):
  if arg == "finetune":
    return _finetune()
  if arg != "pretrain":
    raise ValueError(f"configs/tiny.py: unknown variant {arg!r} (pretrain or finetune)")
  c = defaults.tiny_pretrain(defaults.pretrain_config())
  c.data.strides = (1, 2)
  c.synthesis.num_trajectories = 2
  c.synthesis.scales = (6, 8, 10, 12)
  c.model.arch, c.model.hidden = "r3d_10", 32
  c.optimizer = defaults.sgd_config(lr=0.01, weight_decay=1e-4, decay_epochs=(1,))
  c.train.batch_size, c.train.steps_per_epoch = 2, 3
  c.train.log_every_steps, c.train.keep_checkpoints, c.train.verbose = 1, 2, 0
  return c


def _finetune():
  c = defaults.tiny_finetune(defaults.finetune_config())
  c.data.stride = 2
  c.data.sizes, c.data.test_resize = ((43, 32), (48, 36)), (43, 32)
  c.model.arch = "r3d_10"
  c.optimizer = defaults.sgd_config(lr=0.02, weight_decay=5e-4, decay_epochs=(1,))
  c.train.batch_size, c.train.eval_batch_size = 2, 4
  c.train.backup_every_steps, c.train.log_every_steps, c.train.verbose = 1, 1, 0
  return c
