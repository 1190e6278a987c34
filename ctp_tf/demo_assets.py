"""The embedded demo data, made and converted on first use and cached.

`ensure_demo_data()` returns a shard directory: `$CTP_TF_DEMO_DIR` or `~/.cache/ctp_tf/demo`
(`<dir>/videos` the encoded demo videos and split files, `<dir>/shards` the TFRecords). It runs
the two public command lines (`scripts/make_demo_data.py`, then `scripts/make_tfrecords.py
--dataset=ucf101`) so the demo goes through exactly the path real UCF-101 data takes. Both
steps write into temporary directories renamed when complete: a kill leaves no half cache.
"""

import os
import shutil
import subprocess
import sys

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def default_demo_dir():
  return os.environ.get("CTP_TF_DEMO_DIR") or os.path.join(
      os.path.expanduser("~"), ".cache", "ctp_tf", "demo")


def _run(args, what):
  proc = subprocess.run([sys.executable] + args, cwd=REPO, capture_output=True, text=True)
  if proc.returncode:
    raise RuntimeError(f"{what} failed (exit {proc.returncode}): {' '.join(args)}\n"
                       f"{proc.stderr[-3000:]}")


def ensure_demo_data(cache_dir=None, *, seed=0, extra_make_args=()):
  """Makes (once) and returns the demo shard directory under `cache_dir`."""
  cache_dir = os.path.abspath(cache_dir or default_demo_dir())
  shards = os.path.join(cache_dir, "shards")
  if os.path.exists(os.path.join(shards, "dataset.json")):
    return shards
  os.makedirs(cache_dir, exist_ok=True)
  videos = os.path.join(cache_dir, "videos")
  if not os.path.exists(os.path.join(videos, "classInd.txt")):
    tmp = f"{videos}.tmp-{os.getpid()}"
    shutil.rmtree(tmp, ignore_errors=True)
    _run([os.path.join(REPO, "scripts", "make_demo_data.py"), f"--out_dir={tmp}",
          f"--seed={seed}", *extra_make_args], "Making the demo videos")
    shutil.rmtree(videos, ignore_errors=True)
    os.replace(tmp, videos)
  tmp = f"{shards}.tmp-{os.getpid()}"
  shutil.rmtree(tmp, ignore_errors=True)
  _run([os.path.join(REPO, "scripts", "make_tfrecords.py"), "--dataset=ucf101",
        f"--video_dir={videos}", f"--split_dir={videos}", "--split=1", f"--out_dir={tmp}"],
       "Converting the demo videos")
  shutil.rmtree(shards, ignore_errors=True)
  os.replace(tmp, shards)
  return shards
