"""Video data: shards, readers, samplers, augmentation and CtP trajectory synthesis (tf.data / TF ops)."""

from ctp_tf.data.synthesis import synthesize_trajectories  # noqa: F401
