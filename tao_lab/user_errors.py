"""User errors read as user errors: one clear message and a non-zero exit instead of a traceback.

A missing or inconsistent dataset (:class:`~tao_lab.dataset.DataError`), an unreadable input video
(:class:`~tao_lab.infer.InferenceInputError`), a bad config value (:class:`ConfigError`, or a ValueError/TypeError
raised while Hydra builds a component from its config) or a missing weights file is the user's to fix, so the
entry points print what went wrong, where, and the fix, and exit with :data:`EXIT_USER_ERROR`. Anything else is a
bug and keeps Hydra's usual report. ``HYDRA_FULL_ERROR=1`` shows the full traceback for user errors too.

An interrupted run (Ctrl+C, SIGTERM) raises :class:`RunInterrupted` out of the work, so the run dir gets an
``INTERRUPTED.json`` marker (like ``FAILED.json`` for errors) and the process exits with 128 + the signal number.
"""
from __future__ import annotations

import os
import re
import signal
import sys
import threading
from typing import Optional

EXIT_USER_ERROR = 2


class ConfigError(ValueError):
    """A config value has the wrong type or range; the message names the key, the value and the fix."""


class RunInterrupted(KeyboardInterrupt):
    """Ctrl+C or SIGTERM arrived while a run was working (a KeyboardInterrupt, so ``except Exception`` lets it
    through)."""

    def __init__(self, signum: int = signal.SIGINT):
        self.signum = int(signum)
        super().__init__(f"interrupted by {signal_name(self.signum)}")


def signal_name(signum: int) -> str:
    try:
        return signal.Signals(signum).name
    except ValueError:
        return f"signal {signum}"


def exit_code_for_interrupt(exc: BaseException) -> int:
    return 128 + int(getattr(exc, "signum", signal.SIGINT))


def full_traceback_wanted() -> bool:
    return os.environ.get("HYDRA_FULL_ERROR", "") == "1"


def unwrap(exc: BaseException) -> BaseException:
    """The error itself when Hydra wrapped it while building a component from the config (InstantiationException),
    else ``exc``."""
    if type(exc).__name__ == "InstantiationException" and exc.__cause__ is not None:
        return exc.__cause__
    return exc


def _user_error_types() -> tuple[type, ...]:
    from tao_lab.dataset.errors import DataError

    types: list[type] = [DataError, ConfigError, FileNotFoundError]
    try:  # the inference module is light, but keep this import failure-proof
        from tao_lab.infer import InferenceInputError

        types.append(InferenceInputError)
    except ImportError:  # pragma: no cover
        pass
    return tuple(types)


def describe_user_error(exc: BaseException) -> Optional[str]:
    """The message to print when ``exc`` is a user error, else None (a bug: show the traceback).

    Unwraps Hydra's InstantiationException: a user error inside it is reported as itself; a ValueError/TypeError
    raised while building a component from the config is a bad config value of that config group.
    """
    user_types = _user_error_types()
    if isinstance(exc, user_types):
        return str(exc)
    if type(exc).__name__ == "InstantiationException":
        cause = exc.__cause__ or exc.__context__
        text = str(exc)
        key = re.search(r"full_key:\s*(\S+)", text)
        target = re.search(r"call to target '([^']+)'", text)
        if isinstance(cause, user_types):
            return str(cause)
        if isinstance(cause, (ValueError, TypeError)):
            group = key.group(1) if key else "?"
            where = f" ({target.group(1)})" if target else ""
            return (f"bad value in the config group '{group}'{where}: {cause}. Check the values of '{group}' in "
                    f"your overrides or in configs/{group.split('.')[0]}/")
    return None


def report_user_error(task_name: str, message: str, run_dir: Optional[str]) -> None:
    """Prints the one-paragraph error report to stderr."""
    lines = [f"tao_lab {task_name}: error: {message}"]
    if run_dir:
        lines.append(f"  recorded in {os.path.join(run_dir, 'FAILED.json')}")
    lines.append("  (set HYDRA_FULL_ERROR=1 for the full traceback)")
    print("\n".join(lines), file=sys.stderr, flush=True)


class interrupt_on_sigterm:
    """Context manager: SIGTERM raises :class:`RunInterrupted` (like Ctrl+C raises KeyboardInterrupt), so the run
    unwinds through its ``finally`` blocks and records the interruption. No-op outside the main thread."""

    def __enter__(self):
        self._old = None
        try:
            self._old = signal.signal(signal.SIGTERM, self._handle)
        except ValueError:  # not the main thread: signals cannot be handled here
            self._old = None
        return self

    @staticmethod
    def _handle(signum, frame):
        raise RunInterrupted(signum)

    def __exit__(self, *exc) -> bool:
        if self._old is not None:
            signal.signal(signal.SIGTERM, self._old)
        return False


def fit_keeping_interrupts(trainer, *args, **kwargs) -> None:
    """``trainer.fit(*args, **kwargs)`` for a Lightning trainer, with an interruption left an interruption.

    Lightning catches a KeyboardInterrupt (Ctrl+C, or :class:`RunInterrupted` from SIGTERM) inside ``fit``, sets
    SIGINT to be ignored for the rest of the process and exits with ``sys.exit(1)``: the run would end with code 1,
    no message and no ``INTERRUPTED.json``, and a second Ctrl+C would do nothing. Here the interruption Lightning
    caught (the SystemExit's context) is raised again, and the SIGINT handler from before the fit is put back (in the
    main thread, the only one that can set it)."""
    main_thread = threading.current_thread() is threading.main_thread()
    before = signal.getsignal(signal.SIGINT) if main_thread else None
    try:
        trainer.fit(*args, **kwargs)
    except SystemExit as exc:
        caught = exc.__context__
        if isinstance(caught, KeyboardInterrupt):
            raise caught from None
        raise
    finally:
        if main_thread and before is not None and signal.getsignal(signal.SIGINT) != before:
            signal.signal(signal.SIGINT, before)
