"""Guided Grad-CAM for a finetuned video classifier (the seed's supplementary Figure 3).

- Grad-CAM: gradients of the class logit w.r.t. the last conv stage's output (the backbone's
  stage 4, `[T', H', W', C]`); channel weights are the mean gradient over time and space;
  `ReLU(sum_c w_c * A_c)`, upsampled (linearly) to the clip's `[T, H, W]` and scaled to [0, 1].
- Guided backpropagation: gradients of the class logit w.r.t. the input pixels through a copy of
  the backbone whose ReLUs pass a gradient only where both the forward input and the incoming
  gradient are positive (`tf.custom_gradient`; the copy shares every other layer, so weights).
- Guided Grad-CAM = guided gradients x Grad-CAM (Selvaraju et al., ICCV 2017).

TensorFlow backend only (`tf.GradientTape`, `tf.custom_gradient`).

Example:
```python
from ctp_tf.downstream import finetune, gradcam
model, config, info = finetune.load_finetuned("runs/ucf_ctp")
maps = gradcam.guided_grad_cam(model, clip)            # clip uint8 [T, 112, 112, 3]
gradcam.save_visualisation(clip, maps, "cam.png", "cam.gif")
```
"""

import os

import numpy as np


def _split_classifier(classifier):
  """(backbone, dense) of a VideoClassifier: logits = dense(mean_{t,h,w} backbone(x))."""
  import keras

  backbone = getattr(classifier, "backbone", None)
  dense = [l for l in classifier.layers if isinstance(l, keras.layers.Dense)]
  if backbone is None or not dense:
    raise ValueError("guided Grad-CAM needs a VideoClassifier (a `.backbone` and a Dense head); "
                     f"got {type(classifier).__name__}.")
  return backbone, dense[-1]


def _guided_relu_layer_class():
  import keras
  import tensorflow as tf

  @tf.custom_gradient
  def guided_relu(x):
    y = tf.nn.relu(x)

    def grad(dy):
      # Guided backprop: only positive gradients through positive activations.
      return dy * tf.cast(dy > 0, dy.dtype) * tf.cast(x > 0, dy.dtype)

    return y, grad

  class GuidedReLU(keras.layers.Layer):
    def call(self, x):
      return guided_relu(x)

  return GuidedReLU


def guided_backbone(backbone):
  """A functional copy of `backbone` with every `ReLU` layer swapped for a guided ReLU.

  Non-ReLU layers are the original layer objects (weights shared, nothing copied).
  Returns (model, number of ReLU layers swapped).
  """
  import keras

  guided_cls = _guided_relu_layer_class()
  swapped = []

  def clone(layer):
    if isinstance(layer, keras.layers.ReLU) or (
        isinstance(layer, keras.layers.Activation)
        and getattr(layer.activation, "__name__", "") == "relu"):
      swapped.append(layer.name)
      return guided_cls(name=layer.name + "_guided")
    return layer

  plain = keras.Model(backbone.inputs, backbone.outputs)
  model = keras.models.clone_model(plain, clone_function=clone)
  return model, len(swapped)


def _upsample(cam, size):
  """Linear resize of `[T', H', W']` to `size` = (T, H, W) (space, then time)."""
  import tensorflow as tf

  t, h, w = size
  x = tf.image.resize(cam[..., None], (h, w), method="bilinear")[..., 0]   # [T', H, W]
  x = tf.reshape(x, [cam.shape[0], h * w])[None, ..., None]                # [1, T', HW, 1]
  x = tf.image.resize(x, (t, h * w), method="bilinear")[0, ..., 0]
  return tf.reshape(x, [t, h, w])


def guided_grad_cam(classifier, clip, class_index=None):
  """Grad-CAM, guided backprop and their product for one clip.

  Args:
    classifier: a finetuned `VideoClassifier`.
    clip: uint8 `[T, H, W, 3]`.
    class_index: class to explain; default the predicted class.

  Returns:
    dict of numpy arrays: `cam` [T, H, W] in [0, 1], `guided` [T, H, W, 3] (input gradients
    through guided ReLUs), `guided_cam` [T, H, W, 3] (their product), `logits` [C],
    `class_index` int, `guided_relus` (number of ReLUs swapped).
  """
  import tensorflow as tf

  backbone, dense = _split_classifier(classifier)
  clip = np.asarray(clip)
  x = tf.convert_to_tensor(clip[None].astype(np.float32))   # Normalize takes 0..255 floats

  with tf.GradientTape() as tape:
    feats = backbone(x, training=False)
    tape.watch(feats)
    logits = dense(tf.reduce_mean(feats, axis=[1, 2, 3]))
    if class_index is None:
      class_index = int(tf.argmax(logits[0]))
    score = logits[0, class_index]
  grads = tape.gradient(score, feats)[0]                    # [T', H', W', C]
  weights = tf.reduce_mean(grads, axis=[0, 1, 2])           # [C]
  cam = tf.nn.relu(tf.reduce_sum(feats[0] * weights, axis=-1))
  cam = _upsample(cam, clip.shape[:3])
  cam = cam / tf.maximum(tf.reduce_max(cam), 1e-12)

  guided, swapped = guided_backbone(backbone)
  with tf.GradientTape() as tape:
    tape.watch(x)
    g_logits = dense(tf.reduce_mean(guided(x, training=False), axis=[1, 2, 3]))
    g_score = g_logits[0, class_index]
  gb = tape.gradient(g_score, x)[0]
  cam = cam.numpy()
  gb = gb.numpy()
  return {"cam": cam, "guided": gb, "guided_cam": gb * cam[..., None],
          "logits": logits[0].numpy(), "class_index": int(class_index), "guided_relus": swapped}


