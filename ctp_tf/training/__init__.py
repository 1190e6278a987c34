"""CtP pretraining with `model.fit` under tf.distribute.

Modules: `strategy` (get_strategy and its checks), `optimizer` (PyTorch-style SGD, step
schedule, linear LR scaling), `callbacks` (step backups, checkpoints, NaN guard, TensorBoard,
CSV, multi-worker patch), `config_utils` (config files, override key checks), `pretrain`
(`train(config, data_dir=..., workdir=...)`).
"""
