"""The README must not drift from the code: its commands, flags, overrides and snippet work."""

import os
import re
import shlex
import subprocess
import sys

import pytest

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
README = open(os.path.join(REPO, "README.md")).read()


def _blocks(lang):
  return re.findall(rf"```{lang}\n(.*?)```", README, flags=re.S)


def _commands():
  cmds = []
  for block in _blocks("bash"):
    for line in block.splitlines():
      line = line.split("#")[0].strip()
      for part in line.split("&&"):
        part = part.strip()
        if part.startswith("python scripts/"):
          cmds.append(shlex.split(part))
  return cmds


def test_exactly_two_setup_commands_and_ci_runs_the_second():
  setup = README.split("## Set up and run")[1]
  block = re.search(r"```bash\n(.*?)```", setup, flags=re.S).group(1)
  lines = [l for l in block.splitlines() if l.strip()]
  assert len(lines) == 2, lines
  assert "scripts/demo.py" in lines[0]
  ci = open(os.path.join(REPO, ".ci", "run")).read()
  assert lines[1].strip() in ci.splitlines(), "CI must run the README's test command verbatim"


_HELP = {}


def _helpfull(script):
  if script not in _HELP:
    proc = subprocess.run([sys.executable, os.path.join(REPO, script), "--helpfull"],
                          capture_output=True, text=True, cwd=REPO)
    _HELP[script] = proc.stdout + proc.stderr
  return _HELP[script]


@pytest.mark.parametrize("cmd", _commands(), ids=lambda c: " ".join(c[1:3])[:60])
def test_every_readme_flag_exists(cmd):
  script = cmd[1]
  assert os.path.exists(os.path.join(REPO, script)), script
  help_text = _helpfull(script)
  for arg in cmd[2:]:
    assert arg.startswith("--"), (cmd, arg)
    name = arg[2:].split("=")[0]
    if name.startswith("config."):
      continue            # checked with the config below
    assert re.search(rf"--\[?(no)?\]?{re.escape(name)}\b", help_text), \
        f"README uses {arg!r} but {script} has no --{name}"


def _override_check(config_file, overrides):
  code = (
      "import sys\n"
      "from absl import app\n"
      "from ml_collections import config_flags\n"
      f"C = config_flags.DEFINE_config_file('config', {config_file!r})\n"
      "app.run(lambda argv: print('OK', C.value.to_json()[:20]))\n")
  return subprocess.run([sys.executable, "-c", code, *overrides], capture_output=True,
                        text=True, cwd=REPO)


def test_every_readme_config_override_parses():
  checked = 0
  # Commands with overrides, plus the "same + `--config...`" rows of the tables.
  for cmd in _commands():
    overrides = [a for a in cmd if a.startswith("--config.")]
    config = next((a.split("=", 1)[1] for a in cmd if a.startswith("--config=")),
                  "configs/demo.py")
    if overrides:
      proc = _override_check(config, overrides)
      assert "OK" in proc.stdout, (cmd, proc.stderr[-2000:])
      checked += 1
  for row in re.findall(r"^\| .*same \+ (.*)\|$", README, flags=re.M):
    overrides = [o for frag in re.findall(r"`([^`]*)`", row) for o in shlex.split(frag)]
    proc = _override_check("configs/ucf101_r3d18.py", overrides)
    assert "OK" in proc.stdout, (row, proc.stderr[-2000:])
    checked += 1
  assert checked >= 5


def test_every_config_file_named_in_readme_exists():
  for name in set(re.findall(r"configs/[a-z0-9_]+\.py", README)):
    assert os.path.exists(os.path.join(REPO, name)), name


def test_serving_snippet_runs_on_an_export(tmp_path):
  """Runs the README's Python snippet against a tiny export (path and clip size swapped in)."""
  from ctp_tf import models
  from ctp_tf.downstream import export

  backbone = models.build_backbone("r3d_10", "pretrain", width_multiplier=0.125)
  export_dir = str(tmp_path / "export")
  cfg = export.export_encoder(backbone, export_dir,
                              config={"arch": "r3d_10", "width_multiplier": 0.125},
                              clip_shape=(8, 32, 32))
  snippet = _blocks("python")[0]
  assert "exports/ucf101_r3d18" in snippet and "[2, 16, 112, 112, 3]" in snippet
  snippet = snippet.replace("exports/ucf101_r3d18", export_dir).replace(
      "[2, 16, 112, 112, 3]", "[2, 8, 32, 32, 3]")
  # In a process without ctp_tf, as a user would run it.
  code = ("import sys\nsys.modules['ctp_tf'] = None\n" + snippet +
          "\nprint('SHAPES', out['features'].shape, out['retrieval_features'].shape)\n")
  proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                        cwd=str(tmp_path), env=dict(os.environ, CUDA_VISIBLE_DEVICES=""))
  assert proc.returncode == 0, proc.stderr[-3000:]
  c = int(512 * 0.125)
  assert f"SHAPES (2, {c}) (2, {2 * 3 * 3 * c})" in proc.stdout
  assert cfg["clip_shape"] == [8, 32, 32] or tuple(cfg["clip_shape"]) == (8, 32, 32)


def test_benchmark_commands_in_readme_exist_with_their_flags():
  cmds = [shlex.split(c) for c in re.findall(r"`(python benchmarks/[^`]+)`", README)]
  assert len(cmds) >= 4
  for cmd in cmds:
    script = cmd[1]
    assert os.path.exists(os.path.join(REPO, script)), script
    proc = subprocess.run([sys.executable, os.path.join(REPO, script), "--help"],
                          capture_output=True, text=True, cwd=REPO)
    text = proc.stdout + proc.stderr
    for arg in cmd[2:]:
      name = arg[2:].split("=")[0]
      assert re.search(rf"--\[?(no)?\]?{re.escape(name)}\b", text), \
          f"README uses {arg!r} but {script} has no --{name}"
