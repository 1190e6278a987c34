#!/usr/bin/env python
"""Starts a tf.data service dispatcher or worker for pretraining input on more CPU machines.

  # one dispatcher (any machine the trainers and workers can reach):
  python scripts/data_service.py --mode=dispatcher --port=5050
  # on each CPU machine (they need the shards at the same path or on gs://):
  python scripts/data_service.py --mode=worker --dispatcher=grpc://DISPATCHER_HOST:5050 \\
      --port=5051
  # the trainer sends its input pipeline there:
  python scripts/pretrain.py --config=... --data_dir=... --data_service=grpc://DISPATCHER_HOST:5050

Workers can join or leave while training runs: the dispatcher hands whole shard files (one
epoch's file at a time) to whichever worker asks next, and a worker that stops loses only the
clips it was making. Runs until killed (Ctrl-C).
"""

import sys

from absl import app, flags, logging

_MODE = flags.DEFINE_enum("mode", None, ["dispatcher", "worker"], "What to start.")
_PORT = flags.DEFINE_integer("port", 0, "Port to serve on (0: any free port, printed).")
_DISPATCHER = flags.DEFINE_string(
    "dispatcher", None, "Worker: the dispatcher, grpc://host:port (or host:port).")
_WORKER_ADDRESS = flags.DEFINE_string(
    "worker_address", None, "Worker: host:port the dispatcher tells trainers to use "
    "(default: this host's name and --port).")
_WORK_DIR = flags.DEFINE_string(
    "work_dir", None, "Dispatcher: journal directory; a restarted dispatcher recovers its jobs "
    "from it (fault-tolerant mode).")


def address_host_port(address):
  """'grpc://host:port' or 'host:port' -> 'host:port'; ValueError on anything else."""
  rest = address.split("://", 1)[1] if "://" in address else address
  if "://" in address and not address.startswith("grpc://"):
    raise ValueError(f"{address!r}: the tf.data service speaks grpc://host:port")
  host, _, port = rest.rpartition(":")
  if not host or not port.isdigit():
    raise ValueError(f"{address!r} is not grpc://host:port")
  return rest


def main(argv):
  if len(argv) > 1:
    raise app.UsageError(f"Unexpected arguments: {argv[1:]}")
  if _MODE.value is None:
    sys.stderr.write("error: pass --mode=dispatcher or --mode=worker\n")
    sys.exit(2)
  if not 0 <= _PORT.value < 65536:
    sys.stderr.write(f"error: --port={_PORT.value} is not a port number\n")
    sys.exit(2)
  if _MODE.value == "worker":
    if not _DISPATCHER.value:
      sys.stderr.write("error: a worker needs --dispatcher=grpc://host:port\n")
      sys.exit(2)
    try:
      dispatcher = address_host_port(_DISPATCHER.value)
    except ValueError as e:
      sys.stderr.write(f"error: --dispatcher: {e}\n")
      sys.exit(2)
  import tensorflow as tf  # noqa: PLC0415
  service = tf.data.experimental.service
  try:
    if _MODE.value == "dispatcher":
      server = service.DispatchServer(service.DispatcherConfig(
          port=_PORT.value, work_dir=_WORK_DIR.value,
          fault_tolerant_mode=bool(_WORK_DIR.value)))
      print(f"dispatcher serving at {server.target}", flush=True)
    else:
      kwargs = {}
      if _WORKER_ADDRESS.value:
        kwargs["worker_address"] = _WORKER_ADDRESS.value
      server = service.WorkerServer(service.WorkerConfig(
          dispatcher_address=dispatcher, port=_PORT.value, **kwargs))
      print(f"worker serving on port {_PORT.value or '(any)'} for {dispatcher}", flush=True)
  except (tf.errors.OpError, RuntimeError) as e:
    sys.stderr.write(f"error: could not start the {_MODE.value}: "
                     f"{str(e).splitlines()[0] if str(e) else type(e).__name__}\n")
    sys.exit(2)
  logging.info("Serving until killed.")
  server.join()


if __name__ == "__main__":
  app.run(main)
