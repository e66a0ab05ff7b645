"""The member index of one archive version, in SQLite: built once, reused by every mount.

One row per member, keyed by its cleaned path; duplicates keep the last
(as tar extraction does); missing parent directories are made up; hard
links point at their target's data. The file is written under a temporary
name and renamed, and carries the version it describes, so an index of an
older version or a damaged file is never used (it is rebuilt instead).
"""

from __future__ import annotations

import logging
import os
import sqlite3
from collections.abc import Iterable
from pathlib import Path

from artifactfs.archive.members import Member

log = logging.getLogger(__name__)

SCHEMA_VERSION = "2"
_SCHEMA = """
CREATE TABLE meta (k TEXT PRIMARY KEY, v TEXT NOT NULL);
CREATE TABLE members (
    path TEXT PRIMARY KEY, parent TEXT NOT NULL, name TEXT NOT NULL, kind TEXT NOT NULL,
    mode INTEGER NOT NULL, size INTEGER NOT NULL, mtime_ns INTEGER NOT NULL,
    offset INTEGER NOT NULL, link TEXT NOT NULL, codec TEXT NOT NULL, csize INTEGER NOT NULL
);
"""
_COLUMNS = "path, kind, mode, size, mtime_ns, offset, link, codec, csize"


class IndexUnusable(Exception):
    """An index file that cannot be used (other version, damaged)."""


def _parent(path: str) -> str:
    return path.rpartition("/")[0]


def build_index(
    dest: Path,
    identity: str,
    members: Iterable[Member],
    root_mtime_ns: int,
    meta: dict[str, str] | None = None,
    content_size: int = -1,
) -> int:
    """Write the index of `members` to `dest` atomically; return the member count.

    `content_size` (the decoded size of a compressed archive) drops members
    whose data did not fully decode; `meta` is stored for the reader.
    """
    dest.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    tmp = dest.with_name(f"{dest.name}.{os.getpid()}.tmp")
    tmp.unlink(missing_ok=True)
    db = sqlite3.connect(tmp)
    try:
        db.executescript("PRAGMA journal_mode=OFF; PRAGMA synchronous=OFF;" + _SCHEMA)
        count = 0
        batch: list[tuple] = []
        for m in members:
            batch.append((m.path, _parent(m.path), m.path.rpartition("/")[2], m.kind, m.mode,
                          m.size, m.mtime_ns, m.offset, m.link, m.codec, m.csize))  # fmt: skip
            count += 1
            if len(batch) >= 10_000:
                _insert(db, batch)
                batch.clear()
        _insert(db, batch)
        if content_size >= 0:
            gone = db.execute("DELETE FROM members WHERE kind = 'file' AND offset + size > ?",
                              (content_size,)).rowcount  # fmt: skip
            count -= gone
        _add_missing_dirs(db, root_mtime_ns)
        _resolve_hardlinks(db)
        db.execute("CREATE INDEX by_parent ON members (parent, name)")
        rows = {"schema": SCHEMA_VERSION, "identity": identity, **(meta or {})}
        db.executemany("INSERT INTO meta VALUES (?, ?)", list(rows.items()))
        db.commit()
    except BaseException:
        db.close()
        tmp.unlink(missing_ok=True)
        raise
    db.close()
    os.replace(tmp, dest)
    return count


def _insert(db: sqlite3.Connection, rows: list[tuple]) -> None:
    db.executemany("INSERT OR REPLACE INTO members VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)", rows)


def _add_missing_dirs(db: sqlite3.Connection, mtime_ns: int) -> None:
    """Archives often omit directory entries (`tar c a/b/file`): make them up."""
    while True:
        missing = db.execute(
            "SELECT DISTINCT m.parent FROM members m LEFT JOIN members p ON p.path = m.parent "
            "WHERE m.parent != '' AND p.path IS NULL"
        ).fetchall()
        if not missing:
            return
        _insert(db, [(p, _parent(p), p.rpartition("/")[2], "dir", 0o755, 0, mtime_ns, 0, "",
                      "", 0) for (p,) in missing])  # fmt: skip


def _resolve_hardlinks(db: sqlite3.Connection) -> None:
    """A hard link is served as the file it links to (its data range and size)."""
    for _ in range(8):  # links to links
        rows = db.execute(
            "SELECT h.path, t.kind, t.size, t.offset, t.codec, t.csize FROM members h "
            "LEFT JOIN members t ON t.path = h.link WHERE h.kind = 'hardlink'"
        ).fetchall()
        if not rows:
            return
        for path, kind, size, offset, codec, csize in rows:
            if kind == "file":
                db.execute("UPDATE members SET kind='file', size=?, offset=?, link='', codec=?, "
                           "csize=? WHERE path=?", (size, offset, codec, csize, path))  # fmt: skip
            elif kind != "hardlink":
                log.warning("hard link %r: target missing or not a file; skipped", path)
                db.execute("DELETE FROM members WHERE path=?", (path,))
    db.execute("DELETE FROM members WHERE kind = 'hardlink'")


class ArchiveIndex:
    """Read side of an index file. Queries are indexed and answer in microseconds."""

    def __init__(self, path: Path, identity: str):
        try:
            self._db = sqlite3.connect(f"file:{path}?mode=ro", uri=True, check_same_thread=False)
            meta = dict(self._db.execute("SELECT k, v FROM meta").fetchall())
            self.meta: dict[str, str] = meta
            self.count = self._db.execute("SELECT count(*) FROM members").fetchone()[0]
        except sqlite3.Error as exc:
            raise IndexUnusable(f"{path}: {exc}") from None
        if meta.get("schema") != SCHEMA_VERSION or meta.get("identity") != identity:
            self._db.close()
            raise IndexUnusable(f"{path}: describes another archive version")

    def lookup(self, path: str) -> Member | None:
        row = self._db.execute(f"SELECT {_COLUMNS} FROM members WHERE path = ?", (path,)).fetchone()
        return Member(*row) if row else None

    def children_page(self, path: str, after: str | None, limit: int) -> list[Member]:
        """Up to `limit` children of `path` named after `after`, by name (keyset paging)."""
        if after is None:
            rows = self._db.execute(
                f"SELECT {_COLUMNS} FROM members WHERE parent = ? ORDER BY name LIMIT ?",
                (path, limit),
            ).fetchall()
        else:
            rows = self._db.execute(
                f"SELECT {_COLUMNS} FROM members WHERE parent = ? AND name > ? "
                "ORDER BY name LIMIT ?",
                (path, after, limit),
            ).fetchall()
        return [Member(*r) for r in rows]

    def children_at(self, path: str, offset: int, limit: int) -> list[Member]:
        """Children by position, for a reader that seeks back in a directory."""
        rows = self._db.execute(
            f"SELECT {_COLUMNS} FROM members WHERE parent = ? ORDER BY name LIMIT ? OFFSET ?",
            (path, limit, offset),
        ).fetchall()
        return [Member(*r) for r in rows]

    def children(self, path: str) -> list[Member]:
        """Every child of `path`, by name (small directories and tests)."""
        return self.children_page(path, None, -1)  # LIMIT -1: no limit

    def check_paths(self) -> None:
        """Refuse an index whose member paths are not clean (an index from elsewhere)."""
        from artifactfs.archive.members import clean_path

        for path, parent in self._db.execute("SELECT path, parent FROM members"):
            if clean_path(path) != path or path.rpartition("/")[0] != parent:
                raise IndexUnusable(f"member path {path!r} is not clean")

    def close(self) -> None:
        self._db.close()
