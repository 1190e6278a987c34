"""The wheel `pip install .` would install holds the whole package.

Builds the wheel (`pip wheel --no-deps --no-build-isolation`, about a second) from a copy of
the checkout's setup.py, README.md and ctp_tf/ and checks its file list: every module of
ctp_tf (a subpackage left out of `find_packages` would be missing), and nothing of tests/.
"""

import os
import pathlib
import shutil
import subprocess
import sys
import zipfile

import ctp_tf

PACKAGE = pathlib.Path(ctp_tf.__file__).parent
REPO = PACKAGE.parent


def _build_wheel(tmp_path):
  src = tmp_path / "src"
  src.mkdir()
  for name in ("setup.py", "README.md"):
    shutil.copy(REPO / name, src / name)
  shutil.copytree(PACKAGE, src / "ctp_tf", ignore=shutil.ignore_patterns("__pycache__"))
  out = tmp_path / "wheel"
  r = subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation",
                      "-q", str(src), "-w", str(out)], capture_output=True, text=True,
                     timeout=300)
  assert r.returncode == 0, r.stdout[-2000:] + r.stderr[-2000:]
  wheels = list(out.glob("ctp_tf-*.whl"))
  assert len(wheels) == 1, wheels
  return wheels[0]


def wheel_problems(names, package_dir):
  """What a wheel's file list lacks (modules of `package_dir`) or should not hold."""
  expected = {str(p.relative_to(package_dir.parent)).replace(os.sep, "/")
              for p in package_dir.rglob("*.py") if "__pycache__" not in p.parts}
  problems = [f"missing {m}" for m in sorted(expected - set(names))]
  problems += [f"unexpected {n}" for n in names if n.startswith(("tests/", "scripts/"))]
  if not any(n.endswith(".dist-info/METADATA") for n in names):
    problems.append("no METADATA")
  return problems


def test_wheel_holds_every_module(tmp_path):
  wheel = _build_wheel(tmp_path)
  with zipfile.ZipFile(wheel) as z:
    names = z.namelist()
    metadata = next(z.read(n).decode() for n in names if n.endswith(".dist-info/METADATA"))
  assert wheel_problems(names, PACKAGE) == []
  assert "ctp_tf/training/fit_loop.py" in names and "ctp_tf/downstream/finetuned.py" in names
  assert "Requires-Dist: tensorflow" in metadata


def test_wheel_problems_sees_a_missing_module(tmp_path):
  names = [f"ctp_tf/{n}" for n in ("__init__.py", "fileio.py")] + ["x.dist-info/METADATA"]
  pkg = tmp_path / "ctp_tf"
  (pkg / "training").mkdir(parents=True)
  for n in ("__init__.py", "fileio.py", "training/__init__.py"):
    (pkg / n).write_text("")
  assert wheel_problems(names, pkg) == ["missing ctp_tf/training/__init__.py"]
