"""The root of a2qflow's own errors, and its interruption signal.

Every error a2qflow raises on purpose (a refused input, a failed check, a tool that stopped)
derives from `A2qflowError`; the CLI turns each into one line naming what is wrong and a
non-zero exit (a traceback only with `--debug`). Most also derive from the builtin that
describes them (ValueError for bad input, RuntimeError for a failed stage), so callers of
the Python API can catch either. The board-side code (`a2qflow.deploy`) is shipped on its
own and has its own root, `DeployError`.
"""
from __future__ import annotations

import signal
from contextlib import contextmanager
from typing import Iterator


class A2qflowError(Exception):
    """An error a2qflow raises on purpose; its message names what is wrong."""


class Interrupted(KeyboardInterrupt):
    """Ctrl-C or SIGTERM: the command stops, its outputs say 'interrupted'."""


def _raise_interrupted(signum, frame):
    raise Interrupted(signal.Signals(signum).name)


@contextmanager
def sigterm_as_interrupt() -> Iterator[None]:
    """SIGTERM (and SIGHUP) raise `Interrupted` like Ctrl-C does, so a killed command runs its
    cleanup (child processes stopped, status 'interrupted' written) instead of vanishing."""
    old = {}
    for sig in (signal.SIGTERM, signal.SIGHUP):
        try:
            old[sig] = signal.signal(sig, _raise_interrupted)
        except ValueError:  # not the main thread: signals stay with whoever owns them
            pass
    try:
        yield
    finally:
        for sig, handler in old.items():
            signal.signal(sig, handler)
