"""Exceptions that mean "the user (or the data) is wrong", not "the code is wrong".

Scripts run their `main` through `ctp_tf.cli.run`, which turns these into one line on stderr
and an exit status (no traceback): `UserError` -> 2 (bad flags, config, data or workdir),
`RunFailed` -> 1 (the run itself failed, e.g. the loss diverged).
"""


class UserError(Exception):
  """A mistake in the input (flags, config, data, workdir); the message says how to fix it."""

  exit_code = 2

  def __str__(self):   # KeyError subclasses would quote the message otherwise
    return str(self.args[0]) if self.args else ""


class DataError(UserError, ValueError):
  """Converted data that cannot be read: missing, empty or corrupt shards (names the file)."""


class WorkdirError(UserError):
  """A workdir that is in use, of another kind, or holds state of another config."""


class RunFailed(Exception):
  """The run started but failed (e.g. the loss diverged); nothing was exported."""

  exit_code = 1
