"""The framed AES-256-GCM object format (reconciler.crypto.stream)."""

from __future__ import annotations

import io
import os
import struct
import tracemalloc

import pytest

from reconciler.crypto.stream import (
    DEFAULT_FRAME_SIZE,
    HEADER_BYTES,
    MAGIC,
    DecryptingReader,
    EncryptingWriter,
    decrypt_all,
    encrypted_size,
)
from reconciler.errors import IntegrityError

KEY = bytes(range(32))
FRAME = 64
NAME = "backups/B1/files.enc"
TAG = 16
MiB = 1 << 20


def encrypt(data: bytes, frame_size: int = FRAME, key: bytes = KEY, piece: int = 0) -> bytes:
    """Encrypt ``data``, written in pieces of ``piece`` bytes (all at once if 0)."""
    out = io.BytesIO()
    with EncryptingWriter(out, key, frame_size) as writer:
        step = piece or max(1, len(data))
        for start in range(0, len(data), step):
            writer.write(data[start : start + step])
    return out.getvalue()


def decrypt(blob: bytes, key: bytes = KEY) -> bytes:
    return DecryptingReader(io.BytesIO(blob), key, NAME).read()


def frames_of(blob: bytes) -> tuple[bytes, list[bytes]]:
    """Split an encrypted object into its header and its frames (length field included)."""
    header, pos, frames = blob[:HEADER_BYTES], HEADER_BYTES, []
    while pos < len(blob):
        (length,) = struct.unpack(">I", blob[pos : pos + 4])
        frames.append(blob[pos : pos + 4 + length])
        pos += 4 + length
    return header, frames


def damaged(blob: bytes, match: str = "") -> str:
    """Decrypt ``blob``, expecting an IntegrityError naming the object; return its message."""
    with pytest.raises(IntegrityError) as info:
        decrypt(blob)
    message = str(info.value)
    assert message.startswith(NAME)
    assert match in message
    return message


PLAIN = os.urandom(FRAME * 3 + 17)  # four frames, the last one partial


# --- round trips ----------------------------------------------------------------------------


@pytest.mark.parametrize("size", [0, 1, FRAME - 1, FRAME, FRAME + 1, 2 * FRAME, 7 * FRAME + 5])
def test_objects_of_every_size_around_a_frame_boundary_round_trip(size: int) -> None:
    data = os.urandom(size)
    blob = encrypt(data)
    assert decrypt(blob) == data
    assert len(blob) == encrypted_size(size, FRAME)


@pytest.mark.parametrize("piece", [1, 3, FRAME - 1, FRAME + 1, 2 * FRAME + 7, 1000])
def test_odd_write_sizes_make_the_same_frames_as_one_big_write(piece: int) -> None:
    data = os.urandom(10 * FRAME + 33)
    blob = encrypt(data, piece=piece)
    assert decrypt(blob) == data
    assert len(blob) == encrypted_size(len(data), FRAME)


def test_the_default_frame_size_round_trips_a_few_megabytes() -> None:
    data = os.urandom(3 * MiB + 12345)
    blob = encrypt(data, frame_size=DEFAULT_FRAME_SIZE, piece=300_000)
    assert len(blob) == encrypted_size(len(data))
    assert decrypt(blob) == data


def test_an_empty_object_is_a_header_and_one_empty_final_frame() -> None:
    blob = encrypt(b"")
    header, frames = frames_of(blob)
    assert header.startswith(MAGIC)
    assert header[8] == 1
    assert struct.unpack(">I", header[9:13]) == (FRAME,)
    assert frames == [struct.pack(">I", TAG) + frames[0][4:]]
    assert decrypt(blob) == b""


def test_every_frame_but_the_last_holds_exactly_one_frame_of_data() -> None:
    _, frames = frames_of(encrypt(os.urandom(2 * FRAME)))
    assert [len(f) - 4 - TAG for f in frames] == [FRAME, FRAME]


def test_the_same_data_encrypts_differently_each_time() -> None:
    assert encrypt(PLAIN)[HEADER_BYTES:] != encrypt(PLAIN)[HEADER_BYTES:]


def test_the_writer_accepts_bytearray_and_memoryview_and_counts_bytes_written() -> None:
    out = io.BytesIO()
    writer = EncryptingWriter(out, KEY, FRAME)
    assert writer.bytes_written == HEADER_BYTES
    assert writer.write(bytearray(b"abc")) == 3
    assert writer.write(memoryview(PLAIN)[3:]) == len(PLAIN) - 3
    writer.close()
    writer.close()  # idempotent: no second final frame
    assert writer.bytes_written == len(out.getvalue()) == encrypted_size(len(PLAIN), FRAME)
    assert decrypt(out.getvalue()) == b"abc" + PLAIN[3:]


