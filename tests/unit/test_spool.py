"""The spool's promise: an appended entry survives crashes until acked, an acked one never
comes back, and no byte of bad input makes open() raise or drop silently."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
import tracemalloc
from pathlib import Path

import pytest
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import (
    RuleBasedStateMachine,
    initialize,
    invariant,
    precondition,
    rule,
)

from netscope.audit.spool import (
    FRAME_OVERHEAD_BYTES,
    Spool,
    SpoolFull,
    SpoolInUse,
    encode_frame,
)


class FakeClock:
    def __init__(self, t: float = 1_000.0) -> None:
        self.t = t

    def __call__(self) -> float:
        return self.t


def open_spool(d: Path, **kw) -> tuple[Spool, object]:
    kw.setdefault("free_disk_floor_bytes", 0)
    return Spool.open(d, **kw)


def segments(d: Path) -> list[Path]:
    return sorted(d.glob("seg-*.log"))


def keys(spool: Spool) -> list[str]:
    return [e.key for e in spool.iter_pending()]


def meta(i: int) -> dict[str, str | int]:
    return {"topic": "calls", "partition": 0, "first_offset": i, "last_offset": i, "records": 1}


# --- basics ---------------------------------------------------------------------------


def test_append_iter_ack_delete(tmp_path: Path) -> None:
    clock = FakeClock()
    spool, report = open_spool(tmp_path, clock=clock)
    assert report.clean and report.pending_entries == 0
    refs = [spool.append(f"k{i}", b"x" * 100 + bytes([i]), meta(i)) for i in range(3)]
    clock.t += 7

    entries = list(spool.iter_pending())
    assert [e.key for e in entries] == ["k0", "k1", "k2"]
    assert entries[1].payload == b"x" * 100 + bytes([1])
    assert entries[1].meta == meta(1)
    assert entries[0].appended_at == 1_000.0
    assert [e.ref for e in entries] == refs
    st_ = spool.stats()
    assert st_.pending_entries == 3 and st_.segments == 1
    assert st_.oldest_pending_age_s == 7 and not st_.full

    spool.ack(refs[1])
    spool.ack(refs[1])  # idempotent
    assert keys(spool) == ["k0", "k2"]
    spool.ack(refs[0])
    spool.ack(refs[2])
    assert keys(spool) == []
    assert segments(tmp_path) == []  # fully acked segment deleted, with its ack file
    assert list(tmp_path.glob("*.ack")) == []
    st_ = spool.stats()
    assert st_.pending_entries == 0 and st_.segments == 0 and st_.bytes == 0
    assert st_.oldest_pending_age_s is None
    # Appending after the active segment was deleted opens a new one.
    spool.append("k3", b"y", meta(3))
    assert keys(spool) == ["k3"]


def test_rotation_and_partial_ack_keeps_segment(tmp_path: Path) -> None:
    frame = len(encode_frame("k0", b"p" * 150, meta(0), 0.0))
    spool, _ = open_spool(tmp_path, segment_max_bytes=2 * frame)  # two frames per segment
    refs = [spool.append(f"k{i}", b"p" * 150, meta(i)) for i in range(6)]
    assert len(segments(tmp_path)) == 3
    spool.ack(refs[0])
    assert len(segments(tmp_path)) == 3  # refs[1] still pending in the first segment
    spool.ack(refs[1])
    assert len(segments(tmp_path)) == 2
    assert keys(spool) == ["k2", "k3", "k4", "k5"]


def test_oversized_entry_gets_its_own_segment(tmp_path: Path) -> None:
    spool, _ = open_spool(tmp_path, segment_max_bytes=100)
    spool.append("big", b"b" * 1000, meta(0))
    spool.append("small", b"s", meta(1))
    assert len(segments(tmp_path)) == 2
    assert keys(spool) == ["big", "small"]


def test_meta_must_be_str_or_int(tmp_path: Path) -> None:
    spool, _ = open_spool(tmp_path)
    with pytest.raises(TypeError):
        spool.append("k", b"", {"x": 1.5})  # type: ignore[dict-item]
    with pytest.raises(TypeError):
        spool.append("k", b"", {"x": True})
    assert keys(spool) == []


# --- recovery ---------------------------------------------------------------------------


def test_reopen_keeps_unacked_and_drops_acked(tmp_path: Path) -> None:
    spool, _ = open_spool(tmp_path, segment_max_bytes=300)
    refs = [spool.append(f"k{i}", b"z" * 100, meta(i)) for i in range(5)]
    spool.ack(refs[1])
    spool.ack(refs[4])
    spool.close()

    spool2, report = open_spool(tmp_path, segment_max_bytes=300)
    assert report.clean
    assert report.pending_entries == 3
    assert keys(spool2) == ["k0", "k2", "k3"]
    # Refs stay valid across a reopen: acking through them works.
    spool2.ack(refs[0])
    spool2.close()
    spool3, _ = open_spool(tmp_path, segment_max_bytes=300)
    assert keys(spool3) == ["k2", "k3"]


def test_torn_tail_is_truncated_and_reported(tmp_path: Path) -> None:
    spool, _ = open_spool(tmp_path)
    for i in range(3):
        spool.append(f"k{i}", b"payload-%d" % i, meta(i))
    spool.close()
    seg = segments(tmp_path)[0]
    good_size = seg.stat().st_size
    # A crash mid-append: half of a fourth frame reached the disk.
    frame = encode_frame("k3", b"payload-3", meta(3), 1.0)
    with seg.open("ab") as f:
        f.write(frame[: len(frame) // 2])

    spool2, report = open_spool(tmp_path)
    assert len(report.torn_tails) == 1
    torn = report.torn_tails[0]
    assert torn.segment == seg.name
    assert torn.offset == good_size and torn.dropped_bytes == len(frame) // 2
    assert seg.stat().st_size == good_size
    assert keys(spool2) == ["k0", "k1", "k2"]
    assert report.quarantined == []
    # New appends go after the truncated tail and survive another reopen.
    spool2.append("k4", b"x", meta(4))
    spool2.close()
    spool3, report3 = open_spool(tmp_path)
    assert report3.clean
    assert keys(spool3) == ["k0", "k1", "k2", "k4"]


def test_zero_filled_tail_is_a_torn_tail(tmp_path: Path) -> None:
    # Some filesystems extend the file size before the data blocks land.
    spool, _ = open_spool(tmp_path)
    spool.append("k0", b"a", meta(0))
    spool.close()
    seg = segments(tmp_path)[0]
    with seg.open("ab") as f:
        f.write(b"\0" * 4096)
    spool2, report = open_spool(tmp_path)
    assert [t.dropped_bytes for t in report.torn_tails] == [4096]
    assert keys(spool2) == ["k0"]


def test_flipped_byte_quarantines_and_salvages(tmp_path: Path) -> None:
    spool, _ = open_spool(tmp_path, segment_max_bytes=10_000)
    refs = [spool.append(f"k{i}", bytes([65 + i]) * 200, meta(i)) for i in range(5)]
    spool.ack(refs[0])
    spool.close()
    seg = segments(tmp_path)[0]
    data = bytearray(seg.read_bytes())
    data[refs[2].offset + 100] ^= 0xFF  # inside k2's frame, with valid frames after it
    seg.write_bytes(bytes(data))

    spool2, report = open_spool(tmp_path, segment_max_bytes=10_000)
    assert len(report.quarantined) == 1
    q = report.quarantined[0]
    assert q.segment == seg.name
    assert q.corrupt_ranges == ((refs[2].offset, refs[3].offset),)
    assert q.salvaged_entries == 3  # k1, k3, k4; k0 was acked, k2 is the corrupt frame
    assert Path(q.moved_to).parent == tmp_path / "quarantine"
    assert Path(q.moved_to).exists()
    assert Path(q.moved_to + ".ack").exists()  # kept for forensics, with the segment
    assert not seg.exists()
    assert keys(spool2) == ["k1", "k3", "k4"]
    assert spool2.stats().quarantined_segments == 1

    # Salvaged entries are ordinary entries: ack them, reopen, nothing comes back.
    for e in list(spool2.iter_pending()):
        spool2.ack(e.ref)
    spool2.close()
    spool3, report3 = open_spool(tmp_path, segment_max_bytes=10_000)
    assert report3.clean and keys(spool3) == []
    assert spool3.stats().quarantined_segments == 1  # counted across restarts


def test_corrupt_length_field_is_not_mistaken_for_a_torn_tail(tmp_path: Path) -> None:
    spool, _ = open_spool(tmp_path)
    refs = [spool.append(f"k{i}", b"q" * 50, meta(i)) for i in range(3)]
    spool.close()
    seg = segments(tmp_path)[0]
    data = bytearray(seg.read_bytes())
    data[refs[0].offset + 12] = 0x7F  # high byte of k0's payload_len: claims ~2 GB
    seg.write_bytes(bytes(data))

    spool2, report = open_spool(tmp_path)
    assert report.torn_tails == []
    assert len(report.quarantined) == 1
    assert keys(spool2) == ["k1", "k2"]


def test_segment_of_garbage_is_torn_not_raised(tmp_path: Path) -> None:
    (tmp_path / f"seg-{7:020d}.log").write_bytes(b"not a spool file at all" * 10)
    (tmp_path / f"seg-{9:020d}.ack").write_bytes(b"orphan")
    (tmp_path / "README").write_text("left alone")
    spool, report = open_spool(tmp_path)
    assert len(report.torn_tails) == 1 and report.orphan_ack_files == 1
    assert keys(spool) == []
    assert (tmp_path / "README").exists()
    ref = spool.append("k", b"v", meta(0))
    assert ref.segment > 9  # never reuses a number seen on disk


def test_quarantine_never_overwrites_an_earlier_quarantined_file(tmp_path: Path) -> None:
    spool, _ = open_spool(tmp_path)
    refs = [spool.append(f"k{i}", b"v" * 40, meta(i)) for i in range(2)]
    spool.close()
    seg = segments(tmp_path)[0]
    (tmp_path / "quarantine" / seg.name).write_bytes(b"older evidence")
    data = bytearray(seg.read_bytes())
    data[refs[0].offset + 30] ^= 0x01
    seg.write_bytes(bytes(data))

    spool2, report = open_spool(tmp_path)
    assert (tmp_path / "quarantine" / seg.name).read_bytes() == b"older evidence"
    assert Path(report.quarantined[0].moved_to).name.endswith(".1.log")
    assert spool2.stats().quarantined_segments == 2
    assert keys(spool2) == ["k1"]


def test_torn_and_corrupt_ack_records_leave_entries_pending(tmp_path: Path) -> None:
    spool, _ = open_spool(tmp_path)
    refs = [spool.append(f"k{i}", b"v", meta(i)) for i in range(3)]
    spool.ack(refs[0])
    spool.ack(refs[1])
    spool.close()
    ack = next(tmp_path.glob("*.ack"))
    data = bytearray(ack.read_bytes())
    data[-1] ^= 0x01  # k1's ack record fails its CRC
    ack.write_bytes(bytes(data) + b"\x00\x00\x05")  # plus a torn third record

    spool2, report = open_spool(tmp_path)
    assert report.bad_ack_records == 1 and report.torn_ack_bytes == 3
    # At-least-once: a damaged ack re-uploads (idempotent at the store), never loses.
    assert keys(spool2) == ["k1", "k2"]


def test_runtime_corruption_is_quarantined_not_retried_forever(tmp_path: Path) -> None:
    spool, _ = open_spool(tmp_path)
    refs = [spool.append(f"k{i}", b"r" * 64, meta(i)) for i in range(3)]
    seg = segments(tmp_path)[0]
    with seg.open("r+b") as f:  # bit rot after open
        f.seek(refs[1].offset + 40)
        f.write(b"\xff")
    first_pass = keys(spool)
    assert first_pass == ["k0"]  # the pass stops at the bad segment and quarantines it
    assert len(spool.runtime_quarantines) == 1
    assert spool.runtime_quarantines[0].salvaged_entries == 2
    assert keys(spool) == ["k0", "k2"]
    assert spool.stats().quarantined_segments == 1


# --- limits ---------------------------------------------------------------------------


def test_capacity_raises_spool_full_and_has_room_for(tmp_path: Path) -> None:
    frame = len(encode_frame("k0", b"x" * 100, meta(0), 0.0))
    spool, _ = open_spool(tmp_path, capacity_bytes=3 * frame)
    refs = [spool.append(f"k{i}", b"x" * 100, meta(0)) for i in range(3)]
    assert not spool.has_room_for(1)
    assert not spool.stats().full  # nothing refused yet
    with pytest.raises(SpoolFull) as exc:
        spool.append("k3", b"x" * 100, meta(0))
    assert "capacity_bytes" in exc.value.reason
    assert spool.stats().full
    assert keys(spool) == ["k0", "k1", "k2"]  # the refusal did not touch what was there

    for r in refs:  # draining frees the space (ack file bytes count until deletion)
        spool.ack(r)
    assert spool.has_room_for(frame - FRAME_OVERHEAD_BYTES)
    assert not spool.stats().full
    spool.append("k3", b"x" * 100, meta(0))


def test_free_disk_floor_raises_spool_full(tmp_path: Path) -> None:
    free = shutil.disk_usage(tmp_path).free
    spool, _ = Spool.open(tmp_path, free_disk_floor_bytes=free + 2**30)
    assert not spool.has_room_for(1)
    with pytest.raises(SpoolFull) as exc:
        spool.append("k", b"v", meta(0))
    assert "free_disk_floor_bytes" in exc.value.reason
    assert spool.stats().full and spool.stats().free_disk_bytes > 0


def test_iteration_streams_a_50mb_backlog(tmp_path: Path) -> None:
    chunk = 1024 * 1024
    spool, _ = open_spool(tmp_path, capacity_bytes=2**30)
    for i in range(50):
        spool.append(f"k{i}", bytes([i]) * chunk, meta(i))
    spool.close()
    spool, _ = open_spool(tmp_path, capacity_bytes=2**30)  # recovery scan streams too

    tracemalloc.start()
    try:
        seen = 0
        for entry in spool.iter_pending():
            assert entry.payload[0] == seen and len(entry.payload) == chunk
            seen += 1
            del entry
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert seen == 50
    assert peak < 3 * chunk, f"iteration peak {peak} bytes for a 50 MiB backlog"


# --- model-based: random append/ack/reopen/crash sequences ------------------------------


class SpoolMachine(RuleBasedStateMachine):
    """Model: the dict of unacked key -> payload. A crash mid-append or mid-ack writes a
    prefix of a record and reopens; the interrupted call never returned, so the model is
    unchanged by it (an interrupted ack may or may not count: the store dedups)."""

    @initialize()
    def setup(self) -> None:
        self.dir = Path(tempfile.mkdtemp(prefix="spool-hyp-"))
        self.clock = FakeClock()
        self.kw = {"segment_max_bytes": 300, "free_disk_floor_bytes": 0, "clock": self.clock}
        self.spool, _ = Spool.open(self.dir, **self.kw)
        self.unacked: dict[str, bytes] = {}
        self.acked: set[str] = set()
        self.maybe_acked: set[str] = set()
        self.refs: dict[str, object] = {}
        self.n = 0

    def teardown(self) -> None:
        self.spool.close()
        shutil.rmtree(self.dir, ignore_errors=True)

    def _reopen(self) -> None:
        self.spool.close()
        self.spool, report = Spool.open(self.dir, **self.kw)
        assert report.quarantined == []  # crashes tear tails; they never look like rot
        self.refs = {e.key: e.ref for e in self.spool.iter_pending()}

    @rule(size=st.integers(0, 200))
    def append(self, size: int) -> None:
        key = f"k{self.n}"
        payload = bytes([self.n % 256]) * size
        self.n += 1
        self.clock.t += 1
        self.refs[key] = self.spool.append(key, payload, {"n": self.n})
        self.unacked[key] = payload

    @precondition(lambda self: self.unacked)
    @rule(data=st.data())
    def ack(self, data: st.DataObject) -> None:
        key = data.draw(st.sampled_from(sorted(self.unacked)))
        self.spool.ack(self.refs[key])  # type: ignore[arg-type]
        del self.unacked[key]
        self.acked.add(key)

    @rule()
    def reopen(self) -> None:
        self._reopen()

    @rule(data=st.data(), size=st.integers(0, 200))
    def crash_mid_append(self, data: st.DataObject, size: int) -> None:
        frame = encode_frame("torn", b"t" * size, {"n": -1}, self.clock.t)
        cut = data.draw(st.integers(1, len(frame) - 1))
        segs = segments(self.dir)
        new_segment = not segs or data.draw(st.booleans())
        if new_segment:
            last = int(segs[-1].name[4:24]) if segs else 0
            target = self.dir / f"seg-{last + 1:020d}.log"
        else:
            target = segs[-1]
        self.spool.close()
        with target.open("ab") as f:
            f.write(frame[:cut])
        self._reopen()

    @precondition(lambda self: self.unacked)
    @rule(data=st.data())
    def crash_mid_ack(self, data: st.DataObject) -> None:
        key = data.draw(st.sampled_from(sorted(self.unacked)))
        ref = self.refs[key]
        self.spool.close()
        ack = self.dir / f"seg-{ref.segment:020d}.ack"  # type: ignore[attr-defined]
        with ack.open("ab") as f:
            f.write(b"\x00" * data.draw(st.integers(1, 11)))
        self._reopen()

    @invariant()
    def pending_matches_model(self) -> None:
        if not hasattr(self, "spool"):
            return
        got = {e.key: e.payload for e in self.spool.iter_pending()}
        assert got == self.unacked  # nothing lost, nothing acked resurrected, no dups
        assert self.spool.stats().pending_entries == len(self.unacked)


SpoolMachine.TestCase.settings = settings(
    max_examples=60,
    stateful_step_count=25,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow],
)
test_spool_model = SpoolMachine.TestCase


def test_a_second_process_cannot_open_a_spool_in_use(tmp_path: Path) -> None:
    """Two writers on one directory would corrupt each other's segments and acks."""
    spool, _ = open_spool(tmp_path)
    try:
        with pytest.raises(SpoolInUse) as err:
            open_spool(tmp_path)
        assert f"pid {os.getpid()}" in str(err.value)
        assert "audit.spool.path" in str(err.value)
    finally:
        spool.close()
    again, _ = open_spool(tmp_path)  # closing released it
    again.close()


def test_netscope_run_refuses_a_spool_held_by_another_process(tmp_path: Path) -> None:
    spool_dir = tmp_path / "spool"
    cfg = tmp_path / "netscope.toml"
    cfg.write_text(f"""
[kafka]
bootstrap_servers = "127.0.0.1:9"
[audit]
backend = "local"
[audit.local]
path = "{tmp_path / 'audit'}"
[audit.spool]
path = "{spool_dir}"
free_disk_floor_bytes = 0
[api]
port = 0
[upstreams.payments]
base_url = "http://127.0.0.1:9"
""")
    holder, _ = open_spool(spool_dir)
    try:
        proc = subprocess.run(
            [sys.executable, "-m", "netscope", "run", "-c", str(cfg)],
            capture_output=True, text=True, timeout=120,
        )
    finally:
        holder.close()
    assert proc.returncode == 2, proc.stderr
    assert "audit.spool.path" in proc.stderr and f"pid {os.getpid()}" in proc.stderr
