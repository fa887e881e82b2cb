"""The byte pipelines between sources and storage.

Backup:  source -> zstd -> framed AES-256-GCM -> SHA-256 and size -> storage
Restore: storage -> SHA-256 and size -> verify and decrypt frames -> zstd -> target

Everything streams; memory is bounded by a few frames and zstd's buffers,
whatever the data size.

Both directions keep every core busy:

* Backup: zstd compresses in its own worker threads (one per CPU, at most
  four), which take input in 8 MiB jobs while the source keeps reading;
  encryption, hashing and writing run on the calling thread between source
  reads. These C calls release the GIL.
* Restore: three threads read and hash, verify and decrypt, and decompress,
  each ahead of the next, handing the consumer plaintext through bounded
  queues while it parses and writes files.

Progress: both take an optional ``on_bytes`` callback, called with the number
of stored (encrypted) bytes each time some are written or read.
"""

from __future__ import annotations

import ctypes
import hashlib
import io
import os
import queue
import sys
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING, BinaryIO, TypeVar, cast

import zstandard

from reconciler.crypto.stream import DecryptingReader, EncryptingWriter
from reconciler.errors import IntegrityError
from reconciler.failpoints import failpoint
from reconciler.repository.objects import BackupObject
from reconciler.repository.records import StoredObject
from reconciler.streams import CHUNK_SIZE, ByteSink

if TYPE_CHECKING:
    from _typeshed import WriteableBuffer

COMPRESSION_LEVEL = 3
MAX_COMPRESSION_THREADS = 4
READ_SIZE = 4 * CHUNK_SIZE
"""What a restore thread hands to the next at a time: large, since every
hand-over between threads costs a wake-up and the GIL."""
READ_AHEAD_CHUNKS = 8
"""Chunks (of at most READ_SIZE) each restore thread may hold for the next."""
STORED_AHEAD_CHUNKS = 2
"""Chunks of stored bytes read and hashed ahead of decryption."""
SWITCH_INTERVAL = 0.0005
"""The GIL switch interval while a pipeline thread runs (Python's default is 5 ms).

A thread that makes many short GIL-releasing calls (read, hash, decrypt) waits
up to one interval to get the GIL back after each while another thread runs
Python code; at 5 ms that alone would cap it at a few hundred MB/s."""

T = TypeVar("T")
BytesCallback = Callable[[int], None]
"""Told the number of stored bytes just written or read (for progress)."""


_M_TRIM_THRESHOLD = -1
_M_MMAP_THRESHOLD = -3
_libc: ctypes.CDLL | None = None
_malloc_tuned = False


def _tune_malloc() -> None:
    """Make glibc keep and reuse freed megabyte buffers (once per process).

    The pipelines allocate and free a few megabyte-sized buffers per megabyte
    of data (file chunks, zstd output, ciphertext). By default glibc serves
    each with a fresh mmap and gives it back on free, so every buffer costs
    256 page faults and zeroed pages: a third of the kernel time of a backup.
    Below 32 MiB, allocations now come from the heap, and up to 128 MiB of
    free heap is kept while a pipeline runs; ``_release_memory`` gives it back
    when one ends (the daemon lives on between backups)."""
    global _libc, _malloc_tuned
    if _malloc_tuned or not sys.platform.startswith("linux"):
        return
    _malloc_tuned = True
    try:
        libc = ctypes.CDLL(None)
        mallopt = libc.mallopt
        libc.malloc_trim.argtypes = [ctypes.c_size_t]
    except (OSError, AttributeError):  # pragma: no cover - not glibc
        return
    mallopt.argtypes = [ctypes.c_int, ctypes.c_int]
    mallopt.restype = ctypes.c_int
    mallopt(_M_MMAP_THRESHOLD, 32 * 1024 * 1024)
    mallopt(_M_TRIM_THRESHOLD, 128 * 1024 * 1024)
    _libc = libc


