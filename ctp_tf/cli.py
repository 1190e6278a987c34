"""One `main` wrapper for every script: user mistakes become one stderr line and exit 2.

    if __name__ == "__main__":
      cli.run(main, config_default=DEFAULT_CONFIG)   # or cli.run(main) without a config flag

What is handled (never a traceback):
- flag parsing errors (unknown flag, bad value, missing required flag);
- `--config=PATH` that does not exist and misspelt `--config.a.b=v` keys (close keys listed),
  checked before ml_collections parses them;
- `ctp_tf.errors.UserError` (and its subclasses) and `OSError` (missing file, read-only
  directory, ...) raised by `main`: exit 2; `absl.app.UsageError`: exit 2;
- `ctp_tf.errors.RunFailed`: exit 1 (e.g. a diverged loss).
Anything else is a bug and keeps its traceback.
"""

import sys

from absl import app, flags

from ctp_tf.errors import RunFailed, UserError


def fail(message, code=2):
  """Writes `error: message` (one line) to stderr and exits with `code`."""
  message = " ".join(str(message).split("\n")).strip()
  sys.stderr.write(f"error: {message}\n")
  sys.stderr.flush()
  sys.exit(code)


def check_config_argv(config_default, config_flag="config", argv=None):
  """Checks `--config=PATH` and the `--config.a.b` keys of `argv` (default sys.argv): one line
  and exit 2 when the file is missing or a key is misspelt (close keys listed). A PATH that
  does not exist but names a config of the repository or of the installed package
  (`config_utils.find_config`) is replaced in `argv` by that file's path.

  Call it before `config_flags.DEFINE_config_file`: that call already loads the file and
  applies the overrides from sys.argv, and would raise a long traceback.
  """
  from ctp_tf.training import config_utils
  argv = sys.argv if argv is None else argv
  if any(a in ("--help", "--helpshort", "--helpfull", "-h") for a in argv[1:]):
    return
  try:
    path = config_utils.config_path_from_argv(argv, config_default, config_flag, resolve=True)
    config_utils.check_override_flags(argv, config_utils.load_config_file(path), config_flag)
  except (UserError, FileNotFoundError) as e:
    fail(e)


def int_list(flag, values, *, count=None, minimum=1):
  """`--flag=a,b,c` as ints >= `minimum` (and exactly `count` of them), else UserError."""
  try:
    out = tuple(int(v) for v in values)
  except (TypeError, ValueError):
    raise UserError(f"--{flag}={','.join(map(str, values))}: expected integers.") from None
  if (count is not None and len(out) != count) or not out or min(out) < minimum:
    want = f"{count} " if count else ""
    raise UserError(f"--{flag}={','.join(map(str, values))}: expected {want}integers >= "
                    f"{minimum}.")
  return out


def _flags_parser(config_flag, config_default):
  def parse(argv):
    if config_flag and config_default is not None:
      check_config_argv(config_default, config_flag, argv)
    try:
      return flags.FLAGS(argv)
    except flags.Error as e:
      fail(f"{e} (see --helpshort)")
    except (KeyError, ValueError, TypeError, AttributeError) as e:   # ml_collections overrides
      fail(f"bad flag value: {type(e).__name__}: {e}")
  return parse


def _wrap(main):
  def wrapped(argv):
    try:
      return main(argv)
    except (UserError, RunFailed) as e:
      fail(e, e.exit_code)
    except app.UsageError as e:
      fail(e, 2)
    except OSError as e:   # missing input, read-only output dir, full disk, ...
      fail(f"{type(e).__name__}: {e}", 2)
  return wrapped


def run(main, *, config_flag="config", config_default=None):
  """`absl.app.run(main)` with one-line errors (see the module doc).

  Args:
    main: the script's `main(argv)`.
    config_flag, config_default: the `config_flags.DEFINE_config_file` flag name and its default
      path, to check `--config` and `--config.a.b` overrides before parsing; None when the
      script has no config flag.
  """
  app.run(_wrap(main), flags_parser=_flags_parser(config_flag, config_default))
