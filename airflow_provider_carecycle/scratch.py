"""Scratch storage that no name points at, so the kernel reclaims it when the process dies, even by ``kill -9``.

What the provider keeps on local disk only while it works (the lead spool, the sync ledger's working copies, an
export or rejected file while it is written) may hold patient data. A named temporary file outlives a killed
worker; an unlinked one does not. Two kinds are used:

* :func:`scratch_database`: SQLite's own temporary database (the empty file name), which SQLite creates in its
  temporary directory and unlinks at once; its pages live in SQLite's cache and spill to that unlinked file.
* :func:`anonymous_file`: a file opened with ``O_TMPFILE`` in the folder where it will appear (Linux), which
  :func:`link_into_place` gives its name once it is complete.

Where a file must have a name while it is written (no ``O_TMPFILE``, object storage, the sync's stores), it goes by
:func:`partial_name` next to its final name and is renamed when complete.

It serves the storage layer (:class:`~airflow_provider_carecycle.storage.RecordWriter`) and the lead sync (the
spool, the ledger's working copies, the stores' temporary names) alike, so it sits beside both rather than in either.
Pure Python: imports nothing from Airflow.
"""

from __future__ import annotations

import errno
import os
import sqlite3
import uuid
from typing import Any

#: SQLite settings of every scratch database: no journal, no fsync (nothing of it outlives the process anyway)
_SCRATCH_PRAGMAS = ("journal_mode=OFF", "synchronous=OFF", "temp_store=FILE")


def scratch_database(*pragmas: str, **connect: Any) -> sqlite3.Connection:
    """A private on-disk SQLite database that is deleted the moment it is created (SQLite's temporary database).

    :param pragmas: more ``PRAGMA`` settings, e.g. ``"cache_size=-8000"``.
    :param connect: keyword arguments for :func:`sqlite3.connect` (``check_same_thread``, ``isolation_level``).
    """
    db = sqlite3.connect("", **connect)
    for pragma in (*_SCRATCH_PRAGMAS, *pragmas):
        db.execute(f"PRAGMA {pragma}")
    return db


def anonymous_file(folder: str) -> int | None:
    """A new, empty, unnamed file in ``folder``, open for reading and writing with mode 0600: its file descriptor,
    or ``None`` where that is not possible (not Linux, a file system without ``O_TMPFILE``, no ``/proc``).

    :param folder: the folder the finished file will be linked into (it must be on the same file system).
    """
    flag = getattr(os, "O_TMPFILE", None)
    if flag is None or not os.path.isdir("/proc/self/fd"):
        return None
    try:
        fd = os.open(folder, flag | os.O_RDWR, 0o600)
    except OSError:  # EOPNOTSUPP, EISDIR (kernels before 3.11), EINVAL, ...: the caller falls back to a name
        return None
    os.fchmod(fd, 0o600)  # whatever the umask
    return fd


def link_into_place(fd: int, target: str) -> None:
    """Give the finished anonymous file ``fd`` the name ``target``, replacing what is there, atomically.

    A new name is one ``linkat``. An existing one is replaced by a rename from a hidden ``.<name>.<random>.partial``
    link, so for the instant between the two calls the complete file also has that name. Where the kernel refuses
    to link the file, its bytes are copied to that hidden name instead, then renamed.

    :param fd: from :func:`anonymous_file`, flushed.
    :param target: the file's final path.
    """
    try:
        if _link(fd, target):
            return
        _copy_into_place(fd, target)
        return
    except FileExistsError:
        pass
    temporary = _temporary_name(target)
    if not _link(fd, temporary):
        _copy_into_place(fd, target)
        return
    try:
        os.replace(temporary, target)
    except BaseException:
        _unlink_quietly(temporary)
        raise


_AT_FDCWD = -100
_AT_EMPTY_PATH = 0x1000


def _link(fd: int, path: str) -> bool:
    """Give the unnamed file ``fd`` the name ``path``: ``linkat(fd, "", AT_EMPTY_PATH)`` (Linux 6.10+, or with
    ``CAP_DAC_READ_SEARCH``), else ``linkat`` of ``/proc/self/fd/<fd>`` following the link. ``False`` when the kernel
    refuses both; ``FileExistsError`` when ``path`` exists.
    """
    import ctypes  # here: only a finished local export needs it

    libc = ctypes.CDLL(None, use_errno=True)
    if libc.linkat(fd, b"", _AT_FDCWD, os.fsencode(path), _AT_EMPTY_PATH) == 0:
        return True
    if ctypes.get_errno() == errno.EEXIST:
        raise FileExistsError(errno.EEXIST, os.strerror(errno.EEXIST), path)
    try:
        os.link(f"/proc/self/fd/{fd}", path, follow_symlinks=True)
    except FileExistsError:
        raise
    except OSError:  # EXDEV in some containers, ENOENT without /proc, EPERM under some security modules
        return False
    return True


def _copy_into_place(fd: int, target: str) -> None:
    temporary = _temporary_name(target)
    out = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    try:
        with os.fdopen(out, "wb") as copy, os.fdopen(os.dup(fd), "rb") as data:
            data.seek(0)
            while chunk := data.read(1 << 20):
                copy.write(chunk)
        os.replace(temporary, target)
    except BaseException:
        _unlink_quietly(temporary)
        raise


def partial_name(name: str) -> str:
    """The hidden name a file being written goes by next to its final name: ``.<name>.<random>.partial``.

    Readers of a folder (the sync ledger, a user's) skip such names; every writer of the provider that writes under a
    name before the rename uses this one.

    :param name: the final file's name.
    """
    return f".{name}.{uuid.uuid4().hex[:12]}.partial"


def _temporary_name(target: str) -> str:
    folder, name = os.path.split(target)
    return os.path.join(folder, partial_name(name))


def _unlink_quietly(path: str) -> None:
    try:
        os.unlink(path)
    except OSError:
        pass