def _release_memory() -> None:
    """Give the free heap the pipeline kept back to the system (glibc's malloc_trim)."""
    if _libc is not None:
        _libc.malloc_trim(0)


def compression_threads() -> int:
    """zstd worker threads: one per CPU this process may use, at most four.

    0 (compress on the calling thread) on a single CPU."""
    try:
        cpus = len(os.sched_getaffinity(0))
    except AttributeError:  # pragma: no cover - not Linux
        cpus = os.cpu_count() or 1
    return 0 if cpus < 2 else min(cpus, MAX_COMPRESSION_THREADS)


class _MeasuringSink:
    """Passes bytes to ``out`` while hashing and counting them."""

    def __init__(self, out: ByteSink, on_bytes: BytesCallback | None) -> None:
        self._out = out
        self._on_bytes = on_bytes
        self.sha256 = hashlib.sha256()
        self.size = 0

    def write(self, data: bytes) -> int:
        self.sha256.update(data)
        self.size += len(data)
        self._out.write(data)
        if self._on_bytes is not None:
            self._on_bytes(len(data))
        return len(data)


class _MeasuringSource:
    """Reads from ``source`` while hashing and counting what was read."""

    def __init__(self, source: BinaryIO, on_bytes: BytesCallback | None) -> None:
        self._source = source
        self._on_bytes = on_bytes
        self.sha256 = hashlib.sha256()
        self.size = 0

    def read(self, size: int = -1, /) -> bytes:
        data = self._source.read(size)
        self.sha256.update(data)
        self.size += len(data)
        if self._on_bytes is not None and data:
            self._on_bytes(len(data))
        return data


def store_object(
    target: BackupObject,
    data_key: bytes,
    produce: Callable[[ByteSink], T],
    on_bytes: BytesCallback | None = None,
) -> tuple[StoredObject, T]:
    """Run ``produce`` with a writer whose bytes are compressed, encrypted and stored.

    ``target`` is committed only when ``produce`` returns; on any
    exception nothing is left of it. Returns what was stored and what
    ``produce`` returned."""
    _tune_malloc()
    try:
        return _store_object(target, data_key, produce, on_bytes)
    finally:
        _release_memory()  # zstd's buffers are freed by now


def _store_object(
    target: BackupObject,
    data_key: bytes,
    produce: Callable[[ByteSink], T],
    on_bytes: BytesCallback | None,
) -> tuple[StoredObject, T]:
    with target.open_write() as out:
        sink = _MeasuringSink(out, on_bytes)
        encrypting = EncryptingWriter(sink, data_key)
        compressor = zstandard.ZstdCompressor(
            level=COMPRESSION_LEVEL, threads=compression_threads()
        )
        writer = compressor.stream_writer(
            encrypting,  # type: ignore[arg-type]  # any object with write() works
            closefd=False,
            write_return_read=True,
            # Compressed output in pieces of several frames: fewer writes, and
            # whole frames are encrypted straight from it, without a copy.
            write_size=4 * CHUNK_SIZE,
        )
        result = produce(writer)
        writer.close()  # type: ignore[no-untyped-call]
        encrypting.close()
        failpoint("object-upload")  # every byte written, the object not yet committed
    return StoredObject(target.name, sink.size, sink.sha256.hexdigest()), result


@contextmanager
def open_object(
    stored: BackupObject,
    expected: StoredObject,
    data_key: bytes,
    on_bytes: BytesCallback | None = None,
) -> Iterator[BinaryIO]:
    """A reader of an object's plaintext, checked end to end.

    When the block exits normally the rest of the object is read and verified:
    every frame authenticated, the final frame present, and the stored bytes
    matching the manifest's size and SHA-256. Raises IntegrityError naming the
    object otherwise, so a caller keeps nothing it read until the block exits."""
    _tune_malloc()
    with stored.open_read() as raw:
        measured = _MeasuringSource(raw, on_bytes)
        reader = _ReadAhead(measured, data_key, stored.label)
        try:
            yield cast(BinaryIO, reader)
            reader.read_to_end()
        finally:
            reader.stop()
            _release_memory()
    if measured.size != expected.size_bytes or measured.sha256.hexdigest() != expected.sha256:
        raise IntegrityError(
            f"{stored.label} does not match its manifest: expected {expected.size_bytes} bytes with"
            f" SHA-256 {expected.sha256[:12]}..., found {measured.size} bytes"
            f" with SHA-256 {measured.sha256.hexdigest()[:12]}..."
        )


