"""Scratch storage the kernel reclaims: SQLite's temporary database and unnamed files linked into place."""

from __future__ import annotations

import os
import stat

import pytest

from airflow_provider_carecycle import scratch


def _unnamed_files_work() -> bool:
    fd = scratch.anonymous_file(os.path.dirname(os.path.abspath(__file__)))
    if fd is None:
        return False
    os.close(fd)
    return True


pytestmark = pytest.mark.skipif(not _unnamed_files_work(), reason="no O_TMPFILE on this system")


def unnamed(folder, data: bytes) -> int:
    fd = scratch.anonymous_file(str(folder))
    assert fd is not None
    os.write(fd, data)
    return fd


def open_files() -> dict[str, str]:
    """This process's open file descriptors and what each points at."""
    found = {}
    for fd in os.listdir("/proc/self/fd"):
        try:
            found[fd] = os.readlink(f"/proc/self/fd/{fd}")
        except OSError:  # the descriptor listdir itself used
            pass
    return found


def test_a_scratch_database_has_no_name_on_disk():
    before = open_files()
    db = scratch.scratch_database("cache_size=-64")  # a small cache: the pages spill to the file
    db.execute("CREATE TABLE t (x BLOB)")
    db.executemany("INSERT INTO t VALUES (?)", ((os.urandom(200),) for _ in range(5000)))
    assert db.execute("SELECT count(*) FROM t").fetchone() == (5000,)
    files = [target for fd, target in open_files().items() if before.get(fd) != target and target.startswith("/")]
    assert files and all(target.endswith(" (deleted)") for target in files), files  # on disk, under no name
    db.close()


def test_an_unnamed_file_is_private_and_appears_whole(tmp_path):
    old = os.umask(0)
    try:
        fd = unnamed(tmp_path, b"rows\n")
    finally:
        os.umask(old)
    assert stat.S_IMODE(os.fstat(fd).st_mode) == 0o600 and list(tmp_path.iterdir()) == []
    scratch.link_into_place(fd, str(tmp_path / "out.jsonl"))
    os.close(fd)
    assert (tmp_path / "out.jsonl").read_bytes() == b"rows\n"
    assert stat.S_IMODE(os.stat(tmp_path / "out.jsonl").st_mode) == 0o600


def test_an_existing_file_or_symlink_is_replaced(tmp_path):
    (tmp_path / "old").write_text("old")
    (tmp_path / "out.jsonl").symlink_to(tmp_path / "old")
    fd = unnamed(tmp_path, b"new\n")
    scratch.link_into_place(fd, str(tmp_path / "out.jsonl"))
    os.close(fd)
    assert not (tmp_path / "out.jsonl").is_symlink() and (tmp_path / "out.jsonl").read_text() == "new\n"
    assert (tmp_path / "old").read_text() == "old"  # the link's target is left alone
    assert sorted(p.name for p in tmp_path.iterdir()) == ["old", "out.jsonl"]


@pytest.mark.parametrize("exists", [False, True])
def test_where_the_kernel_refuses_the_link_the_bytes_are_copied(tmp_path, monkeypatch, exists):
    monkeypatch.setattr(scratch, "_link", lambda fd, path: False)
    if exists:
        (tmp_path / "out.jsonl").write_text("old")
    fd = unnamed(tmp_path, b"x" * 3_000_000)
    scratch.link_into_place(fd, str(tmp_path / "out.jsonl"))
    os.close(fd)
    assert (tmp_path / "out.jsonl").read_bytes() == b"x" * 3_000_000
    assert [p.name for p in tmp_path.iterdir()] == ["out.jsonl"]
