"""Where Optuna studies live: the default SQLite file in the store, PostgreSQL/MySQL URLs,
journal files; opening them, with heartbeats, and keeping Optuna's own logging quiet."""

from __future__ import annotations

import contextlib
import re
import time
import warnings
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

from fmnist_toolkit.errors import StudyStorageError, UsageError
from fmnist_toolkit.storage import ModelStore

if TYPE_CHECKING:
    from optuna.storages import BaseStorage

JOURNAL_PREFIX = "journal:"
DEFAULT_HEARTBEAT = 60  # seconds between a running trial's heartbeats (RDB storages)
SCHEMA_RACE_SIGNS = ("already exists", "UNIQUE constraint failed", "duplicate key")


def default_storage_url(store: ModelStore) -> str:
    """One SQLite file in the model store: tuning works with no set-up."""
    store.root.mkdir(parents=True, exist_ok=True)
    return f"sqlite:///{store.studies_path}"


def shown_url(url: str) -> str:
    """The URL with any password replaced by ***, fit for logs and configs."""
    if url.startswith(JOURNAL_PREFIX):
        return url
    try:
        from sqlalchemy.engine import make_url

        return make_url(url).render_as_string(hide_password=True)
    except Exception:  # unparsable (a bad port, say): hide what looks like user:password@
        return re.sub(r"(://[^:/@]*:)[^@]*@", r"\1***@", url)


def open_storage(url: str, *, heartbeat: int = DEFAULT_HEARTBEAT) -> BaseStorage:
    """Open an Optuna storage: ``journal:PATH`` for a journal file, else an SQLAlchemy URL.

    RDB storages get Optuna's heartbeat: a trial whose worker died (SIGKILL, a lost machine)
    is marked failed by the next worker after ``2 * heartbeat`` seconds and retried once.
    """
    import optuna

    if _in_memory_sqlite(url):
        # Optuna's heartbeat thread opens its own connection, which gets an empty database;
        # and the study would vanish with the process. Refuse rather than lose it.
        raise UsageError(
            f"cannot use storage {url}: an in-memory SQLite database is lost when the run "
            "ends; name a file, e.g. sqlite:///studies.sqlite3"
        )
    if not url.startswith(JOURNAL_PREFIX):
        _check_url_form(url)
    try:
        if url.startswith(JOURNAL_PREFIX):
            from optuna.storages.journal import JournalFileBackend, JournalFileOpenLock

            path = Path(url.removeprefix(JOURNAL_PREFIX).removeprefix("//")).expanduser()
            path.parent.mkdir(parents=True, exist_ok=True)
            # The open(2)-based lock also works on NFS, where symlink locks may not.
            backend = JournalFileBackend(str(path), lock_obj=JournalFileOpenLock(str(path)))
            return optuna.storages.JournalStorage(backend)
        engine_kwargs: dict[str, Any] = {}
        if url.startswith("sqlite"):
            # Several local workers write one file: wait for the lock instead of failing.
            engine_kwargs["connect_args"] = {"timeout": 60}
        else:
            engine_kwargs["pool_pre_ping"] = True
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
            return _open_rdb_storage(url, engine_kwargs, _heartbeat_options(heartbeat))
    except ImportError as error:
        # Optuna wraps the driver's ModuleNotFoundError in an ImportError of its own.
        missing = error.name or getattr(error.__cause__, "name", None) or "a database driver"
        extra = {"psycopg": "postgres", "psycopg2": "postgres", "pymysql": "mysql"}.get(missing)
        hint = f"; install it with: pip install 'fmnist-toolkit[{extra}]'" if extra else ""
        raise StudyStorageError(
            f"cannot open storage {shown_url(url)}: {missing!r} is not installed{hint}"
        ) from None
    except Exception as error:  # SQLAlchemy, the driver or the file system: all one line
        reason = " ".join(str(error).split("\n")[0].split()) or type(error).__name__
        raise StudyStorageError(f"cannot open storage {shown_url(url)}: {reason}") from None


def _check_url_form(url: str) -> None:
    """A URL no database could ever answer (unparsable, or a scheme SQLAlchemy does not know)
    is a usage error, unlike a server that is down or a driver that is not installed."""
    from sqlalchemy.engine import make_url
    from sqlalchemy.exc import ArgumentError, NoSuchModuleError

    try:
        make_url(url).get_dialect()
    except (ArgumentError, NoSuchModuleError, ValueError):
        raise UsageError(
            f"{shown_url(url)} is not a storage URL: use sqlite:///FILE, "
            "postgresql://USER@HOST/DB, mysql://USER@HOST/DB or journal:PATH"
        ) from None
    except ImportError:  # a known database whose driver is missing: opening it says which
        pass


def _in_memory_sqlite(url: str) -> bool:
    """sqlite://, sqlite:/// and sqlite:///:memory: (SQLAlchemy's spellings of no file)."""
    if not url.startswith("sqlite"):
        return False
    try:
        from sqlalchemy.engine import make_url

        database = make_url(url).database
    except Exception:  # unparsable: opening it says why
        return False
    return database in (None, "", ":memory:") or database.startswith("file::memory:")


def _open_rdb_storage(
    url: str, engine_kwargs: dict[str, Any], options: dict[str, Any]
) -> BaseStorage:
    """RDBStorage, retried when workers started together race to create its tables."""
    import optuna

    for attempt in range(5):
        try:
            return optuna.storages.RDBStorage(url, engine_kwargs=engine_kwargs, **options)
        except Exception as error:
            # Another worker created the schema (tables, alembic's version row) between our
            # check and our write: the second attempt finds it complete.
            if not any(sign in str(error) for sign in SCHEMA_RACE_SIGNS) or attempt == 4:
                raise
            time.sleep(0.2 * (attempt + 1))
    raise AssertionError("unreachable")


def _heartbeat_options(heartbeat: int) -> dict[str, Any]:
    """RDBStorage arguments: heartbeat, grace period, and one retry of a dead worker's trial."""
    import optuna

    if heartbeat <= 0:
        return {}
    options: dict[str, Any] = {"heartbeat_interval": heartbeat, "grace_period": 2 * heartbeat}
    # Optuna 4.9 renamed the callback and its argument; older releases know only the old names.
    if hasattr(optuna.storages, "RetryHeartbeatStaleTrialCallback"):
        retry = optuna.storages.RetryHeartbeatStaleTrialCallback(max_retry=1)
        options["heartbeat_stale_trial_callback"] = retry
    else:  # pragma: no cover - Optuna < 4.9
        options["failed_trial_callback"] = optuna.storages.RetryFailedTrialCallback(max_retry=1)
    return options


@contextlib.contextmanager
def quiet_optuna() -> Iterator[None]:
    """Optuna logs every trial (a failed one with a traceback); the CLI shows its own lines."""
    import optuna

    verbosity = optuna.logging.get_verbosity()
    optuna.logging.set_verbosity(optuna.logging.ERROR)
    try:
        yield
    finally:
        optuna.logging.set_verbosity(verbosity)
