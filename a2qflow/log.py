"""Where a2qflow's own log lines and third-party warnings go: into the run's log file
(`<run>/a2qflow.log`), not onto the terminal, which shows progress and results. What is
warned before a run folder exists (a library's import-time notice) is held and written
into the first run's log."""
from __future__ import annotations

import logging
import logging.handlers
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator

LOG_FILE = "a2qflow.log"
_held = logging.handlers.MemoryHandler(capacity=1000, flushLevel=logging.CRITICAL + 1)
_FORMAT = logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s")
# loggers whose notices belong in the run log (FINN logs as "finn_logger"; its builder adds its
# own console handler for the step lines, which stay on the terminal)
THIRD_PARTY = ("py.warnings", "finn", "finn_logger", "qonnx", "distributed", "brevitas")


def quiet_terminal() -> None:
    """Third-party warnings (brevitas' optional-kernel notice, FINN's and Dask's notices) are
    held for the run log instead of printed; a2qflow's errors still reach the terminal."""
    logging.captureWarnings(True)
    for name in THIRD_PARTY:
        logger = logging.getLogger(name)
        logger.propagate = False
        if _held not in logger.handlers:
            logger.addHandler(_held)


@contextmanager
def run_log(folder: Path) -> Iterator[Path]:
    """Append what a2qflow and its libraries log during a run to <folder>/a2qflow.log."""
    folder.mkdir(parents=True, exist_ok=True)
    handler = logging.FileHandler(folder / LOG_FILE)
    handler.setFormatter(_FORMAT)
    _held.setTarget(handler)
    _held.flush()
    loggers = [logging.getLogger(name) for name in ("a2qflow", *THIRD_PARTY)]
    for logger in loggers:
        logger.addHandler(handler)
    try:
        yield folder / LOG_FILE
    finally:
        for logger in loggers:
            logger.removeHandler(handler)
        _held.setTarget(None)
        handler.close()
