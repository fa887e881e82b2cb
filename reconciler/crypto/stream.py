"""The framed AES-256-GCM format of every stored object.

Layout::

    header   magic b"BKCTLENC" | version (1 byte, 1) | frame size (4 bytes BE) | salt (32 bytes)
    frame*   ciphertext length (4 bytes BE) | AES-256-GCM ciphertext and tag

The object key is HKDF-SHA256(data key, salt, info=b"backupctl object v1"), so
every object of a backup has its own key. Each frame's 12-byte nonce is its
index (8 bytes BE), three zero bytes and a final flag (1 on the last frame);
the header is the associated data of every frame. Every frame but the last
holds exactly ``frame size`` plaintext bytes, and the last one is always
flagged final, possibly empty. Together this makes bit flips anywhere,
truncation (also exactly at a frame boundary), reordered or duplicated frames,
trailing data and a wrong key all fail authentication or a structural check.
"""

from __future__ import annotations

import io
import os
import struct
from types import TracebackType
from typing import TYPE_CHECKING

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

from reconciler.errors import IntegrityError
from reconciler.streams import ByteSink, ByteSource

if TYPE_CHECKING:
    from _typeshed import WriteableBuffer

MAGIC = b"BKCTLENC"
FORMAT_VERSION = 1
DEFAULT_FRAME_SIZE = 1 << 20
MAX_FRAME_SIZE = 1 << 26
"""Upper bound a reader accepts, so a damaged header cannot demand huge buffers."""
SALT_BYTES = 32
TAG_BYTES = 16
DATA_KEY_BYTES = 32

_HEADER = struct.Struct(">8sBI32s")
HEADER_BYTES = _HEADER.size
_LENGTH = struct.Struct(">I")
_NONCE = struct.Struct(">Q3xB")
_OBJECT_KEY_INFO = b"backupctl object v1"


