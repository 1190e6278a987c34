"""Frame samplers: hand-computed test offsets, train clip structure, seeds, short videos."""

import numpy as np
import pytest
import tensorflow as tf

from ctp_tf.data import sampling


# Starts worked out by hand from L = (F - 16*2 + 1) / 10, start_k = int(L/2 + L*k):
# F=100: L=6.9 -> 3.45, 10.35, 17.25, 24.15, 31.05, 37.95, 44.85, 51.75, 58.65, 65.55.
# F=57:  L=2.6 -> 1.3, 3.9, 6.5, 9.1, 11.7, 14.3, 16.9, 19.5, 22.1, 24.7.
# F=300: L=26.9 -> 13.45, 40.35, 67.25, 94.15, 121.05, 147.95, 174.85, 201.75, 228.65, 255.55.
# F=32:  L=0.1 -> every start is 0.
@pytest.mark.parametrize("frames, starts", [
    (100, [3, 10, 17, 24, 31, 37, 44, 51, 58, 65]),
    (57, [1, 3, 6, 9, 11, 14, 16, 19, 22, 24]),
    (300, [13, 40, 67, 94, 121, 147, 174, 201, 228, 255]),
    (32, [0] * 10),
])
def test_test_indices_reference_offsets(frames, starts):
  idx = sampling.test_indices(frames, 10, 16, 2).numpy()
  assert idx.shape == (10, 16) and idx.dtype == np.int32
  np.testing.assert_array_equal(idx[:, 0], starts)
  np.testing.assert_array_equal(idx - idx[:, :1], np.tile(np.arange(16) * 2, (10, 1)))
  assert idx.max() <= frames - 1


def test_test_indices_short_video_clamps():
  # F=20 < 32 frames per clip: L = -1.1, starts int(-0.55 - 1.1k) <= 0 are clamped to 0, and
  # indices past frame 19 repeat it.
  idx = sampling.test_indices(20, 10, 16, 2).numpy()
  expected = [0, 2, 4, 6, 8, 10, 12, 14, 16, 18, 19, 19, 19, 19, 19, 19]
  np.testing.assert_array_equal(idx, np.tile(expected, (10, 1)))
  np.testing.assert_array_equal(sampling.test_indices(1, 3, 4, 1).numpy(), np.zeros((3, 4)))


def test_train_indices_fixed_stride_no_jitter():
  for s in range(20):
    idx = sampling.train_indices(100, [s, 1], 16, [3], temporal_jitter=False).numpy()
    assert idx.shape == (16,) and idx.dtype == np.int32
    np.testing.assert_array_equal(np.diff(idx), 3)
    assert 0 <= idx[0] <= 100 - 48


def test_train_indices_start_covers_range_and_strides_drawn_from_list():
  starts, strides = set(), set()
  draw = tf.function(lambda seed: sampling.train_indices(20, seed, 4, [1, 2, 4],
                                                         temporal_jitter=False))
  for s in range(300):
    idx = draw(tf.constant([s, 5])).numpy()
    d = set(np.diff(idx).tolist())
    assert len(d) == 1
    stride = d.pop()
    strides.add(stride)
    starts.add((stride, int(idx[0])))
    assert idx[0] + 4 * stride <= 20
  assert strides == {1, 2, 4}
  # Every valid start is drawn for stride 4 (span 16 in 20 frames: starts 0..4).
  assert {st for (k, st) in starts if k == 4} == set(range(5))


def test_train_indices_jitter_stays_in_stride_cell():
  seen_jitter = set()
  for s in range(50):
    idx = sampling.train_indices(200, [s, 2], 16, [5], temporal_jitter=True).numpy()
    cells = (idx - np.arange(16) * 5)
    # Every index lies in [start + 5k, start + 5k + 4] for one common start.
    start = cells.min()
    assert cells.max() - start <= 4
    seen_jitter.update((cells - start).tolist())
    assert 0 <= idx.min() and idx.max() <= 199
  assert seen_jitter == {0, 1, 2, 3, 4}


def test_train_indices_short_video_repeats_last_frame():
  idx = sampling.train_indices(5, [0, 0], 16, [1], temporal_jitter=True).numpy()
  np.testing.assert_array_equal(idx, [0, 1, 2, 3, 4] + [4] * 11)


def test_train_indices_seeded():
  a = sampling.train_indices(300, [1, 2], 16, [1, 2, 3, 4, 5]).numpy()
  b = sampling.train_indices(300, [1, 2], 16, [1, 2, 3, 4, 5]).numpy()
  np.testing.assert_array_equal(a, b)
  others = [sampling.train_indices(300, [s, 3], 16, [1, 2, 3, 4, 5]).numpy() for s in range(5)]
  assert any(not np.array_equal(a, o) for o in others)


def test_samplers_in_tf_data_graph():
  ds = tf.data.Dataset.from_tensor_slices(tf.constant([3, 40, 100], tf.int32)).map(
      lambda n: (sampling.train_indices(n, tf.stack([n, 0]), 8, [1, 2]),
                 sampling.test_indices(n, 4, 8, 2)))
  assert ds.element_spec[0].shape == (8,)
  assert ds.element_spec[1].shape == (4, 8)
  for (tr, te), n in zip(ds, [3, 40, 100]):
    assert tr.numpy().max() <= n - 1 and te.numpy().max() <= n - 1


def test_train_indices_rejects_bad_strides():
  with pytest.raises(ValueError, match="strides"):
    sampling.train_indices(10, [0, 0], 4, [])
