"""Progress callbacks on bundle export and import; bundles to and from binary file objects."""

from __future__ import annotations

import io
import pathlib
import threading
from typing import Any, List, Tuple

import pytest

import syncline
from syncline import SyncEngine

from conftest import MakeReplica, todos

ROWS = 10_000  # several of the core's progress batches (one call per 4096 rows, then the last)


def fill(engine: SyncEngine, n: int = ROWS, body: int = 300) -> None:
    engine.execute(
        "WITH RECURSIVE c(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM c WHERE i < ?) "
        "INSERT INTO todos(id, title, body) SELECT i, 'title ' || i, replace(hex(zeroblob(?)), '0', 'x') FROM c",
        (n, body // 2),
    )


class Recorder:
    """A progress callback that records its calls and the thread they ran on."""

    def __init__(self) -> None:
        self.calls: List[Tuple[int, int]] = []
        self.threads: set[int] = set()

    def __call__(self, done: int, total: int) -> None:
        self.calls.append((done, total))
        self.threads.add(threading.get_ident())

    def check(self, rows: int) -> None:
        assert len(self.calls) >= 2, f"expected intermediate calls, got {self.calls}"
        dones = [d for d, _ in self.calls]
        assert dones == sorted(dones), f"done went backwards: {dones}"
        assert all(t == rows for _, t in self.calls), self.calls
        assert self.calls[-1] == (rows, rows)
        assert self.threads == {threading.get_ident()}, "the callback ran on another thread"


def temp_files(folder: pathlib.Path) -> List[str]:
    return sorted(p.name for p in folder.iterdir() if p.name.startswith(".syncline-"))


def test_progress_of_exports_and_imports(make_replica: MakeReplica, tmp_path: pathlib.Path) -> None:
    a = make_replica("a")
    fill(a)
    seen = Recorder()
    bundle = a.generate_bundle(progress=seen)
    assert isinstance(bundle, bytes)
    seen.check(ROWS)

    seen = Recorder()
    stats = a.generate_bundle(path=tmp_path / "a.bundle", compress=True, progress=seen)
    assert stats.rows == ROWS
    seen.check(ROWS)

    seen = Recorder()
    assert a.generate_bundle(output_path=tmp_path / "alias.bundle", progress=seen) == tmp_path / "alias.bundle"
    seen.check(ROWS)

    b = make_replica("b")
    seen = Recorder()
    assert b.import_bundle(bundle, progress=seen).rows == ROWS
    seen.check(ROWS)

    c = make_replica("c")
    seen = Recorder()
    assert c.import_bundle(tmp_path / "a.bundle", progress=seen).rows == ROWS
    seen.check(ROWS)
    assert a.state_hash() == b.state_hash() == c.state_hash()
    # memoryview and bytearray take the same way
    seen = Recorder()
    b.import_bundle(memoryview(bundle), progress=seen)
    seen.check(ROWS)


def test_progress_none_and_not_callable(make_replica: MakeReplica) -> None:
    a = make_replica("a")
    b = make_replica("b")
    fill(a, 10)
    bundle = a.generate_bundle(progress=None)
    with pytest.raises(TypeError, match="progress must be callable"):
        a.generate_bundle(progress=42)  # type: ignore[call-overload]
    before = b.state_hash()
    with pytest.raises(TypeError, match="progress must be callable"):
        b.import_bundle(bundle, progress="nope")  # type: ignore[arg-type]
    assert b.state_hash() == before and todos(b) == []


def test_an_exception_in_progress_is_raised_after_the_call(make_replica: MakeReplica, tmp_path: pathlib.Path) -> None:
    a = make_replica("a")
    fill(a)
    calls: List[Tuple[int, int]] = []

    class Stop(Exception):
        pass

    def stop(done: int, total: int) -> None:
        calls.append((done, total))
        raise Stop(f"stop at {done}")

    with pytest.raises(Stop, match="stop at 4096"):
        a.generate_bundle(progress=stop)
    assert calls == [(4096, ROWS)], "the callback was called again after it raised"

    calls.clear()
    with pytest.raises(Stop):
        a.generate_bundle(path=tmp_path / "x.bundle", progress=stop)
    assert len(calls) == 1

    # An import cannot be stopped midway (the core's progress has no way back): the exception
    # comes once it is done, and importing the bundle again is harmless.
    b = make_replica("b")
    bundle = a.generate_bundle()
    calls.clear()
    with pytest.raises(Stop):
        b.import_bundle(bundle, progress=stop)
    assert len(calls) == 1
    assert b.state_hash() == a.state_hash()
    assert b.import_bundle(bundle).applied == 0


def test_bundle_through_bytesio_in_bounded_chunks(make_replica: MakeReplica, tmp_path: pathlib.Path) -> None:
    a = make_replica("a")
    fill(a)

    class Sink(io.BytesIO):
        def __init__(self) -> None:
            super().__init__()
            self.writes: List[int] = []

        def write(self, b: Any) -> int:
            self.writes.append(len(b))
            return super().write(b)

    sink = Sink()
    seen = Recorder()
    stats = a.write_bundle_to(sink, progress=seen)
    seen.check(ROWS)
    data = sink.getvalue()
    assert stats.rows == ROWS and stats.bytes == len(data) > 3 * (1 << 20)
    assert len(sink.writes) >= 3 and max(sink.writes) <= 1 << 20, sink.writes
    assert data == a.generate_bundle()
    assert temp_files(tmp_path) == []

    class Source(io.BytesIO):
        def __init__(self, data: bytes) -> None:
            super().__init__(data)
            self.reads: List[int] = []

        def read(self, n: Any = -1) -> bytes:
            self.reads.append(n)
            return super().read(n)

    b = make_replica("b")
    source = Source(data)
    seen = Recorder()
    assert b.import_bundle_from(source, progress=seen).rows == ROWS
    seen.check(ROWS)
    assert source.reads and all(0 < n <= 1 << 20 for n in source.reads), source.reads
    assert b.state_hash() == a.state_hash()
    assert temp_files(tmp_path) == []


def test_bundle_through_real_files(make_replica: MakeReplica, tmp_path: pathlib.Path) -> None:
    a = make_replica("a")
    fill(a, 5000)
    b = make_replica("b")
    with open(tmp_path / "out.bundle", "wb") as f:
        f.write(b"prefix")  # written where the file object stands, nothing truncated
        stats = a.write_bundle_to(f, compress=True)
    raw = (tmp_path / "out.bundle").read_bytes()
    assert raw.startswith(b"prefix") and len(raw) == 6 + stats.bytes
    with open(tmp_path / "out.bundle", "rb") as f:
        assert f.read(6) == b"prefix"
        report = b.import_bundle_from(f)
    assert report.rows == 5000 and b.state_hash() == a.state_hash()
    # a delta for a known peer
    a.import_bundle(b.generate_bundle(a.site_id))  # a learns what b holds
    a.execute("UPDATE todos SET done = 1 WHERE id = 7")
    buf = io.BytesIO()
    assert a.write_bundle_to(buf, b.site_id).rows == 1
    buf.seek(0)
    assert b.import_bundle_from(buf).applied == 1
    assert temp_files(tmp_path) == []


def test_wrong_file_objects_raise_type_error_and_change_nothing(make_replica: MakeReplica, tmp_path: pathlib.Path) -> None:
    a = make_replica("a")
    b = make_replica("b")
    fill(a, 100)
    data = a.generate_bundle()
    before = b.state_hash()

    class StrReader:
        def read(self, n: int = -1) -> str:
            return "SYNCLINE"

    for wrong in (42, "a/path", data, io.StringIO(data.decode("latin-1")), StrReader(), io.BytesIO(data).getbuffer()):
        with pytest.raises(TypeError, match="binary file object"):
            b.import_bundle_from(wrong)  # type: ignore[arg-type]
    assert b.state_hash() == before and todos(b) == []

    with open(tmp_path / "text.txt", "w") as text:
        with pytest.raises(TypeError, match="binary file object"):
            a.write_bundle_to(text)  # type: ignore[arg-type]
    for wrong_sink in (42, io.StringIO(), None):
        with pytest.raises(TypeError, match="binary file object"):
            a.write_bundle_to(wrong_sink)  # type: ignore[arg-type]

    # a binary file that is no bundle: the core's typed error, nothing imported
    with pytest.raises(syncline.InvalidBundleError):
        b.import_bundle_from(io.BytesIO(b"not a bundle at all"))
    # a peer that is no site id: the core's error, before anything is written to the sink
    sink = io.BytesIO()
    with pytest.raises(syncline.InvalidArgumentError):
        a.write_bundle_to(sink, "zz")
    assert sink.getvalue() == b""
    assert b.state_hash() == before
    assert temp_files(tmp_path) == []


def test_closed_engine_streams(make_replica: MakeReplica, tmp_path: pathlib.Path) -> None:
    a = make_replica("a")
    fill(a, 10)
    data = a.generate_bundle()
    a.close()
    with pytest.raises(syncline.ClosedError):
        a.import_bundle_from(io.BytesIO(data))
    with pytest.raises(syncline.ClosedError):
        a.write_bundle_to(io.BytesIO())
    assert temp_files(tmp_path) == []
