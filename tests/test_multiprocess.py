"""Multi-process training as on a TPU VM pod slice or a GPU cluster, with 2 processes on this machine.

Each process has 2 CPU devices and joins through `jax.distributed` (coordinator on 127.0.0.1). The
2 x 2 run must match one process with 4 devices (the same mesh; the cross-process sums go through
gloo, whose summation order differs in the last bits, so within the tolerance the 1- and 8-device
test uses): a training run, a resumed training run, and a LODO sweep whose folds are spread over
both processes.
"""

import json
import os
import socket
import subprocess
import sys

import jax
import pytest

from cdr_jax.train import sharding

# The processes set their own device counts, so one pass of the suite covers them: the 8-device pass
# skips this module (saying so) to keep CI short.
pytestmark = pytest.mark.skipif(jax.device_count() > 1, reason='runs in the 1-device pass (its '
                                'processes set their own device counts)')

EPOCHS = 3
COMMON = [f'--config.train.num_epochs={EPOCHS}', f'--config.train.patience={EPOCHS}']


def free_port() -> int:
  with socket.socket() as s:
    s.bind(('127.0.0.1', 0))
    return s.getsockname()[1]


def launch(script: str, workdir, *args, processes: int, devices: int) -> list[str]:
  """Runs `script` as `processes` processes of `devices` CPU devices each; returns their stdouts."""
  port = free_port()
  procs = []
  for i in range(processes):
    env = {**os.environ, 'XLA_FLAGS': f'--xla_force_host_platform_device_count={devices}',
           'JAX_PLATFORMS': 'cpu'}
    if processes > 1:
      env.update(CDR_MULTIHOST='1', CDR_COORDINATOR=f'127.0.0.1:{port}',
                 CDR_NUM_PROCESSES=str(processes), CDR_PROCESS_ID=str(i))
    cmd = [sys.executable, script, f'--workdir={workdir}', *args]
    procs.append(subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                  text=True))
  outs = []
  for p in procs:
    out, err = p.communicate(timeout=600)
    assert p.returncode == 0, err[-3000:]
    outs.append(out)
  return outs


def model_metrics(workdir) -> dict:
  return json.loads((workdir / 'metrics.json').read_text())['test']['model']


@pytest.fixture(scope='module')
def one_process(tmp_path_factory):
  workdir = tmp_path_factory.mktemp('one')
  launch('launch/train.py', workdir, '--config=configs/test.py', *COMMON, processes=1, devices=4)
  return workdir


def test_two_processes_train_as_one(one_process, tmp_path):
  outs = launch('launch/train.py', tmp_path, '--config=configs/test.py', *COMMON, processes=2,
                devices=2)
  got, ref = model_metrics(tmp_path), model_metrics(one_process)
  for k in ('pcc', 'spearman', 'rmse'):
    assert got[k] == pytest.approx(ref[k], abs=2e-3), k
  assert all('per-drug PCC' in out for out in outs)   # both processes computed the results
  history = (tmp_path / 'history.csv').read_text().splitlines()
  assert len(history) == EPOCHS + 1             # written once per epoch, by process 0 alone


def test_checkpoint_saved_by_two_processes_resumes(one_process, tmp_path):
  launch('launch/train.py', tmp_path, '--config=configs/test.py', *COMMON,
         '--config.train.max_epochs_this_run=1', processes=2, devices=2)
  assert not (tmp_path / 'metrics.json').exists()
  launch('launch/train.py', tmp_path, '--config=configs/test.py', *COMMON, processes=2, devices=2)
  got, ref = model_metrics(tmp_path), model_metrics(one_process)
  for k in ('pcc', 'spearman', 'rmse'):
    assert got[k] == pytest.approx(ref[k], abs=2e-3), k


def test_lodo_sweep_over_two_processes(tmp_path):
  """4 folds on 4 devices: the model axis spans both processes."""
  args = ['--config=configs/test.py:lodo', '--drugs=random:4:0', '--config.train.num_epochs=2',
          '--config.lodo.folds_per_chunk=4']
  launch('launch/lodo.py', tmp_path / 'one', *args, processes=1, devices=4)
  launch('launch/lodo.py', tmp_path / 'two', *args, processes=2, devices=2)
  one = (tmp_path / 'one/lodo_per_drug.csv').read_text().splitlines()
  two = (tmp_path / 'two/lodo_per_drug.csv').read_text().splitlines()
  assert len(one) == len(two) == 5 and one[0] == two[0]
  for a, b in zip(one[1:], two[1:]):
    ra, rb = a.split(','), b.split(',')
    assert ra[:4] == rb[:4]                     # drug, name, pairs, best epoch
    assert float(ra[5]) == pytest.approx(float(rb[5]), abs=2e-3)   # test PCC


def test_only_process_zero_writes(monkeypatch):
  assert sharding.is_writer()
  monkeypatch.setattr(jax, 'process_index', lambda: 1)
  assert not sharding.is_writer()
