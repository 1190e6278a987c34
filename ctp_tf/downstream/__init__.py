"""Everything that uses a pretrained encoder (TensorFlow backend).

- `export`: (re-exports `ctp_tf.training.export`) `export_encoder` (standard-stride SavedModel + config.json + encoder.weights.h5),
  `load_encoder` (Keras backbone, exact weights), `load_serving` (plain `tf.saved_model.load`),
  `export_from_workdir` (a pretraining workdir's newest weights).
- `retrieval`: per-video features from an export, blocked cosine top-k with deterministic ties.
- `finetune`: finetuning (scratch or `init_from` an export) through `training.fit_loop`,
  10-clip validation callback; `finetuned`: a finetuning workdir's files, `load_finetuned`.
- `evaluate`: 10-clip evaluation (top-1/5, per class, confusion matrix).
- `gradcam`: guided Grad-CAM heat maps as PNG / GIF.

Submodules are imported explicitly (`from ctp_tf.downstream import export`) so importing the
package stays cheap.
"""
