"""Orbax checkpoints under `workdir/checkpoints/{latest,best}`: train state plus loop metadata (JSON).

Orbax writes each checkpoint to a temporary directory and renames it when complete, so a run killed
mid-save keeps its previous checkpoint; restore-or-init at start makes an interrupted run resume.
"""

import pathlib
from typing import Any

import jax
import orbax.checkpoint as ocp


class Checkpoints:
  """The latest checkpoint (for resuming) and the best one (for model selection)."""

  def __init__(self, directory: str | pathlib.Path):
    directory = pathlib.Path(directory).absolute()
    options = ocp.CheckpointManagerOptions(max_to_keep=1, create=True,
                                           enable_async_checkpointing=False)
    self._managers = {name: ocp.CheckpointManager(directory / name, options=options)
                      for name in ('latest', 'best')}

  def save(self, which: str, step: int, state: Any, meta: dict) -> None:
    """Saves `state` (a pytree of arrays) and `meta` (JSON) as `which` at `step`."""
    self._managers[which].save(step, args=ocp.args.Composite(
        state=ocp.args.StandardSave(state), meta=ocp.args.JsonSave(meta)), force=True)

  def restore(self, which: str, like: Any) -> tuple[Any, dict] | None:
    """(state, meta) of `which`, with the shapes, dtypes and shardings of `like`; None if absent."""
    manager = self._managers[which]
    step = manager.latest_step()
    if step is None:
      return None
    abstract = jax.tree.map(ocp.utils.to_shape_dtype_struct, like)
    restored = manager.restore(step, args=ocp.args.Composite(
        state=ocp.args.StandardRestore(abstract), meta=ocp.args.JsonRestore()))
    return restored['state'], restored['meta']

  def close(self) -> None:
    for m in self._managers.values():
      m.close()
