"""PyTorch sidecar of cdr-jax: expression matrix -> single-cell foundation-model cell embeddings.

Writes `PATH.npy` (float32, cells x d), `PATH.cells.txt` (row ids) and `PATH.json` (provenance).
cdr_jax reads those files and never imports torch; this package never imports jax.
Importing the package itself is cheap: torch and scgpt load only in the model modules.
"""

__all__ = ['EmbedError', 'InputDataError', 'CheckpointError']


class EmbedError(Exception):
  """Base class of every error the sidecar raises on bad input; the CLI prints its message."""


class InputDataError(EmbedError):
  """The expression input or a gene list is unusable: names the file and the offending cell/gene."""


class CheckpointError(EmbedError):
  """A checkpoint is missing, unreadable or does not fit its config: names the file and the keys."""
