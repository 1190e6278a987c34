"""Training with `model.fit` under tf.distribute: the fit loop, pretraining, the export.

Modules: `strategy` (get_strategy and its checks), `optimizer` (PyTorch-style SGD, step
schedule, linear LR scaling), `workdir` (lock, kind, fingerprint), `checkpoint` (the checkpoint
format: step backups, epoch checkpoints, all-or-nothing restore), `callbacks` (NaN guard,
TensorBoard, CSV, box images, multi-worker patch), `fit_loop` (the one resumable loop:
`plan_batches`, `run`), `config_utils` (config files, override key checks), `pretrain`
(`train(config, data_dir=..., workdir=...)`), `export` (the encoder export pretraining ends
with; `ctp_tf.downstream.export` re-exports it).
"""
