r"""CtP pretraining input pipeline throughput: clips/s, CPU cost per stage, peak RSS.

Builds synthetic shards (a panning smooth texture with moving blobs and mild noise, JPEG quality
90, about natural-video JPEG sizes) with frames stored at 320x240 and at short side 128
(171x128), then times `pretrain_dataset` (read, parse, sample 16 frames at stride 1..5, decode
only the crop window, scale to short side {112,128,144}, crop 112, flip, CtP synthesis of 3
trajectories, hue/saturation, dynamic brightness/contrast, batch 32) in a fresh subprocess per
setting. The 1-core setting pins the subprocess to one CPU and limits tf.data and op threads to 1.

Where the time goes (`--stages`): the same pipeline cut after decode+flip ("decode"), after the
synthesis ("synthesis") and complete ("full"); plus "synthesis_only": the synthesis alone on
clips already in memory. Differences of CPU-seconds per clip give each stage's cost.

Besides wall-clock clips/s it reports clips per CPU-second (process CPU time): what a dedicated
core delivers, and much less sensitive to other load on a shared machine than wall time.
Baseline: the PyTorch release's per-sample numpy/OpenCV pipeline, 99 clips/s on one core of the
2-core development machine at 320x240.

Measured on the shared 2-core development machine under load average 5-11 from other jobs
(so wall clips/s is meaningless there; CPU ms per clip is inflated by contention too, and
repeated runs of the same code differ by ~10%), batch 32, 32 synthetic videos x 60 frames
(q90: 22.6 KB/frame at 320x240, 7.1 KB at 171x128), --batches=6 --warmup=2:
  before (2f27a8e, synthesis and colour per clip, uint8 between stages):
    320x240: 1 core 29.0 / 31.9 CPU-ms/clip (two runs; 34.5 / 31.3 clips per CPU-s),
             2 cores 29.8 (33.6); decode+flip stage 15.5, synthesis alone ~10, colour 4-5.
    171x128: 1 core 21.8 / 20.9 (45.9 / 47.8), 2 cores 20.6 (48.6); decode+flip 8.5.
  after (c056344: fused brightness/contrast, float clips between synthesis and colour):
    320x240: 1 core 29.5 (33.9), 2 cores 30.8 (32.5); decode+flip 13.5.
             reduced_decode=1.6: 1 core 29.5 (33.9), 2 cores 29.2 (34.3), decode+flip 13.5.
    171x128: 1 core 21.6 (46.3), 2 cores 23.1 (43.2); decode+flip 8.0.
  i.e. no change measurable at the pipeline level. What was tried (one-core micro-benchmarks,
  CPU ms per clip, same process A/B):
  - synthesis + colour after .batch() on B = 32 (`pretrain_input.batch_stage`): 28.3 vs 15.9
    per clip; B = 2..8 no better than 1 within noise. The per-op overhead it saves (~2.6 ms)
    is lost to cache misses of whole-batch passes (float batch ~80 MB). Not used.
  - fused brightness/contrast (one affine map per frame): 3.35 -> 2.15 when applied (75%).
  - window-only sequential paste (gather/tensor_scatter_nd_update per layer): 13-15 vs 9.2;
    window-entry transmittance (gathers instead of full-clip products): 15.3-16.2 vs 13.4-14.0;
    saturation as c -> V - f (V - c) (exact): 9.8 vs 5.9 for AdjustSaturation. All rejected:
    TF's single-threaded elementwise passes are cheap next to gathers, scatters and
    last-axis reductions.
  - reduced_decode=1.6 (1/2-resolution DCT decode for short sides 112, 128 and 144 from 240):
    decode+scale+crop alone 15.5 -> 13.0 (112), 15.8 -> 14.2 (128), 17.3 -> 14.9 (144) ms per
    clip; PSNR against the exact path 40.5, 40.5, 40.2 dB (min 39.2) on the synthetic frames;
    not separable from noise in the full pipeline. dct_method=INTEGER_FAST and
    fancy_upscaling=False: no gain in decode time.
  - TF_ENABLE_ONEDNN_OPTS=1 (`--onednn=1`; unset by default here): 320x240, 1 core, two
    alternating pairs gave 26.5 / 27.6 CPU-ms/clip vs 31.0 / 30.2 with 0, but the next full
    run with 1 gave 30.2 (171x128: 23.2): inconclusive, within the noise of this machine.
The 2x-the-PyTorch-release goal (>= 198 clips/s per core, i.e. <= 5 ms/clip) is NOT reached:
~30 CPU-ms/clip at 320x240 (decode+scale+crop ~13, synthesis ~9-10, colour ~3-4, read ~3).
And it cannot be with these frames: `--stages=jpeg_floor` decodes the 16 frames and nothing
else, and took 8.1 ms per clip at full scale and 5.3 ms at 1/8 scale (mostly entropy decoding,
which no crop window or DCT scaling skips) at 320x240, q90, 22.6 KB per frame.
Later, on an idle machine (load < 1), --videos=32 --frames=60 --batches=8: 320x240 1 core
34.4 clips/s wall (35.6 per CPU-s), 2 cores 66.1 (1.92x); 171x128 58.5 and 103.2 (1.76x).
Alternated with `benchmarks/numpy_pipeline.py` (the release's kind of per-sample numpy/OpenCV
pipeline on the same JPEGs): ours 35.9, 38.0, 32.7 clips per CPU-s at 320x240, the numpy one
37.5, 31.5, 31.4; at 171x128 58.6 against 49.7. On par, not 2x.

Both synthesis placements on camera-like frames (`--frames_kind=camera`, the default now:
pans over a photograph, 22.2 KB per 320x240 q90 frame), machine loaded (load average 7.6-9.1
on the 2 cores; helpers' experiments running), --stored=320x240 --videos=32 --frames=60
--batches=6 --warmup=2: host CPU-ms per clip, placement="input" 18.1 (1 core) / 17.7 (2
cores); placement="accelerator" 9.75 / 10.1 (1.86x less host CPU: patches and colour jitter
move to the train step); synthesis_only 8.1. `../shared/tools/release_pipeline_speed.py` on
the same shards (one core each, alternated): ratio to the PyTorch release 1.14 (input) and
2.20 (accelerator).

  python benchmarks/pretrain_pipeline.py --output=/tmp/pretrain_pipeline.json
  python benchmarks/pretrain_pipeline.py --placements=accelerator --threads=1 --stages=
  python benchmarks/pretrain_pipeline.py --reduced_decode=1.6 --stages=decode,synthesis
  python benchmarks/pretrain_pipeline.py --stages=jpeg_floor --threads=1
"""

