"""The wheel `pip install .` would install: the whole package, the configs and the scripts, and
an install of it that finds its configs with no checkout around.

Builds the wheel once (`pip wheel --no-deps --no-build-isolation`, a few seconds) from a copy of
the checkout's setup.py, README.md, ctp_tf/, configs/ and scripts/, checks its file list
(every module of ctp_tf: a subpackage left out of `find_packages` would be missing; every
config as `ctp_tf/configs/`, every script as `ctp_tf/scripts/`; nothing of tests/), then
installs it with `pip install --no-deps --target` into a temporary folder and runs a script
from there (`python -m ctp_tf.scripts.finetune`, PYTHONPATH = that folder, cwd outside the
repository) with `--config=configs/...`, which only the packaged copy can satisfy.
"""

import os
import pathlib
import shutil
import subprocess
import sys
import zipfile

import pytest

import ctp_tf

PACKAGE = pathlib.Path(ctp_tf.__file__).parent
REPO = PACKAGE.parent
SHIPPED = {"configs": "ctp_tf/configs", "scripts": "ctp_tf/scripts"}   # setup.py package_dir


def _pip(*args, timeout=300):
  r = subprocess.run([sys.executable, "-m", "pip", *args], capture_output=True, text=True,
                     timeout=timeout)
  assert r.returncode == 0, r.stdout[-2000:] + r.stderr[-2000:]


@pytest.fixture(scope="module")
def wheel(tmp_path_factory):
  tmp = tmp_path_factory.mktemp("wheel")
  src = tmp / "src"
  src.mkdir()
  for name in ("setup.py", "README.md"):
    shutil.copy(REPO / name, src / name)
  for name in ("ctp_tf", *SHIPPED):
    shutil.copytree(REPO / name, src / name, ignore=shutil.ignore_patterns("__pycache__"))
  out = tmp / "wheel"
  _pip("wheel", "--no-deps", "--no-build-isolation", "-q", str(src), "-w", str(out))
  wheels = list(out.glob("ctp_tf-*.whl"))
  assert len(wheels) == 1, wheels
  return wheels[0]


def wheel_problems(names, package_dir, shipped=None):
  """What a wheel's file list lacks (modules of `package_dir`, and the .py files of each folder
  `shipped` maps to its place in the package) or should not hold."""
  expected = {str(p.relative_to(package_dir.parent)).replace(os.sep, "/")
              for p in package_dir.rglob("*.py") if "__pycache__" not in p.parts}
  for folder, target in (shipped or {}).items():
    expected |= {f"{target}/{p.name}" for p in (package_dir.parent / folder).glob("*.py")}
  problems = [f"missing {m}" for m in sorted(expected - set(names))]
  problems += [f"unexpected {n}" for n in names if n.startswith(("tests/", "scripts/",
                                                                   "configs/"))]
  if not any(n.endswith(".dist-info/METADATA") for n in names):
    problems.append("no METADATA")
  return problems


def test_wheel_holds_every_module_config_and_script(wheel):
  with zipfile.ZipFile(wheel) as z:
    names = z.namelist()
    metadata = next(z.read(n).decode() for n in names if n.endswith(".dist-info/METADATA"))
  assert wheel_problems(names, PACKAGE, SHIPPED) == []
  assert "ctp_tf/training/fit_loop.py" in names and "ctp_tf/demo/run.py" in names
  # what the scripts load by default and what the demo needs
  for name in ("configs/demo.py", "configs/finetune_demo.py", "scripts/demo.py",
               "scripts/pretrain.py", "scripts/finetune.py"):
    assert f"ctp_tf/{name}" in names, name
  assert "Requires-Dist: tensorflow" in metadata


def test_installed_wheel_finds_its_configs_outside_the_checkout(wheel, tmp_path):
  site = tmp_path / "site"
  _pip("install", "--no-deps", "--no-compile", "-q", "--target", str(site), str(wheel))
  work = tmp_path / "elsewhere"
  work.mkdir()
  env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
  env.update(PYTHONPATH=str(site), CUDA_VISIBLE_DEVICES="", TF_CPP_MIN_LOG_LEVEL="3")
  probe = ("import ctp_tf\nfrom ctp_tf.training import config_utils as u\n"
           "print(ctp_tf.__file__)\nprint(u.find_config('configs/demo.py'))\n"
           "print(u.load_config_file('configs/tiny.py:finetune').model.arch)\n")
  r = subprocess.run([sys.executable, "-c", probe], cwd=work, env=env, capture_output=True,
                     text=True, timeout=120)
  assert r.returncode == 0, r.stderr[-3000:]
  package_file, demo_config, arch = r.stdout.split()
  assert package_file == str(site / "ctp_tf" / "__init__.py")
  assert demo_config == str(site / "ctp_tf" / "configs" / "demo.py")
  assert arch == "r3d_10"
  # A script of the wheel, a config named as in the README: it gets as far as the data check.
  r = subprocess.run([sys.executable, "-m", "ctp_tf.scripts.finetune",
                      "--config=configs/finetune_ucf101.py", f"--workdir={work}/w"],
                     cwd=work, env=env, capture_output=True, text=True, timeout=300)
  lines = r.stderr.strip().splitlines()
  assert r.returncode == 2 and lines and "--data_dir is required" in lines[-1], r.stderr[-3000:]
  assert "Traceback" not in r.stderr


def test_wheel_problems_sees_a_missing_module(tmp_path):
  names = [f"ctp_tf/{n}" for n in ("__init__.py", "fileio.py")] + ["x.dist-info/METADATA"]
  pkg = tmp_path / "ctp_tf"
  (pkg / "training").mkdir(parents=True)
  for n in ("__init__.py", "fileio.py", "training/__init__.py"):
    (pkg / n).write_text("")
  (tmp_path / "configs").mkdir()
  (tmp_path / "configs" / "demo.py").write_text("")
  assert wheel_problems(names, pkg) == ["missing ctp_tf/training/__init__.py"]
  assert wheel_problems(names + ["configs/demo.py"], pkg, {"configs": "ctp_tf/configs"}) == [
      "missing ctp_tf/configs/demo.py", "missing ctp_tf/training/__init__.py",
      "unexpected configs/demo.py"]
