"""Figures of synthesised CtP trajectories (like the seed's Figure 2): PNG grids and GIFs.

Boxes are drawn in one colour per trajectory; a solid outline marks a frame where the patch is
pasted (visible), a dashed one a frame where it is hidden (masked region model) but still
supervised. matplotlib only (the Agg backend); files are written to a temporary name first.
"""


import numpy as np

from ctp_tf import figures, fileio

COLOURS = ("#ff3030", "#30ff30", "#3090ff", "#ffd030", "#ff30ff", "#30ffff")


_plt = figures.pyplot
_atomic_save = fileio.save_atomic


def draw_boxes(ax, frame, boxes, visible, linewidth=1.5):
  """Shows `frame` (uint8 [H, W, 3]) with `boxes` [N, 4] (x1 y1 x2 y2) on a matplotlib axis."""
  from matplotlib.patches import Rectangle
  ax.imshow(frame, interpolation="nearest")
  artists = []
  for n, (box, vis) in enumerate(zip(np.asarray(boxes), np.asarray(visible))):
    x1, y1, x2, y2 = (float(v) for v in box)
    # Pixel edges sit at half-integers in imshow coordinates.
    rect = Rectangle((x1 - 0.5, y1 - 0.5), x2 - x1, y2 - y1, fill=False,
                     edgecolor=COLOURS[n % len(COLOURS)], linewidth=linewidth,
                     linestyle="-" if vis else (0, (2, 2)))
    ax.add_patch(rect)
    artists.append(rect)
  ax.set_xticks([])
  ax.set_yticks([])
  return artists


def _frames_to_show(num_frames, max_frames):
  if num_frames <= max_frames:
    return list(range(num_frames))
  return [int(round(i)) for i in np.linspace(0, num_frames - 1, max_frames)]


def plot_trajectory_grid(clips, boxes, visible, path, *, max_frames=8, title=None):
  """PNG grid: one row per clip, `max_frames` evenly spaced frames per row.

  Args:
    clips: uint8 [B, T, H, W, 3]; boxes: [B, N, T, 4]; visible: bool [B, N, T].
  """
  plt = _plt()
  clips, boxes, visible = np.asarray(clips), np.asarray(boxes), np.asarray(visible)
  frames = _frames_to_show(clips.shape[1], max_frames)
  rows, cols = clips.shape[0], len(frames)
  fig, axes = plt.subplots(rows, cols, figsize=(1.6 * cols, 1.6 * rows + 0.4), squeeze=False)
  for b in range(rows):
    for c, t in enumerate(frames):
      ax = axes[b, c]
      draw_boxes(ax, clips[b, t], boxes[b, :, t], visible[b, :, t])
      if b == 0:
        ax.set_title(f"t={t}", fontsize=8)
  fig.suptitle(title or "synthesised trajectories (solid: patch visible, dashed: hidden)",
               fontsize=9)
  fig.tight_layout()
  _atomic_save(lambda p: fig.savefig(p, dpi=100), path)
  plt.close(fig)
  return path


def save_trajectory_gif(clips, boxes, visible, path, *, fps=4):
  """Animated GIF: the clips side by side, one GIF frame per video frame (pillow writer)."""
  plt = _plt()
  from matplotlib import animation
  clips, boxes, visible = np.asarray(clips), np.asarray(boxes), np.asarray(visible)
  num = clips.shape[0]
  fig, axes = plt.subplots(1, num, figsize=(2.2 * num, 2.4), squeeze=False)
  axes = axes[0]

  def draw(t):
    for b, ax in enumerate(axes):
      ax.clear()
      draw_boxes(ax, clips[b, t], boxes[b, :, t], visible[b, :, t])
    fig.suptitle(f"frame {t}", fontsize=9)
    return []

  anim = animation.FuncAnimation(fig, draw, frames=clips.shape[1], blit=False)
  _atomic_save(lambda p: anim.save(p, writer=animation.PillowWriter(fps=fps)), path)
  plt.close(fig)
  return path


def synthesised_examples(data_dir, config, *, num_clips=3, seed=0, split=None):
  """`num_clips` pretraining examples (after colour jitter) with their visibility, as numpy."""
  import tensorflow as tf
  from ctp_tf.data import pretrain_input, reader
  split = split or config.data.get("split", "train")
  videos = reader.read_videos(data_dir, split, shuffle=True, seed=seed, repeat=True)
  ds = tf.data.Dataset.zip(videos, pretrain_input.example_seeds(seed, 0))
  make = tf.autograph.experimental.do_not_convert(
      lambda v, s: pretrain_input.pretrain_example(v, s, config, with_visible=True))
  batch = next(iter(ds.map(make).batch(num_clips)))
  return {k: v.numpy() for k, v in batch.items()}


def render_pretrain_examples(data_dir, config, png_path, *, gif_path=None, num_clips=3, seed=0,
                             max_frames=8):
  """Synthesises `num_clips` examples from `data_dir` and writes the PNG grid (and a GIF)."""
  ex = synthesised_examples(data_dir, config, num_clips=num_clips, seed=seed)
  paths = {"png": plot_trajectory_grid(ex["clip"], ex["boxes"], ex["visible"], png_path,
                                       max_frames=max_frames)}
  if gif_path:
    paths["gif"] = save_trajectory_gif(ex["clip"], ex["boxes"], ex["visible"], gif_path)
  return paths
