"""Video data: shards, readers, samplers, augmentation and CtP trajectory synthesis (tf.data / TF ops)."""