_switch_lock = threading.Lock()
_switch_users = 0
_switch_saved = 0.005


def _switch_faster() -> None:
    """Lower the GIL switch interval while any pipeline thread runs."""
    global _switch_users, _switch_saved
    with _switch_lock:
        if _switch_users == 0:
            _switch_saved = sys.getswitchinterval()
            sys.setswitchinterval(min(_switch_saved, SWITCH_INTERVAL))
        _switch_users += 1


def _switch_back() -> None:
    global _switch_users
    with _switch_lock:
        _switch_users -= 1
        if _switch_users == 0:
            sys.setswitchinterval(_switch_saved)


@contextmanager
def tuned_for_throughput() -> Iterator[None]:
    """While the block runs: glibc keeps megabyte buffers (``_tune_malloc``) and
    the GIL switches faster (threads making short GIL-releasing calls get it
    back sooner); afterwards the switch interval and the free heap go back."""
    _tune_malloc()
    _switch_faster()
    try:
        yield
    finally:
        _switch_back()
        _release_memory()


_END = object()
"""Put in a relay's queue by its thread after the last chunk."""


class _Relay(io.RawIOBase):
    """Bytes made by ``produce`` on a thread of its own, read through a bounded queue.

    ``produce`` is given a ``put`` function that queues a chunk and returns
    False once the consumer stopped listening (then ``produce`` should return).
    An exception in ``produce`` is raised by the consumer's next ``read``;
    ``read`` returns b"" once ``produce`` returned."""

    def __init__(
        self,
        name: str,
        produce: Callable[[Callable[[bytes], bool]], None],
        depth: int = READ_AHEAD_CHUNKS,
    ) -> None:
        super().__init__()
        self._produce = produce
        self._queue: queue.Queue[object] = queue.Queue(depth)
        self._chunk = b""
        self._pos = 0
        self._done = False
        self._stopping = threading.Event()
        _switch_faster()
        self._thread = threading.Thread(target=self._run, name=name, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        try:
            self._produce(self._put)
            self._put(_END)
        except BaseException as exc:  # handed to the consumer, raised there
            self._put(exc)

    def _put(self, item: object) -> bool:
        """Queue ``item``; False when the consumer stopped listening."""
        while not self._stopping.is_set():
            try:
                self._queue.put(item, timeout=0.1)
            except queue.Full:
                continue
            return True
        return False

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: WriteableBuffer) -> int:
        chunk = self._current()
        view = memoryview(buffer).cast("B")
        n = min(len(view), len(chunk) - self._pos)
        view[:n] = memoryview(chunk)[self._pos : self._pos + n]
        self._pos += n
        return n

    def read(self, size: int | None = -1, /) -> bytes:
        """Up to ``size`` bytes (all the rest when negative); b"" at the end.
        Raises what ``produce`` raised.

        Returns a queued chunk without copying when ``size`` covers it."""
        if size is None or size < 0:
            return self.readall()
        chunk = self._current()
        start = self._pos
        if start + size >= len(chunk):
            self._pos = len(chunk)
            return chunk if start == 0 else chunk[start:]
        self._pos = start + size
        return chunk[start : start + size]

    def readall(self) -> bytes:
        parts = []
        while chunk := self.read(READ_SIZE):
            parts.append(chunk)
        return b"".join(parts)

    def _current(self) -> bytes:
        """The chunk being read, the next one when it is used up; b"" at the end."""
        if self._pos < len(self._chunk) or self._done:
            return self._chunk
        item = self._queue.get()
        if item is _END:
            self._done = True
            item = b""
        elif isinstance(item, BaseException):
            self._done = True
            self._chunk, self._pos = b"", 0
            raise item
        assert isinstance(item, bytes)
        self._chunk, self._pos = item, 0
        return item

    def read_to_end(self) -> None:
        """Read and drop the rest, so that everything is verified."""
        while self.read(READ_SIZE):
            pass

    def stop(self) -> None:
        """Stop the thread (when the consumer gave up early) and wait for it."""
        if self._stopping.is_set():
            return
        self._stopping.set()
        self._thread.join()
        _switch_back()