def test_writing_after_close_is_an_error() -> None:
    writer = EncryptingWriter(io.BytesIO(), KEY, FRAME)
    writer.close()
    with pytest.raises(ValueError):
        writer.write(b"late")


def test_an_exception_inside_the_writer_block_leaves_no_final_frame() -> None:
    out = io.BytesIO()
    with pytest.raises(RuntimeError), EncryptingWriter(out, KEY, FRAME) as writer:
        writer.write(PLAIN)
        raise RuntimeError("source failed")
    damaged(out.getvalue(), "is truncated")


@pytest.mark.parametrize("frame_size", [0, -1, (1 << 26) + 1])
def test_an_unreasonable_frame_size_is_a_programming_error(frame_size: int) -> None:
    with pytest.raises(ValueError):
        EncryptingWriter(io.BytesIO(), KEY, frame_size)


def test_a_data_key_of_the_wrong_length_is_a_programming_error() -> None:
    with pytest.raises(ValueError):
        EncryptingWriter(io.BytesIO(), KEY[:16])
    with pytest.raises(ValueError):
        DecryptingReader(io.BytesIO(), KEY[:16], NAME)


# --- reading --------------------------------------------------------------------------------


def test_the_reader_serves_small_reads_readinto_and_buffered_wrappers() -> None:
    blob = encrypt(PLAIN)
    reader = DecryptingReader(io.BytesIO(blob), KEY, NAME)
    assert reader.readable()
    first = reader.read(5)
    buffer = bytearray(100)
    n = reader.readinto(buffer)
    rest = reader.read()
    assert first + bytes(buffer[:n]) + rest == PLAIN
    assert reader.read(10) == b""
    assert io.BufferedReader(DecryptingReader(io.BytesIO(blob), KEY, NAME)).read() == PLAIN


class Trickle:
    """A source that returns at most a few bytes per read, like a slow network stream."""

    def __init__(self, data: bytes) -> None:
        self._data = io.BytesIO(data)
        self._turn = 0

    def read(self, size: int) -> bytes:
        self._turn += 1
        return self._data.read(min(size, 1 + self._turn % 7))


def test_the_reader_copes_with_a_source_that_returns_short_reads() -> None:
    assert DecryptingReader(Trickle(encrypt(PLAIN)), KEY, NAME).read() == PLAIN


def test_decrypt_all_writes_the_plaintext_to_the_sink_and_returns_its_size() -> None:
    sink = io.BytesIO()
    assert decrypt_all(io.BytesIO(encrypt(PLAIN)), KEY, NAME, sink) == len(PLAIN)
    assert sink.getvalue() == PLAIN


def test_a_reader_that_found_damage_keeps_failing() -> None:
    blob = encrypt(PLAIN)
    reader = DecryptingReader(io.BytesIO(blob[:-1]), KEY, NAME)
    with pytest.raises(IntegrityError):
        reader.read()
    with pytest.raises(IntegrityError):
        reader.read(1)


def test_reading_a_closed_reader_is_an_error() -> None:
    reader = DecryptingReader(io.BytesIO(encrypt(PLAIN)), KEY, NAME)
    reader.close()
    with pytest.raises(ValueError):
        reader.read(1)


# --- tampering ------------------------------------------------------------------------------


def test_a_flipped_bit_anywhere_in_the_object_is_detected() -> None:
    blob = encrypt(PLAIN)
    _, frames = frames_of(blob)
    assert len(frames) == 4
    # Every byte of the header, of each length field, ciphertext and tag,
    # with the flipped bit moving through all eight positions.
    for index in range(len(blob)):
        tampered = bytearray(blob)
        tampered[index] ^= 1 << (index % 8)
        with pytest.raises(IntegrityError) as info:
            decrypt(bytes(tampered))
        assert str(info.value).startswith(NAME), index


@pytest.mark.parametrize("region", ["length", "ciphertext", "tag"])
def test_a_flipped_bit_in_each_region_of_a_middle_frame_names_that_frame(region: str) -> None:
    blob = encrypt(PLAIN)
    _, frames = frames_of(blob)
    start = HEADER_BYTES + len(frames[0])  # frame 2
    offset = {"length": 3, "ciphertext": 4 + 10, "tag": len(frames[1]) - 1}[region]
    message = damaged(flip_bit(blob, start + offset), "is damaged: frame 2")
    assert f"at byte {start}" in message