def encrypted_size(plaintext_size: int, frame_size: int = DEFAULT_FRAME_SIZE) -> int:
    """Return the exact size of the encrypted form of ``plaintext_size`` bytes.

    Lets a verify without the private key check stored sizes against a manifest."""
    frames = max(1, -(-plaintext_size // frame_size))
    return HEADER_BYTES + plaintext_size + frames * (_LENGTH.size + TAG_BYTES)


def _object_key(data_key: bytes, salt: bytes) -> bytes:
    """Return the 32-byte AES key of one object."""
    hkdf = HKDF(algorithm=hashes.SHA256(), length=32, salt=salt, info=_OBJECT_KEY_INFO)
    return hkdf.derive(data_key)


def _nonce(index: int, final: bool) -> bytes:
    """Return the nonce of frame ``index`` (0-based)."""
    return _NONCE.pack(index, 1 if final else 0)


def _check_data_key(data_key: bytes) -> None:
    """Raise ValueError unless ``data_key`` has the right length (a programming error)."""
    if len(data_key) != DATA_KEY_BYTES:
        raise ValueError(f"a data key is {DATA_KEY_BYTES} bytes, not {len(data_key)}")


class EncryptingWriter:
    """Encrypts a byte stream into the framed format, writing it to ``sink``.

    Buffers at most one frame of plaintext. ``close()`` writes the final
    frame; the sink is not closed (it belongs to the caller). Used as a context
    manager, an exception inside the block abandons the stream *without* a
    final frame, so a partial object can never pass as complete."""

    def __init__(
        self, sink: ByteSink, data_key: bytes, frame_size: int = DEFAULT_FRAME_SIZE
    ) -> None:
        """Write the header to ``sink``. Raises ValueError for a bad key or frame size."""
        _check_data_key(data_key)
        if not 1 <= frame_size <= MAX_FRAME_SIZE:
            raise ValueError(f"frame size must be 1..{MAX_FRAME_SIZE}, not {frame_size}")
        salt = os.urandom(SALT_BYTES)
        self._header = _HEADER.pack(MAGIC, FORMAT_VERSION, frame_size, salt)
        self._aead = AESGCM(_object_key(data_key, salt))
        self._sink = sink
        self._frame_size = frame_size
        self._buffer = bytearray()
        self._index = 0
        self._bytes_written = 0
        self._closed = False
        self._emit(self._header)

    @property
    def bytes_written(self) -> int:
        """Return the number of encrypted bytes written so far, header included."""
        return self._bytes_written

    @property
    def buffered(self) -> int:
        """Return the number of plaintext bytes held back, at most one frame."""
        return len(self._buffer)

    def write(self, data: bytes | bytearray | memoryview) -> int:
        """Encrypt ``data``; return its length. Raises ValueError after close.

        A full frame is held back until more data arrives, because only then
        is it known not to be the final one."""
        if self._closed:
            raise ValueError("write to a closed EncryptingWriter")
        view = memoryview(data).cast("B")
        total = len(view)
        size = self._frame_size
        while view:
            if len(self._buffer) == size:
                self._seal(self._buffer, final=False)
                self._buffer.clear()
            if not self._buffer and len(view) > size:
                # Whole frames straight from the caller's memory, no copy.
                self._seal(view[:size], final=False)
                view = view[size:]
                continue
            take = size - len(self._buffer)
            self._buffer += view[:take]
            view = view[take:]
        return total

    def close(self) -> None:
        """Write the final frame (idempotent); raises what the sink raises."""
        if self._closed:
            return
        self._closed = True
        self._seal(self._buffer, final=True)
        self._buffer = bytearray()

    def abandon(self) -> None:
        """Stop without a final frame, so that what was written reads as truncated."""
        self._closed = True
        self._buffer = bytearray()

    def __enter__(self) -> EncryptingWriter:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if exc_type is None:
            self.close()
        else:
            self.abandon()

    def _seal(self, plaintext: bytes | bytearray | memoryview, final: bool) -> None:
        """Encrypt one frame and write its length and ciphertext."""
        sealed = self._aead.encrypt(_nonce(self._index, final), plaintext, self._header)
        self._index += 1
        self._emit(_LENGTH.pack(len(sealed)))
        self._emit(sealed)

    def _emit(self, data: bytes) -> None:
        self._sink.write(data)
        self._bytes_written += len(data)


class DecryptingReader(io.RawIOBase):
    """Reads and verifies the framed format from ``source``, one frame at a time.

    Memory is bounded by about two frames. Every problem with the data raises
    IntegrityError naming ``object_name``; errors of ``source`` itself pass
    through. Plaintext is returned as frames verify, so a caller must treat
    what it read as unconfirmed until a read returns end of file. The source
    is not closed (it belongs to the caller)."""

    def __init__(self, source: ByteSource, data_key: bytes, object_name: str) -> None:
        """Raises ValueError for a data key of the wrong length (a programming error)."""
        super().__init__()
        _check_data_key(data_key)
        self._source = source
        self._data_key = data_key
        self._name = object_name
        self._header = b""
        self._aead: AESGCM | None = None
        self._frame_size = 0
        self._plain = b""
        self._pos = 0
        self._index = 0
        self._offset = 0
        self._pending_length: bytes | None = None
        self._done = False
        self._error: str | None = None

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: WriteableBuffer) -> int:
        """Fill ``buffer`` with plaintext; return the count, 0 at the verified end.

        Raises IntegrityError for damaged data, ValueError when closed."""
        chunk = self._current_chunk()
        view = memoryview(buffer).cast("B")
        n = min(len(view), len(chunk))
        view[:n] = chunk[:n]
        self._pos += n
        return n

    def read(self, size: int | None = -1, /) -> bytes:
        """Return up to ``size`` plaintext bytes (all when negative); b"" at the end.

        Raises IntegrityError for damaged data, ValueError when closed."""
        if size is None or size < 0:
            return self.readall()
        chunk = self._current_chunk()
        if size >= len(chunk) == len(self._plain):
            self._pos = len(self._plain)
            return self._plain  # a whole frame: no copy
        chunk = chunk[:size]
        self._pos += len(chunk)
        return bytes(chunk)

    def readall(self) -> bytes:
        """Return all remaining plaintext. Raises IntegrityError for damaged data."""
        parts = []
        while chunk := self.read_frame():
            parts.append(chunk)
        return b"".join(parts)

    def read_frame(self) -> bytes:
        """Return the unread rest of the current frame, b"" at the verified end.

        The cheapest way to stream: whole frames are returned without copying."""
        chunk = self._current_chunk()
        self._pos += len(chunk)
        if len(chunk) == len(self._plain):
            return self._plain
        return bytes(chunk)

    def _current_chunk(self) -> memoryview:
        """Return the unread plaintext of the current frame, decrypting the next if needed.

        An empty view means the final frame was verified and nothing follows."""
        if self.closed:
            raise ValueError("read from a closed DecryptingReader")
        if self._error is not None:
            raise IntegrityError(self._error)
        while self._pos >= len(self._plain) and not self._done:
            self._next_frame()
        return memoryview(self._plain)[self._pos :]

    def _fail(self, problem: str) -> IntegrityError:
        """Return the IntegrityError for ``problem`` and remember it for later reads."""
        self._error = f"{self._name} {problem}"
        self._plain, self._pos = b"", 0
        return IntegrityError(self._error)

    def _read_header(self) -> AESGCM:
        """Parse and check the header; return the object's cipher. Raises IntegrityError."""
        header = self._read_exactly(HEADER_BYTES)
        if not header:
            raise self._fail("is empty, not a backupctl encrypted object")
        if not header.startswith(MAGIC[: len(header)]):
            raise self._fail("is not a backupctl encrypted object")
        if len(header) < HEADER_BYTES:
            raise self._fail("is truncated: its header is incomplete")
        _magic, version, frame_size, salt = _HEADER.unpack(header)
        if version != FORMAT_VERSION:
            raise self._fail(f"uses encryption format version {version}, which is not supported")
        if not 1 <= frame_size <= MAX_FRAME_SIZE:
            raise self._fail("is damaged: its header has an invalid frame size")
        self._header = header
        self._frame_size = frame_size
        self._offset = HEADER_BYTES
        return AESGCM(_object_key(self._data_key, salt))

    def _next_frame(self) -> None:
        """Read, verify and decrypt the next frame. Raises IntegrityError."""
        if self._aead is None:
            self._aead = self._read_header()
            self._pending_length = self._read_exactly(_LENGTH.size)
        number = self._index + 1  # 1-based in messages
        prefix = self._pending_length or b""
        if not prefix:
            raise self._fail("is truncated: it ends before its final frame")
        if len(prefix) < _LENGTH.size:
            raise self._fail(f"is truncated: frame {number} is incomplete")
        (length,) = _LENGTH.unpack(prefix)
        if not TAG_BYTES <= length <= self._frame_size + TAG_BYTES:
            raise self._fail(
                f"is damaged: frame {number} at byte {self._offset} has an invalid length"
            )
        sealed = self._read_exactly(length)
        if len(sealed) < length:
            raise self._fail(f"is truncated: frame {number} is incomplete")
        # Peeking at the next length field tells whether this frame should be
        # the final one; the final flag in the nonce then has to agree.
        self._pending_length = self._read_exactly(_LENGTH.size)
        at_end = not self._pending_length
        plain = self._open(self._aead, sealed, number, at_end)
        if not at_end and len(plain) != self._frame_size:
            raise self._fail(f"is damaged: frame {number} at byte {self._offset} has a wrong size")
        self._plain, self._pos = plain, 0
        self._index += 1
        self._offset += _LENGTH.size + length
        self._done = at_end

    def _open(self, aead: AESGCM, sealed: bytes, number: int, at_end: bool) -> bytes:
        """Return the plaintext of one frame; raises IntegrityError naming the problem."""
        try:
            return aead.decrypt(_nonce(self._index, at_end), sealed, self._header)
        except InvalidTag:
            pass
        # Failure path only: does the frame verify with the other final flag?
        # Then the frame is intact and the object was cut or extended.
        try:
            aead.decrypt(_nonce(self._index, not at_end), sealed, self._header)
        except InvalidTag:
            hint = ""
            if number == 1:
                hint = " (or it was encrypted with a different data key)"
            raise self._fail(
                f"is damaged: frame {number} at byte {self._offset} failed authentication{hint}"
            ) from None
        if at_end:
            raise self._fail("is truncated: it ends before its final frame")
        raise self._fail("has data after its final frame")

    def _read_exactly(self, size: int) -> bytes:
        """Return ``size`` bytes from the source, fewer only at its end."""
        data = self._source.read(size)
        if len(data) == size or not data:
            return data
        parts = [data]
        got = len(data)
        while got < size:
            more = self._source.read(size - got)
            if not more:
                break
            parts.append(more)
            got += len(more)
        return b"".join(parts)


def decrypt_all(source: ByteSource, data_key: bytes, object_name: str, sink: ByteSink) -> int:
    """Decrypt a whole object from ``source`` into ``sink``; return the plaintext size.

    Raises IntegrityError naming ``object_name`` if the object is damaged, in
    which case ``sink`` may already hold verified frames before the damage:
    treat its content as valid only once this returns."""
    reader = DecryptingReader(source, data_key, object_name)
    total = 0
    while chunk := reader.read_frame():
        sink.write(chunk)
        total += len(chunk)
    return total
