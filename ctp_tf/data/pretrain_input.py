"""The CtP pretraining input pipeline: shards -> clip -> scale/crop/flip -> patches -> colour.

REFERENCE.md "Clip sampling and augmentation for pretraining": 16 frames at a stride drawn from
{1..5} with temporal jitter; short side rescaled to one of {112, 128, 144}, random 112 crop,
flip p 0.5; then the trajectory synthesis; then hue/saturation and dynamic brightness/contrast.
Only the sampled frames, and only their crop windows, are decoded (`augment.decode_scale_crop`).
The work is split into `clip_stage` (decode etc., and all random draws) and `batch_stage`
(synthesis, colour) that also works on batches; the dataset runs both per clip (see
`pretrain_dataset` for why), passing float clips of whole grey levels between the pixel stages.

Every clip is a pure function of (dataset seed, input pipeline id, position in the stream), so a
run is reproducible whatever the parallelism, and pipelines on different hosts differ.
"""

import tensorflow as tf

from ctp_tf.data import augment, color, reader, sampling, shards, synthesis


def example_seeds(seed, input_pipeline_id):
  """Dataset of int32 [2] per-example seeds derived from the run seed and pipeline id."""
  base = tf.constant([int(seed) % (2**31), 1000003 * (int(input_pipeline_id) + 1) % (2**31)],
                     tf.int32)
  return tf.data.Dataset.range(2**62).map(tf.autograph.experimental.do_not_convert(
      lambda i: tf.random.experimental.stateless_fold_in(base, i)))


def video_seeded_stream(data_dir, split, *, seed, num_input_pipelines=1, input_pipeline_id=0,
                        repeat=True, shuffle_buffer=256):
  """(parsed video, int32 [2] seed) pairs whose seeds depend on (epoch, file, record) only.

  The source is a `Dataset.range` of (epoch, file) units, which tf.data service's dynamic
  sharding hands out to workers one at a time; the file order is reshuffled each epoch and
  videos are shuffled in a buffer, but a clip's seed (and so the clip) does not depend on the
  order or on which worker reads it.
  """
  paths = reader.list_shards(data_dir, split)
  if len(paths) >= num_input_pipelines:
    paths = paths[input_pipeline_id::num_input_pipelines]
  n = len(paths)
  base = tf.constant([int(seed) % (2**31), 1000003 * (int(input_pipeline_id) + 1) % (2**31)],
                     tf.int32)
  paths_t = tf.constant(paths)
  fold = tf.random.experimental.stateless_fold_in

  def unit(i):
    epoch = i // n
    order = tf.argsort(tf.random.stateless_uniform([n], fold(base, epoch)))
    return epoch, tf.gather(order, i % n)

  def records(epoch, f):
    file_seed = fold(fold(base, epoch), f)
    return tf.data.TFRecordDataset(tf.gather(paths_t, f)).enumerate().map(
        lambda k, rec: (rec, fold(file_seed, k)))

  units = tf.data.Dataset.range(n * (2**40 if repeat else 1))
  ds = units.map(tf.autograph.experimental.do_not_convert(unit))
  ds = ds.interleave(tf.autograph.experimental.do_not_convert(records),
                     cycle_length=max(1, min(16, n)), block_length=1,
                     num_parallel_calls=tf.data.AUTOTUNE, deterministic=True)
  ds = ds.shuffle(shuffle_buffer, seed=seed, reshuffle_each_iteration=True)
  return ds.map(tf.autograph.experimental.do_not_convert(
      lambda rec, s: (shards.parse_sequence_example(rec), s)),
      num_parallel_calls=tf.data.AUTOTUNE, deterministic=True)


def service_target(address):
  """'grpc://host:port' (or 'host:port') -> 'grpc://host:port'; ValueError otherwise."""
  address = str(address).strip()
  rest = address.split("://", 1)[1] if "://" in address else address
  host, _, port = rest.rpartition(":")
  if ("://" in address and not address.startswith("grpc://")) or not host or \
      not port.isdigit() or not 0 < int(port) < 65536:
    raise ValueError(f"tf.data service address {address!r} is not grpc://host:port")
  return "grpc://" + rest