import json
import os
import tempfile
import time

from absl import app, flags

import bench_worker   # beside this script


flags.DEFINE_integer("videos", 64, "Synthetic videos per stored size.")
flags.DEFINE_integer("frames", 80, "Frames per synthetic video.")
flags.DEFINE_integer("batch_size", 32, "Clips per batch.")
flags.DEFINE_integer("batches", 10, "Timed batches per setting (after warm-up).")
flags.DEFINE_integer("warmup", 3, "Untimed batches first.")
flags.DEFINE_list("stored", ["320x240", "171x128"], "Stored frame sizes WxH.")
flags.DEFINE_list("threads", ["1", "all"], "Core settings for the full pipeline: 1 and/or all.")
flags.DEFINE_list("placements", ["input", "accelerator"],
                  "config.synthesis.placement of the full-pipeline runs: 'input' (everything on "
                  "the host) and/or 'accelerator' (patches and colour jitter left to the train "
                  "step: the host's CPU per clip without them).")
flags.DEFINE_enum("frames_kind", "camera", ["camera", "synthetic"],
                  "camera: slow camera pans (random zoom, flip, start, velocity, sensor noise) "
                  "over a photograph (matplotlib's sample grace_hopper.jpg), ~16-21 KB per "
                  "320x240 q90 frame, like converted camera video; synthetic: smooth random "
                  "texture with moving blobs (~22.6 KB of fine texture per frame).")
