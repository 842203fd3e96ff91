"""Errors a user can cause. Each carries the exit code the CLI turns it into.

The message is one line that says what went wrong and what to do about it; the CLI prints it
on stderr as ``error: <message>`` and exits with ``exit_code``. Tracebacks are for bugs only.
"""

from __future__ import annotations


class ToolkitError(Exception):
    """Base of every error a user can cause; exit code 1 unless a subclass says otherwise."""

    exit_code = 1


class UsageError(ToolkitError, ValueError):
    """A command was called with values that can never work (exit 2, like a CLI usage error);
    from Python, a ``ValueError``."""

    exit_code = 2


class DataMissingError(ToolkitError):
    """The Fashion-MNIST files are not where we looked."""


class DataCorruptError(ToolkitError):
    """A data file is truncated, has the wrong magic number or the wrong checksum."""


class DownloadError(ToolkitError):
    """Every mirror failed for a file."""


class ModelNotFoundError(ToolkitError, LookupError):
    """No model of that name in the store, and no such path (a ``LookupError``)."""


class ModelCorruptError(ToolkitError):
    """A saved model's weights are unreadable or do not match its config."""


class InvalidNameError(UsageError):
    """A model name with characters the store does not allow."""


class OutputError(ToolkitError):
    """An output path (plots, a model folder) cannot be written."""


class RunInProgressError(ToolkitError):
    """Another process is training a model of the same name."""


class DeviceUnavailableError(ToolkitError):
    """The asked-for device does not exist on this machine."""


class CheckpointMissingError(ToolkitError, LookupError):
    """``--resume`` was asked for but there is no interrupted run of that name."""


class UnfinishedRunError(ToolkitError):
    """A new run would discard the checkpoint of an interrupted one."""


class TrainingInterrupted(ToolkitError):
    """Ctrl-C during training; the checkpoint that resumes it was saved (exit 130, like SIGINT)."""

    exit_code = 130

    def __init__(self, message: str, *, model_name: str, completed_epochs: int) -> None:
        super().__init__(message)
        self.model_name = model_name
        self.completed_epochs = completed_epochs


class StudyStorageError(ToolkitError):
    """A tuning storage URL that cannot be opened or reached."""


class StudyNotFoundError(ToolkitError, LookupError):
    """No tuning study of that name (or no finished trial where one is needed)."""


class TuningInterrupted(ToolkitError):
    """Ctrl-C during ``fmt ae tune``; the study keeps every finished trial (exit 130)."""

    exit_code = 130


class MeasurementError(ToolkitError, ValueError):
    """A quality measure is undefined for these images (a Fréchet distance's square root)."""


class TrainingDiverged(ToolkitError):
    """A loss became NaN or infinite; the last good checkpoint is kept."""


class ReadOnlyModelError(ToolkitError):
    """A bundled model cannot be removed or replaced in place."""


def with_article(noun: str) -> str:
    """ "an autoencoder", "a generator": a model kind inside an error message."""
    return f"{'an' if noun[:1] in 'aeiou' else 'a'} {noun}"