def clip_stage(video, seed, config):
  """Per-clip part of the pipeline: sample, decode, scale, crop, flip; draw later randoms.

  Returns `{"clip": uint8 [T, S, S, 3], "randoms": float32 [N, D] (synthesis), "hue_apply",
  "hue", "log_sat" (scalars), "shift", "alpha" (float32 [T])}`: everything `batch_stage` needs,
  so synthesis and colour jitter can run on any batch with per-clip random draws (the dataset
  runs them per clip: on whole batches they were measured slower, see `pretrain_dataset`).
  """
  data, aug = config.data, config.augment
  seeds = tf.random.experimental.stateless_split(tf.cast(seed, tf.int32), num=6)
  clip_len = int(data.clip_len)
  indices = sampling.train_indices(video["num_frames"], seeds[0], clip_len,
                                   tuple(data.strides), temporal_jitter=bool(data.temporal_jitter))
  # The JPEG header is the truth about the stored size (cheap: no pixel decoding).
  shape = tf.io.extract_jpeg_shape(video["frames"][0])
  clip = augment.decode_scale_crop(
      video["frames"], indices, seeds[1], height=shape[0], width=shape[1],
      short_sides=tuple(data.short_sides), crop_size=int(data.crop_size),
      reduced_decode=float(data.get("reduced_decode", 0.0)))   # 0: exact; t: 1/2-res decode
  clip = augment.random_flip(clip, seeds[2], data.flip_prob)
  hue_apply, hue, log_sat = color.hue_saturation_params(
      seeds[4], prob=aug.hue_sat_prob, hue_range=aug.hue_range,
      saturation_range=aug.saturation_range)
  shift, alpha = color.brightness_contrast_params(
      seeds[5], clip_len, brightness_prob=aug.brightness_prob,
      brightness_range=aug.brightness_range, contrast_prob=aug.contrast_prob,
      contrast_range=aug.contrast_range, dynamic=bool(aug.dynamic),
      dynamic_keyframe_probs=tuple(aug.dynamic_keyframe_probs))
  return {"clip": clip, "randoms": synthesis.draw_randoms(seeds[3], config.synthesis, clip_len),
          "hue_apply": hue_apply, "hue": hue, "log_sat": log_sat, "shift": shift, "alpha": alpha}


def batch_stage(parts, config, with_visible=False):
  """Batched part: CtP synthesis, then hue/saturation, then brightness/contrast (REFERENCE order).

  `parts` is a batch of `clip_stage` outputs (leading dimension B). The result per clip equals
  synthesising and jittering that clip alone with the same draws (up to float rounding).
  """
  out = synthesis.synthesize_batch(parts["clip"], parts["randoms"], config.synthesis,
                                   float_clip=True)
  # Float clips of whole grey levels between the stages: no uint8 round trips.
  clip = color.hue_saturation_batch(out["clip"], parts["hue_apply"], parts["hue"],
                                    parts["log_sat"])
  clip = color.brightness_contrast_batch(clip, parts["shift"], parts["alpha"])
  example = {"clip": clip, "boxes": out["boxes"], "weights": out["weights"]}
  if with_visible:
    example["visible"] = out["visible"]
  return example


PLACEMENTS = ("input", "accelerator")


def placement(config):
  """`config.synthesis.placement` ("input" when absent), checked."""
  value = config.synthesis.get("placement", "input") or "input"
  if value not in PLACEMENTS:
    raise ValueError(f"config.synthesis.placement={value!r}: use one of {PLACEMENTS}")
  return value


def accelerator_batch(parts, config):
  """Host part of the "accelerator" placement on a batch of `clip_stage` outputs.

  Computes the box trajectories from the per-clip draws (small tensors, so on whole batches)
  and passes the uint8 crops through untouched: the pixel work is
  `ctp_tf.layers.synthesis_stage.finish_clips`, run by the model's step.

  Returns `{"clip": uint8 [B, T, S, S, 3], "boxes", "weights"}` plus the stage's
  `synthesis_stage.STAGE_KEYS` (per-clip paste and colour parameters).
  """
  clip = parts["clip"]
  t_len, height, width = clip.shape[1], clip.shape[2], clip.shape[3]
  traj = synthesis.trajectory_batch(parts["randoms"], config.synthesis, t_len, height, width)
  return {
      "clip": clip, "boxes": traj["boxes"], "weights": tf.ones_like(traj["alpha"]),
      "synth_source": traj["source"], "synth_mask": traj["mask"], "synth_soft": traj["soft"],
      "synth_d0": traj["d0"], "synth_alpha": traj["alpha"],
      "colour_hue_apply": tf.cast(parts["hue_apply"], tf.float32),
      "colour_hue": parts["hue"], "colour_log_sat": parts["log_sat"],
      "colour_shift": parts["shift"], "colour_alpha": parts["alpha"]}


def finish_batch(batch):
  """A batch of either placement as the "input" placement yields it (numpy, uint8 clip).

  For host-side consumers of accelerator-placement batches (TensorBoard images, plots): runs
  `synthesis_stage.finish_clips` eagerly and drops the stage's keys. Input-placement batches
  are returned as numpy unchanged.
  """
  import numpy as np
  from keras import ops
  from ctp_tf.layers import synthesis_stage
  batch = {k: np.asarray(v) for k, v in batch.items()}
  if not synthesis_stage.has_stage_inputs(batch):
    return batch
  clip = ops.convert_to_numpy(synthesis_stage.finish_clips(batch)).astype(np.uint8)
  out = {k: v for k, v in batch.items() if k not in synthesis_stage.STAGE_KEYS}
  out["clip"] = clip
  return out


def pretrain_example(video, seed, config, with_visible=False):
  """One training example from a parsed video dict (`reader.read_videos`).

  The same computation as one clip of `pretrain_dataset` (`clip_stage` then `batch_stage` on a
  batch of one).

  Returns `{"clip": uint8 [T, S, S, 3], "boxes": float32 [N, T, 4], "weights": float32 [N, T]}`
  (plus `visible` bool [N, T] with `with_visible`, for visualisation).
  """
  parts = clip_stage(video, seed, config)
  out = batch_stage({k: v[None] for k, v in parts.items()}, config, with_visible)
  return {k: v[0] for k, v in out.items()}


