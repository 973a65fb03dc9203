"""Multi-process training on localhost: 2 processes x 2 CPU devices (gloo).

The loss curve of the distributed run must match a single process with 4
devices fed the same global batches.
"""

import json
import os
import pathlib
import socket
import subprocess
import sys

import numpy as np

HERE = pathlib.Path(__file__).parent


def _free_port() -> int:
  with socket.socket() as s:
    s.bind(("127.0.0.1", 0))
    return s.getsockname()[1]


def _launch(out, num_processes, devices_per_process):
  env = dict(os.environ)
  env["XLA_FLAGS"] = (f"--xla_force_host_platform_device_count="
                      f"{devices_per_process}")
  env["PYTHONPATH"] = os.pathsep.join([str(HERE), str(HERE.parent),
                                       env.get("PYTHONPATH", "")])
  env["JAX_PLATFORMS"] = "cpu"
  port = _free_port()
  procs = [subprocess.Popen(
      [sys.executable, str(HERE / "multihost_worker.py"), str(out),
       str(num_processes), str(i), str(port)], env=env,
      stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
           for i in range(num_processes)]
  logs = [p.communicate(timeout=600)[0] for p in procs]
  for p, log in zip(procs, logs):
    assert p.returncode == 0, log[-3000:]
  with open(out) as f:
    return json.load(f)


def test_two_processes_match_one(tmp_path):
  multi = _launch(tmp_path / "multi.json", 2, 2)
  single = _launch(tmp_path / "single.json", 1, 4)
  assert multi["processes"] == 2 and multi["devices"] == 4
  assert single["processes"] == 1 and single["devices"] == 4
  np.testing.assert_allclose(multi["losses"], single["losses"], rtol=1e-4)
  assert multi["losses"][-1] < multi["losses"][0]