def flip_bit(blob: bytes, index: int, bit: int = 0) -> bytes:
    out = bytearray(blob)
    out[index] ^= 1 << bit
    return bytes(out)


def test_a_damaged_magic_says_it_is_not_an_encrypted_object() -> None:
    damaged(flip_bit(encrypt(PLAIN), 0), "is not a backupctl encrypted object")
    damaged(b"PK\x03\x04 a zip file", "is not a backupctl encrypted object")


def test_an_unknown_format_version_is_reported() -> None:
    blob = bytearray(encrypt(PLAIN))
    blob[8] = 2
    damaged(bytes(blob), "format version 2")


def test_damage_to_the_salt_or_frame_size_fails_authentication_of_the_first_frame() -> None:
    blob = encrypt(PLAIN)
    damaged(flip_bit(blob, 12, 1), "frame 1 at byte 45 failed authentication")  # frame size
    damaged(flip_bit(blob, 30), "frame 1 at byte 45 failed authentication")  # salt


def test_a_wrong_data_key_fails_authentication_of_the_first_frame() -> None:
    with pytest.raises(IntegrityError, match=r"frame 1 .*different data key") as info:
        decrypt(encrypt(PLAIN), key=os.urandom(32))
    assert str(info.value).startswith(NAME)


def test_truncation_exactly_at_every_frame_boundary_is_detected() -> None:
    blob = encrypt(PLAIN)
    header, frames = frames_of(blob)
    for kept in range(len(frames)):
        cut = header + b"".join(frames[:kept])
        damaged(cut, "is truncated")


def test_truncation_inside_a_frame_or_the_header_is_detected() -> None:
    blob = encrypt(PLAIN)
    for length in (1, 8, HEADER_BYTES - 1, HEADER_BYTES + 2, HEADER_BYTES + 30, len(blob) - 1):
        damaged(blob[:length], "is truncated")


def test_an_empty_object_is_not_mistaken_for_an_encrypted_one() -> None:
    damaged(b"", "is empty")


def test_two_swapped_frames_are_detected() -> None:
    header, frames = frames_of(encrypt(PLAIN))
    frames[1], frames[2] = frames[2], frames[1]
    damaged(header + b"".join(frames), "frame 2 at byte")


def test_a_duplicated_frame_is_detected() -> None:
    header, frames = frames_of(encrypt(PLAIN))
    damaged(header + b"".join([frames[0], frames[0], *frames[1:]]), "frame 2")


def test_a_dropped_middle_frame_is_detected() -> None:
    header, frames = frames_of(encrypt(PLAIN))
    damaged(header + b"".join([frames[0], *frames[2:]]), "frame 2")


def test_a_frame_from_another_object_with_the_same_key_is_detected() -> None:
    header, frames = frames_of(encrypt(PLAIN))
    _, other = frames_of(encrypt(PLAIN))
    damaged(header + b"".join([frames[0], other[1], *frames[2:]]), "frame 2")


@pytest.mark.parametrize("extra", [b"\x00", b"abc", b"abcd", os.urandom(100)])
def test_trailing_bytes_after_the_final_frame_are_detected(extra: bytes) -> None:
    damaged(encrypt(PLAIN) + extra, "has data after its final frame")


def test_a_repeated_final_frame_is_detected() -> None:
    blob = encrypt(PLAIN)
    _, frames = frames_of(blob)
    damaged(blob + frames[-1], "has data after its final frame")


# --- memory ---------------------------------------------------------------------------------


class CountingSink:
    def __init__(self) -> None:
        self.size = 0

    def write(self, data: bytes) -> int:
        self.size += len(data)
        return len(data)


def test_encrypting_64_mib_in_1_mib_pieces_buffers_at_most_one_frame() -> None:
    piece = os.urandom(MiB)
    sink = CountingSink()
    tracemalloc.start()
    try:
        writer = EncryptingWriter(sink, KEY)
        for _ in range(64):
            writer.write(piece)
            assert writer.buffered <= DEFAULT_FRAME_SIZE
        writer.close()
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert peak < 8 * MiB
    assert sink.size == encrypted_size(64 * MiB)


def test_decrypting_64_mib_holds_only_about_two_frames() -> None:
    stored = io.BytesIO()
    with EncryptingWriter(stored, KEY) as writer:
        piece = os.urandom(MiB)
        for _ in range(64):
            writer.write(piece)
    stored.seek(0)
    sink = CountingSink()
    tracemalloc.start()
    try:
        decrypt_all(stored, KEY, NAME, sink)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert peak < 8 * MiB
    assert sink.size == 64 * MiB