flags.DEFINE_list("stages", ["decode", "synthesis", "synthesis_only", "jpeg_floor"],
                  "Extra 1-core runs that cut the pipeline, to see where the time goes "
                  "(decode, synthesis, synthesis_only, jpeg_floor); 'full' is always run.")
flags.DEFINE_float("reduced_decode", 0.0, "config.data.reduced_decode: 1/2-resolution JPEG "
                   "decoding when the frame shrinks by >= this factor (0: off, exact).")
flags.DEFINE_string("onednn", "", "TF_ENABLE_ONEDNN_OPTS for the timed processes ('1', '0'; "
                    "empty: inherit the environment).")
flags.DEFINE_string("work_dir", "", "Where the synthetic shards go (default: a temp dir).")
flags.DEFINE_string("output", "", "Also write the JSON here.")
flags.DEFINE_string("worker_data_dir", "", "Internal: run one timing on this data dir.")
flags.DEFINE_string("worker_threads", "all", "Internal.")
flags.DEFINE_string("worker_stage", "full", "Internal.")
flags.DEFINE_string("worker_placement", "input", "Internal.")

FLAGS = flags.FLAGS


def camera_videos(width, height, videos, frames, seed=0):
  """Yields `videos` lists of `frames` uint8 frames: camera pans over a photograph."""
  import matplotlib.cbook
  import numpy as np
  import tensorflow as tf

  with open(matplotlib.cbook.get_sample_data("grace_hopper.jpg", asfileobj=False), "rb") as f:
    photo = tf.io.decode_jpeg(f.read()).numpy().astype(np.float32)
  rng = np.random.default_rng(seed)
  for _ in range(videos):
    # Zoomed so the frame (scaled to the photo's height) still leaves room to pan.
    zoom = rng.uniform(1.0, 1.8) * max(height / photo.shape[0], width / photo.shape[1]) * 1.2
    big = tf.image.resize(photo, (int(photo.shape[0] * zoom), int(photo.shape[1] * zoom))).numpy()
    if rng.uniform() < 0.5:
      big = big[:, ::-1]
    y, x = rng.uniform(0, big.shape[0] - height), rng.uniform(0, big.shape[1] - width)
    vy, vx = rng.uniform(-2, 2, 2)
    out = []
    for t in range(frames):
      yy = int(np.clip(y + vy * t, 0, big.shape[0] - height))
      xx = int(np.clip(x + vx * t, 0, big.shape[1] - width))
      frame = big[yy:yy + height, xx:xx + width] + rng.normal(0, 2.0, (height, width, 3))
      out.append(np.clip(frame, 0, 255).astype(np.uint8))
    yield out


