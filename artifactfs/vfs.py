"""The filesystem model: inodes, names, attributes, handles. No pyfuse3 here.

The FUSE adapter (`fs.py`) translates kernel requests into calls on
FileSystemModel and its domain errors into errno; everything else, including
the kernel's lookup counts, lives here so it can be tested without a mount.
"""

from __future__ import annotations

import itertools
import logging
import stat
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Literal

from artifactfs.archive.index import ArchiveIndex
from artifactfs.archive.members import Member, sparse_segments
from artifactfs.archives import ArchiveService
from artifactfs.errors import (
    BadHandle,
    IsADirectory,
    NotADirectory,
    NotASymlink,
    NotFound,
    ReadOnly,
)
from artifactfs.fetch import BlockFetcher
from artifactfs.namespace import Entry, Kind, Namespace
from artifactfs.readahead import SequentialDetector
from artifactfs.store.base import ObjectInfo, ObjectVersion

log = logging.getLogger(__name__)

ROOT_INODE = 1


@dataclass(frozen=True, slots=True)
class ModelOptions:
    uid: int
    gid: int
    metadata_ttl: float = 1.0
    read_ahead_bytes: int = 64 << 20
    kernel_read_ahead: int = 0
    blksize: int = 1 << 20
    archive_ttl: float = 300.0  # members of one archive version never change


@dataclass(slots=True)
class Attributes:
    """What stat(2) shows for a node, plus how long the kernel may cache it."""

    ino: int
    mode: int
    size: int
    mtime_ns: int
    nlink: int
    uid: int
    gid: int
    blksize: int
    timeout: float


@dataclass(eq=False, slots=True)
class Node:
    ino: int
    parent: int
    name: str
    kind: Kind | Literal["symlink"]
    path: str  # a prefix ending in '/', an object key, or a member path in an archive
    info: ObjectInfo | None = None
    info_at: float = 0.0
    lookups: int = 0
    last_opened: ObjectVersion | None = None
    archive: ObjectVersion | None = None  # set on an archive's root and its members
    member: Member | None = None  # set on members
    codec: str = ""  # a single compressed file, shown decoded
    decoded_size: int = 0
    archive_mtime_ns: int = 0  # the archive object's mtime, on its root and every member

    @property
    def member_path(self) -> str:
        """Path inside the archive ('' for the archive's root)."""
        return self.member.path if self.member is not None else ""


@dataclass(slots=True)
class OpenFile:
    node: Node
    version: ObjectVersion
    detector: SequentialDetector
    base: int = 0  # offset of the content in the object (an archive member's data)
    size: int = -1  # length of the content; -1: the whole object
    segments: list[tuple[int, int, int]] | None = None  # a sparse member's data; rest is zeros


@dataclass(slots=True)
class OpenDir:
    node: Node
    entries: list[Entry | Member] = field(default_factory=list)
    index: ArchiveIndex | None = None  # archive directories are paged from their index
    names: dict[int, str] = field(default_factory=dict)  # offset -> name, last page only


_DIR_PAGE = 1000


