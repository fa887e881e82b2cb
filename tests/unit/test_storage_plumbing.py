"""The writer SMB and Azure upload through: one request per full chunk."""

from __future__ import annotations

from reconciler.storage.plumbing import ChunkingWriter


def test_writes_of_any_size_leave_as_full_chunks_and_one_short_last_piece() -> None:
    pieces: list[bytes] = []
    writer = ChunkingWriter(lambda view: pieces.append(bytes(view)), chunk_size=4)
    data = b"abcdefghijklmnopqrstuvw"  # 23 bytes, written as 1 + 2 + 11 + 9
    for start, end in ((0, 1), (1, 3), (3, 14), (14, 23)):
        assert writer.write(memoryview(data)[start:end]) == end - start
    assert pieces == [b"abcd", b"efgh", b"ijkl", b"mnop", b"qrst"]  # the rest waits
    writer.flush()
    writer.flush()  # nothing left: no empty request
    assert pieces[5:] == [b"uvw"]
    assert b"".join(pieces) == data