class _ReadAhead:
    """The plaintext of an object, made ahead of the consumer by three threads.

    One reads and hashes the stored bytes, one verifies and decrypts frames,
    one decompresses them. Each is about a third of the work (SHA-256 costs
    more than AES-GCM here), so together they keep a second core busy beside
    the thread writing files.

    Once ``read`` returns b"" everything was verified (every frame, the final
    flag, and no data after it) except the manifest's size and SHA-256, which
    the caller checks. An error in either thread is raised by the next ``read``."""

    def __init__(self, source: _MeasuringSource, data_key: bytes, key: str) -> None:
        self._key = key

        def read(put: Callable[[bytes], bool]) -> None:
            while chunk := source.read(READ_SIZE):
                if not put(chunk):
                    return

        # Stored bytes are cheap to read again from the page cache: a short queue.
        self._stored = _Relay(f"read {key}", read, depth=STORED_AHEAD_CHUNKS)
        decrypting = DecryptingReader(self._stored, data_key, key)

        def decrypt(put: Callable[[bytes], bool]) -> None:
            while frame := decrypting.read_frame():
                if not put(frame):
                    return
            self._stored.read_to_end()  # bytes after the final frame: DecryptingReader said so

        try:
            self._frames = _Relay(f"decrypt {key}", decrypt)
            self._plain = _Relay(f"decompress {key}", self._decompress)
        except BaseException:
            self.stop()
            raise

    def _decompress(self, put: Callable[[bytes], bool]) -> None:
        plain = zstandard.ZstdDecompressor().stream_reader(
            self._frames,  # type: ignore[arg-type]  # any object with read() works
            read_size=CHUNK_SIZE,
            read_across_frames=True,
            closefd=False,
        )
        try:
            while chunk := plain.read(READ_SIZE):
                if not put(chunk):
                    return
        except zstandard.ZstdError:
            raise IntegrityError(
                f"{self._key} is damaged: its compressed data is invalid"
            ) from None
        self._frames.read_to_end()  # data after the end of the zstd stream: still verified

    def read(self, size: int | None = -1, /) -> bytes:
        return self._plain.read(size)

    def readinto(self, buffer: WriteableBuffer) -> int:
        return self._plain.readinto(buffer)

    def read_to_end(self) -> None:
        self._plain.read_to_end()

    def stop(self) -> None:
        """Stop the threads and wait for them, the last stage first: each may be
        waiting for the stage before it, which still delivers."""
        for stage in ("_plain", "_frames", "_stored"):
            relay: _Relay | None = getattr(self, stage, None)
            if relay is not None:
                relay.stop()


def check_stored_object(stored: BackupObject, expected: StoredObject) -> str | None:
    """Without a key: None when the object exists with its recorded size and SHA-256,
    else a sentence saying what is wrong."""
    digest = hashlib.sha256()
    size = 0
    with stored.open_read() as raw:
        while chunk := raw.read(CHUNK_SIZE):
            digest.update(chunk)
            size += len(chunk)
    if size != expected.size_bytes:
        return f"{stored.label} has {size} bytes, its manifest records {expected.size_bytes}"
    if digest.hexdigest() != expected.sha256:
        return f"{stored.label} does not match the SHA-256 recorded in its manifest"
    return None
