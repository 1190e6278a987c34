"""Video data: shards, readers, samplers, augmentation and CtP trajectory synthesis (tf.data / TF ops).

`synthesize_trajectories` is imported on first use, so the converters (which need PyAV, not
the TF graph code) start without importing TensorFlow.
"""


def __getattr__(name):
  if name == "synthesize_trajectories":
    from ctp_tf.data.synthesis import synthesize_trajectories
    return synthesize_trajectories
  raise AttributeError(f"module 'ctp_tf.data' has no attribute {name!r}")
