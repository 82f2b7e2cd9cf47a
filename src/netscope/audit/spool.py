"""Durable local spool for audit objects the object store could not take yet.

Why it exists: NetScope commits Kafka offsets only once the audit object covering them is
durable. While RGW is down, "durable" means this spool: ``append`` returns only after the
frame (and, for a new segment, the directory entry) is fsync'd, so the caller may commit
offsets right after it returns. Nothing here ever drops an entry on its own: a full spool
raises ``SpoolFull`` so the caller pauses consumption; corrupt bytes are quarantined, not
deleted; acked entries are remembered durably so a restart does not replay them.

Why hand-written: no well-kept Python library offers a checksummed, fsync'd,
crash-recoverable segment spool with bounded streaming replay. Vector's disk buffer is the
model; its known failure modes (corruption loops, whole-buffer replay into memory,
duplicates after restart, loss on non-retryable errors) are what this design avoids.

On-disk format, recovery rules and limits are written down in docs/spool.md.
"""

from __future__ import annotations

import errno
import fcntl
import json
import mmap
import os
import re
import shutil
import struct
import threading
import time
import zlib
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import BinaryIO

__all__ = [
    "FRAME_OVERHEAD_BYTES",
    "QuarantinedSegment",
    "RecoveryReport",
    "Spool",
    "SpoolEntry",
    "SpoolFull",
    "SpoolInUse",
    "SpoolRef",
    "SpoolStats",
    "TornTail",
    "encode_frame",
]

# --- framing ----------------------------------------------------------------------------

# Bumping the magic is how a future format change stays distinguishable from corruption.
MAGIC = b"NSA1"
# magic, key_len, meta_len, payload_len, appended_at, header_crc. The header has its own
# CRC so a flipped length field reads as corruption, never as a torn tail that would
# truncate the valid frames behind it.
_HEADER = struct.Struct(">4sIIIdI")
_TRAILER = struct.Struct(">I")  # crc32 over header + key + meta + payload
FRAME_OVERHEAD_BYTES = _HEADER.size + _TRAILER.size
MAX_KEY_BYTES = 4096
MAX_META_BYTES = 64 * 1024

# Ack record: entry offset + crc32(segment seq, offset). Binding the seq into the CRC means
# an ack file paired with the wrong segment cannot ack anything.
_ACK = struct.Struct(">QI")
_ACK_CRC_INPUT = struct.Struct(">QQ")

_SEGMENT_RE = re.compile(r"^seg-(\d{20})\.log$")
_ACK_RE = re.compile(r"^seg-(\d{20})\.ack$")
QUARANTINE_DIRNAME = "quarantine"


def _segment_name(seq: int) -> str:
    return f"seg-{seq:020d}.log"


def _ack_name(seq: int) -> str:
    return f"seg-{seq:020d}.ack"


def _ack_record(seq: int, offset: int) -> bytes:
    return _ACK.pack(offset, zlib.crc32(_ACK_CRC_INPUT.pack(seq, offset)))


def encode_frame(key: str, payload: bytes, meta: dict[str, str | int], appended_at: float) -> bytes:
    """Encode one spool entry as it is laid on disk (public so tests can forge torn writes)."""
    for name, value in meta.items():
        # bool is an int subclass but would not round-trip as the caller's type.
        if not isinstance(name, str) or isinstance(value, bool) or not isinstance(value, str | int):
            raise TypeError(f"meta must map str to str|int, got {name!r}: {value!r}")
    key_b = key.encode("utf-8")
    meta_b = json.dumps(meta, sort_keys=True, separators=(",", ":")).encode("utf-8")
    if len(key_b) > MAX_KEY_BYTES or len(meta_b) > MAX_META_BYTES:
        raise ValueError("spool key or meta too large")
    if len(payload) >= 2**32:
        raise ValueError("spool payload must be < 4 GiB")
    head = _HEADER.pack(MAGIC, len(key_b), len(meta_b), len(payload), appended_at, 0)
    head = head[:-4] + struct.pack(">I", zlib.crc32(head[:-4]))
    crc = zlib.crc32(payload, zlib.crc32(meta_b, zlib.crc32(key_b, zlib.crc32(head))))
    return b"".join((head, key_b, meta_b, payload, _TRAILER.pack(crc)))