def make_shards(out_dir, width, height, videos, frames, seed=0, kind="synthetic"):
  """Writes `videos` synthetic videos of `frames` JPEG frames at width x height, 4 shards."""
  import numpy as np
  import tensorflow as tf
  from ctp_tf.data import shards

  rng = np.random.default_rng(seed)
  yy, xx = np.mgrid[0:height, 0:width].astype(np.float32)
  records, total = [], 0
  camera = camera_videos(width, height, videos, frames, seed) if kind == "camera" else None
  for v in range(videos):
    if camera is not None:
      jpegs = [tf.io.encode_jpeg(f, quality=90).numpy() for f in next(camera)]
      total += sum(len(j) for j in jpegs)
      records.append(shards.make_sequence_example(
          jpegs, media_id=f"camera_{v}", label_index=v % 10, label_string=f"c{v % 10}",
          height=height, width=width, frame_rate=25.0, index=v).SerializeToString())
      continue
    # A texture twice the frame size, smooth at several scales, panned by a slow camera.
    tex = sum(tf.image.resize(rng.uniform(0, 255, (2 * height // s, 2 * width // s, 3)),
                              (2 * height, 2 * width)).numpy() * w
              for s, w in ((40, 0.5), (10, 0.3), (3, 0.2)))
    pan = rng.uniform(-1.5, 1.5, 2)
    blobs = [(rng.uniform(0, height), rng.uniform(0, width), rng.uniform(8, 50) * height / 240,
              rng.uniform(-80, 80, 3), rng.uniform(-3, 3, 2)) for _ in range(6)]
    jpegs = []
    for t in range(frames):
      oy = int(np.clip(height / 2 + pan[0] * t, 0, height))
      ox = int(np.clip(width / 2 + pan[1] * t, 0, width))
      img = tex[oy:oy + height, ox:ox + width] + rng.normal(0, 3, (height, width, 3))
      for cy, cx, r, col, (vy, vx) in blobs:
        inside = ((yy - cy - vy * t) ** 2 + (xx - cx - vx * t) ** 2) < r * r
        img = img + inside[..., None] * col
      jpegs.append(tf.io.encode_jpeg(np.clip(img, 0, 255).astype(np.uint8), quality=90).numpy())
    total += sum(len(j) for j in jpegs)
    records.append(shards.make_sequence_example(
        jpegs, media_id=f"synthetic_{v}", label_index=v % 10, label_string=f"c{v % 10}",
        height=height, width=width, frame_rate=25.0, index=v).SerializeToString())
  n = 4
  for s in range(n):
    shards.write_tfrecord_atomic(os.path.join(out_dir, shards.shard_name("train", s, n)),
                                 records[s::n])
  return total / (videos * frames)


def _dataset(data_dir, config, stage, options):
  """The pretraining pipeline, complete or cut after a stage."""
  import tensorflow as tf
  from ctp_tf.data import augment, pretrain_input, reader, sampling
  from ctp_tf.data.synthesis import synthesize_trajectories

  if stage == "full":
    return pretrain_input.pretrain_dataset(data_dir, config, batch_size=FLAGS.batch_size,
                                           seed=0, options=options)
  data = config.data

  def decode(video, seed):
    seeds = tf.random.experimental.stateless_split(seed, num=4)
    idx = sampling.train_indices(video["num_frames"], seeds[0], data.clip_len, data.strides,
                                 temporal_jitter=data.temporal_jitter)
    shape = tf.io.extract_jpeg_shape(video["frames"][0])
    clip = augment.decode_scale_crop(video["frames"], idx, seeds[1], height=shape[0],
                                     width=shape[1], short_sides=data.short_sides,
                                     crop_size=data.crop_size,
                                     reduced_decode=float(data.get("reduced_decode", 0.0)))
    clip = augment.random_flip(clip, seeds[2], data.flip_prob)
    if stage == "synthesis":
      return synthesize_trajectories(clip, seeds[3], config.synthesis)
    return {"clip": clip}

  if stage == "synthesis_only":
    # Real decoded clips cached in memory, then only the synthesis is timed.
    clips = _dataset(data_dir, config, "decode", options).unbatch().map(lambda d: d["clip"])
    clips = clips.take(64).cache().repeat()
    ds = tf.data.Dataset.zip(clips, pretrain_input.example_seeds(0, 0))
    ds = ds.map(lambda c, s: synthesize_trajectories(c, s, config.synthesis),
                num_parallel_calls=tf.data.AUTOTUNE)
  else:
    videos = reader.read_videos(data_dir, "train", shuffle=True, seed=0, repeat=True)
    ds = tf.data.Dataset.zip(videos, pretrain_input.example_seeds(0, 0))
    ds = ds.map(tf.autograph.experimental.do_not_convert(decode),
                num_parallel_calls=tf.data.AUTOTUNE)
  ds = ds.batch(FLAGS.batch_size, drop_remainder=True).prefetch(tf.data.AUTOTUNE)
  return ds.with_options(options) if options is not None else ds


def jpeg_floor(data_dir, clip_len=16, repeats=40):
  """CPU ms to decode `clip_len` stored frames and nothing else, at 1/1, 1/2, 1/4 and 1/8 scale.

  The floor under any pipeline that reads these JPEGs: at 1/8 scale libjpeg skips nearly all
  of the inverse DCT and colour conversion, so what is left is mostly entropy decoding, which
  no crop window or scale can avoid.
  """
  import tensorflow as tf
  from ctp_tf.data import reader

  video = next(iter(reader.read_videos(data_dir, "train", shuffle=False, seed=0)))
  jpegs = video["frames"][:clip_len]
  out = {"frames": int(jpegs.shape[0])}
  for ratio in (1, 2, 4, 8):
    fn = tf.function(lambda r=ratio: tf.map_fn(
        lambda j: tf.io.decode_jpeg(j, channels=3, ratio=r), jpegs,
        fn_output_signature=tf.uint8, parallel_iterations=16))
    fn()
    cpu = time.process_time()
    for _ in range(repeats):
      fn()
    out[f"decode_ms_ratio{ratio}"] = round(1000 * (time.process_time() - cpu) / repeats, 2)
  return out


def run_worker(data_dir, threads, stage):
  """Times one setting in this process; returns a result dict."""
  options = bench_worker.single_core(threads)
  from ctp_tf import defaults

  if stage == "jpeg_floor":
    return {**jpeg_floor(data_dir), "cores": 1}
  config = defaults.pretrain_config()
  config.data.reduced_decode = FLAGS.reduced_decode
  config.synthesis.placement = FLAGS.worker_placement
  batch, stats = bench_worker.time_batches(iter(_dataset(data_dir, config, stage, options)),
                                           warmup=FLAGS.warmup, batches=FLAGS.batches,
                                           batch_size=FLAGS.batch_size)
  assert batch["clip"].shape[1:] == (16, 112, 112, 3), batch["clip"].shape
  # What the batches were: finished clips, or crops for the step to finish (accelerator).
  return {"batches_made_for": "accelerator" if "synth_source" in batch else "input", **stats}


def main(argv):
  del argv
  os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
  os.environ.setdefault("CUDA_VISIBLE_DEVICES", "")
  if FLAGS.onednn:
    # Read by TensorFlow when it is imported: the workers inherit it.
    os.environ["TF_ENABLE_ONEDNN_OPTS"] = FLAGS.onednn
  if FLAGS.worker_data_dir:
    print("RESULT " + json.dumps(run_worker(FLAGS.worker_data_dir, FLAGS.worker_threads,
                                            FLAGS.worker_stage)))
    return
  work = FLAGS.work_dir or tempfile.mkdtemp(prefix="ctp_pretrain_bench_")
  results = {"pipeline": "pretrain_dataset", "batch_size": FLAGS.batch_size,
             "frames_kind": FLAGS.frames_kind,
             "videos": FLAGS.videos, "frames": FLAGS.frames,
             "reduced_decode": FLAGS.reduced_decode, "baseline_pytorch_1core_320x240": 99.0,
             "tf_enable_onednn_opts": os.environ.get("TF_ENABLE_ONEDNN_OPTS", "unset"),
             "load_average_before": os.getloadavg(), "runs": []}
  settings = [(t, "full", p) for p in FLAGS.placements for t in FLAGS.threads]
  settings += [("1", s, "input") for s in FLAGS.stages if s != "full"]
  for stored in FLAGS.stored:
    w, h = (int(v) for v in stored.split("x"))
    data_dir = os.path.join(work, f"{FLAGS.frames_kind}_{stored}")
    bytes_per_frame = bench_worker.ensure_shards(
        data_dir, lambda: make_shards(data_dir, w, h, FLAGS.videos, FLAGS.frames,
                                      kind=FLAGS.frames_kind), stored)
    for threads, stage, placement in settings:
      args = [f"--worker_data_dir={data_dir}", f"--worker_threads={threads}",
              f"--worker_stage={stage}", f"--worker_placement={placement}",
              f"--batch_size={FLAGS.batch_size}", f"--batches={FLAGS.batches}",
              f"--warmup={FLAGS.warmup}", f"--reduced_decode={FLAGS.reduced_decode}"]
      run = {"stored": stored, "threads": threads, "stage": stage, "placement": placement,
             **bench_worker.run_in_subprocess(
                 __file__, args, f"{stored}, {threads}, {stage}, {placement}")}
      bench_worker.add_run(results, run, bytes_per_frame)
  bench_worker.finish(results, FLAGS.output)


if __name__ == "__main__":
  app.run(main)
