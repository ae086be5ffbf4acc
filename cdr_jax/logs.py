"""Logging set-up for the launchers: our INFO lines, without Orbax's per-checkpoint chatter."""

import logging


class _DropLibraryInfo(logging.Filter):
  """Drops INFO-and-below records emitted from inside noisy libraries (Orbax, TensorStore)."""
  NOISY = ('/orbax/', '/tensorstore/', '/etils/')

  def filter(self, record: logging.LogRecord) -> bool:
    return record.levelno > logging.INFO or not any(n in record.pathname for n in self.NOISY)


def quiet_libraries() -> None:
  """Installs the filter on the absl handler and the root logger's handlers."""
  from absl import logging as absl_logging  # pylint: disable=g-import-not-at-top
  handlers = [absl_logging.get_absl_handler(), *logging.getLogger().handlers]
  for h in handlers:
    h.addFilter(_DropLibraryInfo())
