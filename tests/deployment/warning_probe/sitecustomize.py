"""The deployment test's warning probe: records every Python warning raised while our code is on the call stack.

The deployment test (``tests/deployment/test_real_deployment.py``) puts this folder on the ``PYTHONPATH`` of every
Airflow process it starts, so Python imports this module at start-up (``site`` imports ``sitecustomize``), before
Airflow. It wraps :func:`warnings.warn` and :func:`warnings.warn_explicit`: when a frame of a file under one of the
paths in ``CARECYCLE_WARNING_PROBE_PATHS`` (the installed provider package, the example DAGs' folder) is on the
stack of the call, one JSON line goes to ``<CARECYCLE_WARNING_PROBE_DIR>/warnings-<pid>.jsonl``: the category, the
message (cut), where Python reports the warning (``location``), our innermost frame, and whether a module was being
imported between the two (``in_import``). The warning itself then goes on as it would have (filters,
``showwarning``, logs): the probe records, it changes nothing.

The test (``not_ours`` there) counts as "a warning from our code" every record whose location is our code (our own
warnings, and a deprecated import in an example DAG, which Python reports at the DAG's line) or that was raised
inside a call our code made into Airflow or a library (``BaseHook.get_connection`` warning that the way it is asked
is deprecated), whatever the warning filters later do with it; every occurrence, not only the first one a filter
would show. It lists, without counting, a library that warns while its own module is first imported (urllib3
without PySocks, when our hook is the first to import ``requests`` in a process), a warning raised in a call another
provider's code made (the SQL provider's hook reading its own connection), and a few warnings Airflow or a library
raise inside their own code whatever the caller does.
"""

from __future__ import annotations

import json
import os
import sys
import warnings

_PATHS = tuple(path for path in os.environ.get("CARECYCLE_WARNING_PROBE_PATHS", "").split(os.pathsep) if path)
_DIR = os.environ.get("CARECYCLE_WARNING_PROBE_DIR", "")


def _innermost_ours(frame):
    while frame is not None:
        if frame.f_code.co_filename.startswith(_PATHS):
            return frame
        frame = frame.f_back
    return None


def _importing(frame):
    return "importlib" in frame.f_code.co_filename and "_bootstrap" in frame.f_code.co_filename


def _short(filename):
    """A file's path from its package on: ``airflow/models/connection.py``."""
    return filename.rsplit("site-packages/", 1)[-1]


def _location(caller, stacklevel):
    """The frame Python reports the warning at: ``stacklevel - 1`` frames out, past the import machinery's."""
    where, internal = caller, _importing(caller)
    for _ in range(max(int(stacklevel), 1) - 1):
        where = where.f_back
        while where is not None and not internal and _importing(where):
            where = where.f_back
        if where is None:
            return caller
    return where


def _record(message, category, caller, stacklevel):
    try:
        ours = _innermost_ours(caller)
        if ours is None:
            return
        if isinstance(message, Warning):
            category = type(message)
        where = _location(caller, stacklevel)
        frame, in_import, via = caller, False, []
        while frame is not None and frame is not ours:
            in_import = in_import or _importing(frame)
            via.append(f"{_short(frame.f_code.co_filename)}:{frame.f_code.co_name}")
            frame = frame.f_back
        record = {
            "pid": os.getpid(),
            "process": " ".join(os.path.basename(arg) for arg in sys.argv[:3]),
            "category": getattr(category, "__name__", str(category)),
            "message": str(message)[:400],
            "location": f"{where.f_code.co_filename}:{where.f_lineno}",
            "ours": f"{ours.f_code.co_filename}:{ours.f_lineno} ({ours.f_code.co_name})",
            "location_is_ours": where.f_code.co_filename.startswith(_PATHS),
            "in_import": in_import,
            "via": via,
        }
        with open(os.path.join(_DIR, f"warnings-{os.getpid()}.jsonl"), "a") as out:
            out.write(json.dumps(record) + "\n")
    except Exception:  # the probe never breaks the process it watches
        pass


if _PATHS and _DIR:
    _warn = warnings.warn
    _warn_explicit = warnings.warn_explicit

    def warn(message, category=None, stacklevel=1, source=None, **kwargs):
        _record(message, category or UserWarning, sys._getframe(1), stacklevel)
        return _warn(message, category, stacklevel + 1, source, **kwargs)  # this frame is not the caller's

    def warn_explicit(message, category, filename, lineno, *args, **kwargs):
        _record(message, category, sys._getframe(1), 1)
        return _warn_explicit(message, category, filename, lineno, *args, **kwargs)

    warnings.warn = warn
    warnings.warn_explicit = warn_explicit