class FileSystemModel:
    def __init__(
        self,
        namespace: Namespace,
        fetcher: BlockFetcher,
        root_prefix: str,
        options: ModelOptions,
        archives: ArchiveService | None = None,
    ):
        self.namespace = namespace
        self.fetcher = fetcher
        self.archives = archives
        self.options = options
        self.mount_time_ns = time.time_ns()
        root = Node(ROOT_INODE, ROOT_INODE, "", "dir", root_prefix, lookups=1)
        self._nodes: dict[int, Node] = {ROOT_INODE: root}
        self._children: dict[tuple[int, str], int] = {}
        self._inos = itertools.count(ROOT_INODE + 1)
        self._fhs = itertools.count(1)
        self._files: dict[int, OpenFile] = {}
        self._dirs: dict[int, OpenDir] = {}

    # ---------------------------------------------------------------- nodes
    def node(self, ino: int) -> Node:
        try:
            return self._nodes[ino]
        except KeyError:
            raise NotFound(f"inode {ino} is not known") from None

    def _dir_node(self, ino: int) -> Node:
        node = self.node(ino)
        if node.kind != "dir":
            raise NotADirectory(node.path)
        return node

    def _node_for(self, parent: Node, entry: Entry) -> Node:
        """The node of `entry` under `parent`, reusing its inode while the kind holds."""
        key = (parent.ino, entry.name)
        ino = self._children.get(key)
        node = self._nodes.get(ino) if ino is not None else None
        bucket = self.namespace.bucket_of(entry.path)
        archive = ObjectVersion.of(bucket, entry.info) if entry.archive and entry.info else None
        if (
            node is None
            or node.kind != entry.kind
            or node.path != entry.path
            or node.archive != archive
            or node.codec != entry.codec
        ):
            node = Node(next(self._inos), parent.ino, entry.name, entry.kind, entry.path,
                        archive=archive, codec=entry.codec)  # fmt: skip
            self._nodes[node.ino] = node
            self._children[key] = node.ino
        if entry.codec:
            node.decoded_size = entry.decoded_size
        if entry.info is not None:
            node.info = entry.info
            node.info_at = time.monotonic()
            node.archive_mtime_ns = entry.info.mtime_ns
        return node

    def _member_node(self, parent: Node, member: Member) -> Node:
        """The node of an archive member; a new inode whenever the member differs."""
        name = member.path.rpartition("/")[2]
        key = (parent.ino, name)
        ino = self._children.get(key)
        node = self._nodes.get(ino) if ino is not None else None
        if node is None or node.member != member or node.archive != parent.archive:
            kind = "file" if member.kind == "file" else member.kind
            node = Node(next(self._inos), parent.ino, name, kind, member.path,  # type: ignore[arg-type]
                        archive=parent.archive, member=member,
                        archive_mtime_ns=parent.archive_mtime_ns)  # fmt: skip
            self._nodes[node.ino] = node
            self._children[key] = node.ino
        return node

    def _member_attributes(self, node: Node) -> Attributes:
        o = self.options
        m = node.member
        assert m is not None
        type_bits = {"dir": stat.S_IFDIR, "symlink": stat.S_IFLNK}.get(m.kind, stat.S_IFREG)
        nlink = 2 if m.kind == "dir" else 1
        return Attributes(node.ino, type_bits | m.mode, m.size, m.mtime_ns, nlink,
                          o.uid, o.gid, o.blksize, max(o.archive_ttl, o.metadata_ttl))  # fmt: skip

    def attributes(self, node: Node) -> Attributes:
        o = self.options
        if node.member is not None:
            return self._member_attributes(node)
        if node.kind == "dir" and node.archive is not None:
            mtime = node.info.mtime_ns if node.info else self.mount_time_ns
            return Attributes(node.ino, stat.S_IFDIR | 0o555, 0, mtime, 2,
                              o.uid, o.gid, o.blksize, o.metadata_ttl)  # fmt: skip
        if node.kind == "dir":
            return Attributes(
                node.ino, stat.S_IFDIR | 0o555, 0, self.mount_time_ns, 2,
                o.uid, o.gid, o.blksize, o.metadata_ttl,
            )  # fmt: skip
        info = node.info
        size = node.decoded_size if node.codec else (info.size if info else 0)
        mtime = info.mtime_ns if info else self.mount_time_ns
        return Attributes(
            node.ino, stat.S_IFREG | 0o444, size, mtime, 1,
            o.uid, o.gid, o.blksize, o.metadata_ttl,
        )  # fmt: skip

    # --------------------------------------------------------------- lookup
    async def lookup(self, parent_ino: int, name: str) -> Attributes:
        parent = self._dir_node(parent_ino)
        if name == ".":
            node = parent
        elif name == "..":
            node = self.node(parent.parent)
        elif parent.archive is not None:
            index = await self._index(parent)
            inner = f"{parent.member_path}/{name}" if parent.member_path else name
            member = index.lookup(inner)
            if member is None:
                raise NotFound(f"{parent.archive.key}:{inner}")
            node = self._member_node(parent, member)
        else:
            entry = await self.namespace.lookup(parent.path, name)
            node = self._node_for(parent, entry)
        node.lookups += 1
        return self.attributes(node)

    def forget(self, ino: int, nlookup: int) -> None:
        node = self._nodes.get(ino)
        if node is None or ino == ROOT_INODE:
            return
        node.lookups -= nlookup
        if node.lookups <= 0:
            del self._nodes[ino]
            key = (node.parent, node.name)
            if self._children.get(key) == ino:
                del self._children[key]

    async def _index(self, node: Node) -> ArchiveIndex:
        assert node.archive is not None and self.archives is not None
        return await self.archives.index(node.archive, node.archive_mtime_ns)

    async def getattr(self, ino: int) -> Attributes:
        node = self.node(ino)
        if node.archive is not None:
            return self.attributes(node)
        if node.kind == "file" and time.monotonic() - node.info_at > self.options.metadata_ttl:
            node.info = await self.namespace.object_info(node.path)
            node.info_at = time.monotonic()
        return self.attributes(node)

    def readlink(self, ino: int) -> str:
        node = self.node(ino)
        if node.member is not None and node.member.kind == "symlink":
            return node.member.link
        raise NotASymlink(node.path)

    # ----------------------------------------------------------- directories
    async def opendir(self, ino: int) -> int:
        node = self._dir_node(ino)
        fh = next(self._fhs)
        if node.archive is not None:  # possibly a million members: never all in memory
            self._dirs[fh] = OpenDir(node, index=await self._index(node))
        else:
            entries = list((await self.namespace.list_dir(node.path)).values())
            self._dirs[fh] = OpenDir(node, list(entries))
        return fh

    def readdir(self, fh: int, start: int) -> Iterator[tuple[int, str, Attributes]]:
        """Entries after `start` as (next offset, name, attributes).

        Each yielded node is only counted as looked up when the caller calls
        `remember` (the kernel may refuse an entry whose reply did not fit).
        """
        handle = self._dirs.get(fh)
        if handle is None:
            raise BadHandle(f"directory handle {fh}")
        if handle.index is not None:
            yield from self._readdir_archive(handle, start)
            return
        for index in range(start, len(handle.entries)):
            entry = handle.entries[index]
            if isinstance(entry, Member):
                node = self._member_node(handle.node, entry)
            else:
                node = self._node_for(handle.node, entry)
            yield index + 1, node.name, self.attributes(node)

    def _readdir_archive(
        self, handle: OpenDir, start: int
    ) -> Iterator[tuple[int, str, Attributes]]:
        assert handle.index is not None
        path = handle.node.member_path
        offset = start
        while True:
            if offset == 0:
                page = handle.index.children_page(path, None, _DIR_PAGE)
            elif offset in handle.names:  # the usual case: go on after the last name sent
                page = handle.index.children_page(path, handle.names[offset], _DIR_PAGE)
            else:  # the reader seeked: find the place by position
                page = handle.index.children_at(path, offset, _DIR_PAGE)
            if not page:
                return
            handle.names.clear()
            for member in page:
                node = self._member_node(handle.node, member)
                offset += 1
                handle.names[offset] = node.name
                yield offset, node.name, self.attributes(node)

    def remember(self, ino: int) -> None:
        """The kernel now holds a reference to `ino` (readdirplus entry accepted)."""
        node = self._nodes.get(ino)
        if node is not None:
            node.lookups += 1

    def releasedir(self, fh: int) -> None:
        self._dirs.pop(fh, None)

    # ----------------------------------------------------------------- files
    async def open(self, ino: int, writable: bool) -> tuple[int, bool]:
        """Open a file at its current version; returns (handle, keep kernel cache)."""
        if writable:
            raise ReadOnly("read-only filesystem")
        node = self.node(ino)
        if node.kind == "dir":
            raise IsADirectory(node.path)
        detector = self.fetcher.detector(
            self.options.read_ahead_bytes, self.options.kernel_read_ahead
        )
        if node.member is not None:
            assert node.archive is not None
            if node.member.kind != "file":
                raise NotFound(node.path)
            assert self.archives is not None
            m = node.member
            index = await self._index(node)
            content, base = self.archives.member_content(node.archive, index, m)
            fh = next(self._fhs)
            segments = sparse_segments(m) if m.codec == "sparse" else None
            self._files[fh] = OpenFile(node, content, detector, base, m.size, segments)
            return fh, True  # a member of one archive version never changes
        info = await self.namespace.object_info(node.path)
        node.info, node.info_at = info, time.monotonic()
        version: ObjectVersion = ObjectVersion.of(self.namespace.bucket_of(node.path), info)
        if node.codec:  # read the decoded stream of this version (decoded once)
            assert self.archives is not None
            version = await self.archives.decoded_version(version, node.codec)
            node.decoded_size = version.size
        keep_cache = node.last_opened == version
        if node.last_opened is not None and not keep_cache:
            log.info("%s changed (etag %s -> %s)", node.path, node.last_opened.etag, version.etag)
        node.last_opened = version
        fh = next(self._fhs)
        self._files[fh] = OpenFile(node, version, detector)
        return fh, keep_cache

    async def read(self, fh: int, off: int, size: int) -> bytes | memoryview:
        """Bytes for the kernel; possibly a view of a cached block (see BlockFetcher.read)."""
        handle = self._files.get(fh)
        if handle is None:
            raise BadHandle(f"file handle {fh}")
        if handle.size >= 0:  # a member: a window of the archive object
            size = max(0, min(size, handle.size - off))
            if size == 0:
                return b""
            if handle.segments is not None:
                return await self._read_sparse(handle, off, size)
            off += handle.base
        return await self.fetcher.read(handle.version, off, size, handle.detector, zero_copy=True)

    async def _read_sparse(self, handle: OpenFile, off: int, size: int) -> bytes:
        """Holes read as zeros; data segments come from the packed data in the archive."""
        assert handle.segments is not None
        out = bytearray(size)
        end = off + size
        for seg_off, seg_len, packed in handle.segments:
            lo, hi = max(off, seg_off), min(end, seg_off + seg_len)
            if lo >= hi:
                continue
            at = handle.base + packed + (lo - seg_off)
            out[lo - off : hi - off] = await self.fetcher.read(handle.version, at, hi - lo)
        return bytes(out)

    def release(self, fh: int) -> None:
        self._files.pop(fh, None)

    # ---------------------------------------------------------------- counts
    @property
    def open_files(self) -> int:
        return len(self._files)

    @property
    def known_inodes(self) -> int:
        return len(self._nodes)
