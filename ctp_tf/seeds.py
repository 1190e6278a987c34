"""Seeds derived from a run's seed: the one place their formulas live.

`stream_seed(seed, start_step, pipeline_id)` seeds an input stream (re)started at a global
step on one input pipeline: a run restarted at step s sees the same data as any other restart
at s, and a resumed run draws new clips instead of replaying the first epoch's.
"""


def stream_seed(seed, start_step, pipeline_id=0):
  """Dataset seed for a stream (re)started at `start_step` on input pipeline `pipeline_id`."""
  return int((int(seed) * 1_000_003 + int(start_step) * 7_919 + int(pipeline_id) * 104_729)
             % (2**31 - 1))