def pretrain_dataset(data_dir, config, *, split="train", batch_size, seed, num_input_pipelines=1,
                     input_pipeline_id=0, repeat=True, options=None, service_address=None):
  """Batches of CtP training examples with static shapes.

  Example:
  >>> from ctp_tf import defaults
  >>> ds = pretrain_dataset("/data/ucf101", defaults.pretrain_config(), batch_size=32, seed=0)
  >>> batch = next(iter(ds))   # clip uint8 [32,16,112,112,3], boxes [32,3,16,4], weights [32,3,16]

  Args:
    data_dir: converted dataset directory (`scripts/make_tfrecords.py`).
    config: pretraining ConfigDict with `data` (clip_len, strides, temporal_jitter, short_sides,
      crop_size, flip_prob, shuffle_buffer, reduced_decode), `synthesis` and `augment`.
    split: split to read.
    batch_size: per-pipeline batch; the last partial batch is dropped.
    seed: int; the same seed gives the same batches.
    num_input_pipelines, input_pipeline_id: this host's part of the data (and its seeds).
    repeat: repeat forever.
    options: optional tf.data.Options applied to the result (e.g. thread limits).
    service_address: tf.data service dispatcher, "grpc://host:port" (`scripts/data_service.py`);
      None: `config.data.service_address`; "": local. With a service, reading, decoding and
      the per-clip stages run on its workers (whole shard files handed out on demand, so
      workers may come and go) and clip seeds follow (epoch, file, record), as with
      `config.data.clip_seeds="video"` locally: the same clips as a local run of that kind,
      in another order.

  Returns:
    tf.data.Dataset of `{"clip": uint8 [B, T, S, S, 3], "boxes": float32 [B, N, T, 4],
    "weights": float32 [B, N, T]}`. With `config.synthesis.placement="accelerator"` the clips
    are the decoded crops without patches or colour jitter, and the batch also carries the
    per-clip parameters (`ctp_tf.layers.synthesis_stage.STAGE_KEYS`) that `CtPModel` uses to
    finish them in its step (`finish_batch` does it on the host).
  """
  if batch_size < 1:
    raise ValueError(f"batch_size must be >= 1, got {batch_size}")
  if service_address is None:
    service_address = config.data.get("service_address", "") or ""
  clip_seeds = config.data.get("clip_seeds", "stream") or "stream"
  if clip_seeds not in ("stream", "video"):
    raise ValueError(f"config.data.clip_seeds={clip_seeds!r}: use 'stream' or 'video'")
  shuffle_buffer = int(config.data.get("shuffle_buffer", 256))
  if service_address or clip_seeds == "video":
    # tf.data service workers read whole files handed out by the dispatcher, so a clip's
    # seed must not depend on which worker made it: seeds by (epoch, file, record).
    ds = video_seeded_stream(data_dir, split, seed=seed, num_input_pipelines=num_input_pipelines,
                             input_pipeline_id=input_pipeline_id, repeat=repeat,
                             shuffle_buffer=shuffle_buffer)
  else:
    videos = reader.read_videos(
        data_dir, split, shuffle=True, seed=seed, num_shards=num_input_pipelines,
        shard_index=input_pipeline_id, repeat=repeat, shuffle_buffer=shuffle_buffer)
    ds = tf.data.Dataset.zip(videos, example_seeds(seed, input_pipeline_id))
  # No Python control flow on tensors below: skipping AutoGraph saves seconds of tracing.
  # Everything per clip, batch last. Synthesis and colour on whole batches (`batch_stage` on
  # B = 32) were measured 1.7x SLOWER per clip than per clip, on one core: the per-op overhead
  # they save (~2.6 ms/clip) is dwarfed by cache misses of full-batch passes (a batch of float
  # clips is ~80 MB; one clip, 2.4 MB, stays in cache).
  accelerator = placement(config) == "accelerator"
  if accelerator:   # the host decodes and draws; trajectories on the batch; pixels in the step
    per_clip = lambda v, s: clip_stage(v, s, config)
  else:
    per_clip = lambda v, s: pretrain_example(v, s, config)
  ds = ds.map(tf.autograph.experimental.do_not_convert(per_clip),
              num_parallel_calls=tf.data.AUTOTUNE, deterministic=True)
  if service_address:
    # Everything above runs on the service's workers; batching (a copy) stays here.
    ds = ds.apply(tf.data.experimental.service.distribute(
        processing_mode=tf.data.experimental.service.ShardingPolicy.DYNAMIC,
        service=service_target(service_address)))
  ds = ds.batch(batch_size, drop_remainder=True)
  if accelerator:
    ds = ds.map(tf.autograph.experimental.do_not_convert(lambda p: accelerator_batch(p, config)),
                num_parallel_calls=tf.data.AUTOTUNE, deterministic=True)
  ds = ds.prefetch(tf.data.AUTOTUNE)
  if options is not None:
    ds = ds.with_options(options)
  return ds