def _frame_len_at(buf: memoryview, off: int) -> tuple[int, float] | None:
    """(frame length, appended_at) if a complete, checksum-valid frame starts at ``off``."""
    size = len(buf)
    if size - off < _HEADER.size:
        return None
    magic, klen, mlen, plen, appended_at, hcrc = _HEADER.unpack_from(buf, off)
    if magic != MAGIC or zlib.crc32(buf[off : off + _HEADER.size - 4]) != hcrc:
        return None
    if klen > MAX_KEY_BYTES or mlen > MAX_META_BYTES:
        return None
    end = off + _HEADER.size + klen + mlen + plen + _TRAILER.size
    if end > size:
        return None
    (crc,) = _TRAILER.unpack_from(buf, end - _TRAILER.size)
    if zlib.crc32(buf[off : end - _TRAILER.size]) != crc:
        return None
    return end - off, appended_at


# --- public types ---------------------------------------------------------------------


class SpoolFull(Exception):
    """The spool refuses an append; the caller must pause consumption, not drop."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


@dataclass(frozen=True, order=True)
class SpoolRef:
    """Where an entry lives: segment sequence number and byte offset of its frame."""

    segment: int
    offset: int


@dataclass(frozen=True)
class SpoolEntry:
    ref: SpoolRef
    key: str
    payload: bytes
    meta: dict[str, str | int]
    appended_at: float  # epoch seconds, from the spool's clock


@dataclass(frozen=True)
class SpoolStats:
    bytes: int  # segment + ack files on disk
    segments: int
    pending_entries: int
    oldest_pending_age_s: float | None
    free_disk_bytes: int
    quarantined_segments: int
    full: bool  # the last append was refused and there is still no room for it


@dataclass(frozen=True)
class TornTail:
    """A partial frame left by a crash mid-append; truncated, it was never acknowledged."""

    segment: str
    offset: int
    dropped_bytes: int


@dataclass(frozen=True)
class QuarantinedSegment:
    """A segment with bytes that fail their checksum, moved aside with its ack file."""

    segment: str
    corrupt_ranges: tuple[tuple[int, int], ...]  # [start, end) byte ranges
    salvaged_entries: int  # valid unacked frames copied into a fresh segment
    moved_to: str


@dataclass
class RecoveryReport:
    segments_scanned: int = 0
    pending_entries: int = 0
    deleted_segments: int = 0  # fully acked or empty, removed during recovery
    torn_tails: list[TornTail] = field(default_factory=list)
    quarantined: list[QuarantinedSegment] = field(default_factory=list)
    torn_ack_bytes: int = 0  # partial ack record at an ack file's tail (entry stays pending)
    bad_ack_records: int = 0  # ack records failing their CRC (entry stays pending)
    orphan_ack_files: int = 0

    @property
    def clean(self) -> bool:
        return not (
            self.torn_tails
            or self.quarantined
            or self.torn_ack_bytes
            or self.bad_ack_records
            or self.orphan_ack_files
        )


# --- internal state ---------------------------------------------------------------------


@dataclass
class _Segment:
    seq: int
    size: int
    ack_size: int
    pending: dict[int, float]  # offset -> appended_at, in offset order


@dataclass
class _Scan:
    frames: list[tuple[int, float]]  # every valid frame: offset, appended_at
    corrupt_ranges: list[tuple[int, int]]
    torn_at: int | None
    size: int


def _scan_segment(path: Path) -> _Scan:
    """Walk a segment's frames. Resynchronises on the magic after a bad frame, so a bad
    frame followed by a valid one is corruption and a bad region running to EOF is a tail."""
    size = path.stat().st_size
    scan = _Scan(frames=[], corrupt_ranges=[], torn_at=None, size=size)
    if size == 0:
        return scan
    with path.open("rb") as f, mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_READ) as mm:
        buf = memoryview(mm)
        try:
            off = 0
            while off < size:
                found = _frame_len_at(buf, off)
                if found is not None:
                    scan.frames.append((off, found[1]))
                    off += found[0]
                    continue
                nxt = _next_valid_frame(mm, buf, off + 1)
                if nxt is None:
                    scan.torn_at = off
                    break
                scan.corrupt_ranges.append((off, nxt))
                off = nxt
        finally:
            buf.release()
    return scan


def _next_valid_frame(mm: mmap.mmap, buf: memoryview, start: int) -> int | None:
    while True:
        pos = mm.find(MAGIC, start)
        if pos < 0:
            return None
        if _frame_len_at(buf, pos) is not None:
            return pos
        start = pos + 1


def _read_frame(f: BinaryIO, seq: int, offset: int) -> SpoolEntry | None:
    """Read and verify one frame; None if it fails its checksum. Reads the payload once,
    without a second copy, so iteration holds at most one payload in memory."""
    f.seek(offset)
    head = f.read(_HEADER.size)
    if len(head) != _HEADER.size:
        return None
    magic, klen, mlen, plen, appended_at, hcrc = _HEADER.unpack(head)
    if magic != MAGIC or zlib.crc32(head[:-4]) != hcrc:
        return None
    if klen > MAX_KEY_BYTES or mlen > MAX_META_BYTES:
        return None
    key_meta = f.read(klen + mlen)
    payload = f.read(plen)
    trailer = f.read(_TRAILER.size)
    if len(key_meta) != klen + mlen or len(payload) != plen or len(trailer) != _TRAILER.size:
        return None
    crc = zlib.crc32(payload, zlib.crc32(key_meta, zlib.crc32(head)))
    if crc != _TRAILER.unpack(trailer)[0]:
        return None
    try:
        key = key_meta[:klen].decode("utf-8")
        meta = json.loads(key_meta[klen:])
    except (UnicodeDecodeError, ValueError):
        return None
    return SpoolEntry(SpoolRef(seq, offset), key, payload, meta, appended_at)


def _fsync_dir(directory: Path) -> None:
    fd = os.open(directory, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _read_acks(path: Path, seq: int, report: RecoveryReport) -> set[int]:
    if not path.exists():
        return set()
    data = path.read_bytes()
    whole = len(data) - len(data) % _ACK.size
    if whole != len(data):
        # A crash mid-ack: the entry was never reported acked, so it stays pending.
        report.torn_ack_bytes += len(data) - whole
        with path.open("r+b") as f:
            f.truncate(whole)
            os.fsync(f.fileno())
    acked: set[int] = set()
    for offset, crc in _ACK.iter_unpack(data[:whole]):
        if zlib.crc32(_ACK_CRC_INPUT.pack(seq, offset)) == crc:
            acked.add(offset)
        else:
            report.bad_ack_records += 1
    return acked


# --- the spool ----------------------------------------------------------------------------

LOCK_NAME = "LOCK"


class SpoolInUse(RuntimeError):
    """Another process holds this spool directory: two writers would corrupt each other."""

    def __init__(self, directory: Path, holder: str) -> None:
        self.directory = directory
        self.holder = holder
        super().__init__(
            f"{directory} is in use by another NetScope process ({holder}); "
            "give each process its own audit.spool.path"
        )


def _lock_directory(directory: Path) -> int:
    """An exclusive flock on ``directory/LOCK``, holding our pid. The kernel drops it when the
    process dies, however it dies, so a crash never leaves a stale lock behind."""
    fd = os.open(directory / LOCK_NAME, os.O_RDWR | os.O_CREAT, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        holder = os.pread(fd, 64, 0).decode("ascii", "replace").strip()
        os.close(fd)
        raise SpoolInUse(directory, f"pid {holder}" if holder else "pid unknown") from None
    os.ftruncate(fd, 0)
    os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
    return fd



class Spool:
    """Append-only segment spool. Thread-safe: one lock guards state and writes; reads of
    already-written frames during iteration happen outside it."""

    def __init__(
        self,
        directory: Path,
        *,
        segment_max_bytes: int,
        capacity_bytes: int,
        free_disk_floor_bytes: int,
        clock: Callable[[], float],
    ) -> None:
        # Use Spool.open(): it recovers the directory before the spool is usable.
        self._dir = directory
        self._qdir = directory / QUARANTINE_DIRNAME
        self._segment_max_bytes = segment_max_bytes
        self._capacity_bytes = capacity_bytes
        self._free_disk_floor_bytes = free_disk_floor_bytes
        self._clock = clock
        self._lock = threading.Lock()
        self._segments: dict[int, _Segment] = {}  # insertion order == seq order
        self._active: _Segment | None = None
        self._active_file: BinaryIO | None = None
        self._next_seq = 1
        self._quarantined_segments = 0
        self._refused_bytes: int | None = None
        self._lock_fd: int | None = None
        self.runtime_quarantines: list[QuarantinedSegment] = []

    # -- opening and recovery --

    @classmethod
    def open(
        cls,
        directory: Path,
        *,
        segment_max_bytes: int = 8 * 2**20,
        capacity_bytes: int = 1 * 2**30,
        free_disk_floor_bytes: int = 512 * 2**20,
        clock: Callable[[], float] = time.time,
    ) -> tuple[Spool, RecoveryReport]:
        directory = Path(directory)
        directory.mkdir(parents=True, exist_ok=True)
        lock_fd = _lock_directory(directory)  # before recovery touches a single file
        (directory / QUARANTINE_DIRNAME).mkdir(exist_ok=True)
        spool = cls(
            directory,
            segment_max_bytes=segment_max_bytes,
            capacity_bytes=capacity_bytes,
            free_disk_floor_bytes=free_disk_floor_bytes,
            clock=clock,
        )
        spool._lock_fd = lock_fd
        report = RecoveryReport()
        with spool._lock:
            spool._recover(report)
        report.pending_entries = sum(len(s.pending) for s in spool._segments.values())
        return spool, report

    def _recover(self, report: RecoveryReport) -> None:
        seqs: list[int] = []
        ack_seqs: set[int] = set()
        for p in self._dir.iterdir():
            if m := _SEGMENT_RE.match(p.name):
                seqs.append(int(m.group(1)))
            elif m := _ACK_RE.match(p.name):
                ack_seqs.add(int(m.group(1)))
        quarantined = [p for p in self._qdir.iterdir() if p.name.endswith(".log")]
        self._quarantined_segments = len(quarantined)
        q_seqs = [int(m.group(1)) for p in quarantined if (m := re.search(r"(\d{20})", p.name))]
        self._next_seq = max([0, *seqs, *ack_seqs, *q_seqs]) + 1

        for seq in sorted(ack_seqs - set(seqs)):
            # Deletion removes the segment before its ack file; a crash in between leaves this.
            (self._dir / _ack_name(seq)).unlink()
            report.orphan_ack_files += 1

        corrupt: list[tuple[int, _Scan, set[int]]] = []
        for seq in sorted(seqs):
            report.segments_scanned += 1
            path = self._dir / _segment_name(seq)
            ack_path = self._dir / _ack_name(seq)
            acked = _read_acks(ack_path, seq, report)
            scan = _scan_segment(path)
            if scan.torn_at is not None:
                report.torn_tails.append(
                    TornTail(path.name, scan.torn_at, scan.size - scan.torn_at)
                )
                with path.open("r+b") as f:
                    f.truncate(scan.torn_at)
                    os.fsync(f.fileno())
                scan.size = scan.torn_at
            if scan.corrupt_ranges:
                corrupt.append((seq, scan, acked))
                continue
            pending = {off: at for off, at in scan.frames if off not in acked}
            ack_size = ack_path.stat().st_size if ack_path.exists() else 0
            seg = _Segment(seq, scan.size, ack_size, pending)
            if not pending:
                self._delete_segment_files(seq)
                report.deleted_segments += 1
                continue
            self._segments[seq] = seg
        if report.orphan_ack_files or report.deleted_segments:
            _fsync_dir(self._dir)

        for seq, scan, acked in corrupt:
            report.quarantined.append(self._quarantine(seq, scan, acked))

    def _quarantine(self, seq: int, scan: _Scan, acked: set[int]) -> QuarantinedSegment:
        """Copy the valid unacked frames into a fresh segment, then move the original aside.
        Copy-before-move: a crash in between duplicates entries (harmless, the store dedups
        by key) instead of losing them."""
        path = self._dir / _segment_name(seq)
        if self._active is not None and self._active.seq == seq:
            self._close_active()
        salvaged = 0
        with path.open("rb") as f:
            for off, _at in scan.frames:
                if off in acked:
                    continue
                entry = _read_frame(f, seq, off)
                if entry is None:  # went bad since the scan; it is in the quarantined copy
                    continue
                self._append_locked(
                    entry.key, entry.payload, entry.meta, entry.appended_at, check_room=False
                )
                salvaged += 1
        dest = self._qdir / path.name
        n = 1
        while dest.exists():
            dest = self._qdir / f"{path.stem}.{n}.log"  # still counted as a .log
            n += 1
        os.replace(path, dest)
        ack_path = self._dir / _ack_name(seq)
        if ack_path.exists():
            os.replace(ack_path, dest.with_name(dest.name + ".ack"))
        _fsync_dir(self._qdir)
        _fsync_dir(self._dir)
        self._segments.pop(seq, None)
        self._quarantined_segments += 1
        return QuarantinedSegment(path.name, tuple(scan.corrupt_ranges), salvaged, str(dest))

    # -- writing --

    def append(self, key: str, payload: bytes, meta: dict[str, str | int]) -> SpoolRef:
        """Durably add one entry. When this returns, the entry survives a crash."""
        with self._lock:
            return self._append_locked(key, payload, meta, self._clock(), check_room=True)

    def _append_locked(
        self,
        key: str,
        payload: bytes,
        meta: dict[str, str | int],
        appended_at: float,
        *,
        check_room: bool,
    ) -> SpoolRef:
        frame = encode_frame(key, payload, meta, appended_at)
        if check_room:
            reason = self._no_room_reason(len(frame))
            if reason is not None:
                self._refused_bytes = len(frame)
                raise SpoolFull(reason)
        seg = self._active
        if seg is not None and seg.size > 0 and seg.size + len(frame) > self._segment_max_bytes:
            self._close_active()
            seg = None
        if seg is None:
            seg = self._open_new_segment()
        assert self._active_file is not None
        offset = seg.size
        try:
            self._active_file.write(frame)
            self._active_file.flush()
            os.fsync(self._active_file.fileno())
        except OSError as exc:
            self._abandon_active(offset)
            if exc.errno in (errno.ENOSPC, errno.EDQUOT):
                self._refused_bytes = len(frame)
                raise SpoolFull(f"disk full while appending: {exc}") from exc
            raise
        seg.size += len(frame)
        seg.pending[offset] = appended_at
        self._refused_bytes = None
        return SpoolRef(seg.seq, offset)

    def _open_new_segment(self) -> _Segment:
        seq = self._next_seq
        self._next_seq += 1
        path = self._dir / _segment_name(seq)
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_APPEND, 0o644)
        self._active_file = os.fdopen(fd, "ab", buffering=0)
        # The new name must be durable too, or an fsync'd frame could vanish with its file.
        _fsync_dir(self._dir)
        seg = _Segment(seq, 0, 0, {})
        self._segments[seq] = seg
        self._active = seg
        return seg

    def _abandon_active(self, good_size: int) -> None:
        """After a failed write/fsync the page cache state is unknown (fsyncgate): cut the
        partial frame if we can and never write to this segment again."""
        assert self._active is not None and self._active_file is not None
        try:
            os.ftruncate(self._active_file.fileno(), good_size)
            os.fsync(self._active_file.fileno())
        except OSError:
            pass  # recovery at next open treats whatever is left as a torn tail
        seg = self._active
        self._close_active()
        if not seg.pending:
            self._delete_segment(seg.seq)

    def _close_active(self) -> None:
        if self._active_file is not None:
            self._active_file.close()
        self._active_file = None
        self._active = None

    # -- room --

    def _bytes_locked(self) -> int:
        return sum(s.size + s.ack_size for s in self._segments.values())

    def _no_room_reason(self, frame_bytes: int) -> str | None:
        used = self._bytes_locked()
        if used + frame_bytes > self._capacity_bytes:
            return (
                f"spool capacity: {used} + {frame_bytes} bytes > "
                f"capacity_bytes={self._capacity_bytes}"
            )
        free = shutil.disk_usage(self._dir).free
        if free - frame_bytes < self._free_disk_floor_bytes:
            return (
                f"free disk: {free} - {frame_bytes} bytes < "
                f"free_disk_floor_bytes={self._free_disk_floor_bytes}"
            )
        return None

    def has_room_for(self, n_bytes: int) -> bool:
        """Would an entry whose key+meta+payload total ``n_bytes`` be accepted now?"""
        with self._lock:
            return self._no_room_reason(n_bytes + FRAME_OVERHEAD_BYTES) is None

    # -- acknowledging --

    def ack(self, ref: SpoolRef) -> None:
        """Durably mark an entry uploaded. Idempotent: acking twice, or acking an entry
        whose segment is already gone, is a no-op."""
        with self._lock:
            seg = self._segments.get(ref.segment)
            if seg is None or ref.offset not in seg.pending:
                return
            path = self._dir / _ack_name(seg.seq)
            created = seg.ack_size == 0
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
            try:
                os.write(fd, _ack_record(seg.seq, ref.offset))
                os.fsync(fd)
            finally:
                os.close(fd)
            if created:
                _fsync_dir(self._dir)
            seg.ack_size += _ACK.size
            del seg.pending[ref.offset]
            if not seg.pending:
                self._delete_segment(seg.seq)

    def _delete_segment(self, seq: int) -> None:
        if self._active is not None and self._active.seq == seq:
            self._close_active()
        self._segments.pop(seq, None)
        self._delete_segment_files(seq)
        _fsync_dir(self._dir)

    def _delete_segment_files(self, seq: int) -> None:
        # Segment first: a leftover ack file is harmless (removed at open); a leftover
        # segment without its acks would replay acked entries.
        (self._dir / _segment_name(seq)).unlink(missing_ok=True)
        _fsync_dir(self._dir)
        (self._dir / _ack_name(seq)).unlink(missing_ok=True)

    # -- reading --

    def iter_pending(self) -> Iterator[SpoolEntry]:
        """Yield unacked entries oldest segment first, one payload in memory at a time.
        Entries appended while iterating may or may not be yielded in this pass; entries
        acked while iterating are not yielded."""
        with self._lock:
            seqs = list(self._segments)
        for seq in seqs:
            with self._lock:
                seg = self._segments.get(seq)
                offsets = list(seg.pending) if seg is not None else []
            if not offsets:
                continue
            try:
                f = (self._dir / _segment_name(seq)).open("rb")
            except FileNotFoundError:
                continue  # fully acked and deleted meanwhile
            with f:
                for offset in offsets:
                    with self._lock:
                        seg = self._segments.get(seq)
                        if seg is None or offset not in seg.pending:
                            continue
                    entry = _read_frame(f, seq, offset)
                    if entry is None:
                        self._quarantine_at_runtime(seq)
                        break
                    yield entry

    def _quarantine_at_runtime(self, seq: int) -> None:
        """A frame went bad after open (bit rot, outside writer): same treatment as at open,
        so a bad frame can never be retried forever."""
        with self._lock:
            seg = self._segments.get(seq)
            if seg is None:
                return
            path = self._dir / _segment_name(seq)
            scan = _scan_segment(path)
            if not scan.corrupt_ranges and scan.torn_at is not None:
                # From outside it looks like a tail, but these bytes were acknowledged to
                # the caller as durable: treat as corruption, never silently truncate.
                scan.corrupt_ranges.append((scan.torn_at, scan.size))
            valid = {off for off, _ in scan.frames}
            acked = valid - set(seg.pending)
            q = self._quarantine(seq, scan, acked)
            self.runtime_quarantines.append(q)

    # -- observing --

    def stats(self) -> SpoolStats:
        with self._lock:
            firsts = [next(iter(s.pending.values())) for s in self._segments.values() if s.pending]
            oldest = max(0.0, self._clock() - min(firsts)) if firsts else None
            refused = self._refused_bytes
            full = refused is not None and self._no_room_reason(refused) is not None
            return SpoolStats(
                bytes=self._bytes_locked(),
                segments=len(self._segments),
                pending_entries=sum(len(s.pending) for s in self._segments.values()),
                oldest_pending_age_s=oldest,
                free_disk_bytes=shutil.disk_usage(self._dir).free,
                quarantined_segments=self._quarantined_segments,
                full=full,
            )

    @property
    def directory(self) -> Path:
        return self._dir

    def close(self) -> None:
        with self._lock:
            self._close_active()
            if self._lock_fd is not None:
                os.close(self._lock_fd)  # releases the directory lock
                self._lock_fd = None

    def __enter__(self) -> Spool:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