def _to_image(grad):
  """Gradient map -> uint8 image (the usual deprocessing: standardise, 0.5 +- 0.15 std)."""
  g = grad - grad.mean()
  g = g / (g.std() + 1e-8) * 0.15 + 0.5
  return (np.clip(g, 0, 1) * 255).astype(np.uint8)


def overlay(frames, cam, alpha=0.45):
  """Jet-coloured heat map blended over uint8 frames: [T, H, W, 3] uint8."""
  import matplotlib
  heat = matplotlib.colormaps["jet"](cam)[..., :3]
  blend = np.asarray(frames, np.float32) / 255 * (1 - alpha) + heat * alpha
  return (blend.clip(0, 1) * 255).astype(np.uint8)


def save_visualisation(clip, maps, png_path=None, gif_path=None, *, max_frames=8, title=None):
  """PNG grid (rows: frames, Grad-CAM overlay, guided Grad-CAM) and/or a GIF of the three.

  Files are written under temporary names and renamed when complete.
  """
  clip = np.asarray(clip)
  t = clip.shape[0]
  over = overlay(clip, maps["cam"])
  ggc = _to_image(maps["guided_cam"])
  if png_path:
    from ctp_tf import figures
    plt = figures.pyplot()
    chosen = np.unique(np.linspace(0, t - 1, min(max_frames, t)).round().astype(int))
    fig, axes = plt.subplots(3, len(chosen), figsize=(1.8 * len(chosen), 5.6), squeeze=False)
    for j, f in enumerate(chosen):
      for i, (img, name) in enumerate(((clip, "frames"), (over, "Grad-CAM"),
                                       (ggc, "guided Grad-CAM"))):
        axes[i, j].imshow(img[f])
        axes[i, j].set_xticks([])
        axes[i, j].set_yticks([])
        if j == 0:
          axes[i, j].set_ylabel(name)
      axes[0, j].set_title(f"t={f}", fontsize=8)
    if title:
      fig.suptitle(title)
    fig.tight_layout()
    figures.save_figure(fig, png_path, dpi=100)
  if gif_path:
    from PIL import Image
    strip = np.concatenate([clip, over, ggc], axis=2)     # side by side
    images = [Image.fromarray(f) for f in strip]
    from ctp_tf import fileio
    fileio.save_atomic(lambda tmp: images[0].save(tmp, save_all=True, append_images=images[1:],
                                                  duration=120, loop=0), gif_path)


def gradcam_videos(workdir, data_dir, video_indices, out_dir, *, split=None, class_index=None):
  """Guided Grad-CAM PNG + GIF for the centre test clip of the chosen videos of a finetuned run.

  Returns:
    list of dicts: video_index, label, class_index, png, gif.
  """
  from ctp_tf.downstream import evaluate, finetune

  model, config, info = finetune.load_finetuned(workdir)
  split = split or config.data.test_split
  wanted = set(int(v) for v in video_indices)
  ds = evaluate.eval_dataset_for(config, data_dir, split=split, batch_size=1)
  os.makedirs(out_dir, exist_ok=True)
  classes = info.get("classes") or []
  written = []
  for batch in ds:
    vid = int(np.asarray(batch["video_index"])[0])
    if vid not in wanted:
      continue
    clips = np.asarray(batch["clips"])[0]
    clip = clips[len(clips) // 2]
    maps = guided_grad_cam(model, clip, class_index)
    label = int(np.asarray(batch["label"])[0])
    name = lambda c: classes[c] if c < len(classes) else str(c)  # noqa: E731
    png = os.path.join(out_dir, f"video{vid}.png")
    gif = os.path.join(out_dir, f"video{vid}.gif")
    save_visualisation(clip, maps, png, gif,
                       title=f"video {vid}: true {name(label)}, explained "
                             f"{name(maps['class_index'])}")
    written.append({"video_index": vid, "label": label, "class_index": maps["class_index"],
                    "png": png, "gif": gif})
    wanted.discard(vid)
    if not wanted:
      break
  if wanted:
    raise ValueError(f"video_index {sorted(wanted)} not in split {split!r} of {data_dir!r}.")
  return written
