"""RecordIO framing of Mesos streams: ``<decimal byte length>\\n<record>``, nothing else."""

from __future__ import annotations


def encode(record: bytes) -> bytes:
    return b"%d\n%s" % (len(record), record)


class RecordIOError(ValueError):
    pass


class Decoder:
    """Incremental decoder: feed arbitrary chunks, get whole records back.

    Chunk boundaries have nothing to do with record boundaries (proxies re-chunk), so the
    decoder keeps a buffer and a pending length between calls.
    """

    __slots__ = ("_buf", "_need", "max_record")

    def __init__(self, max_record: int = 64 * 1024 * 1024) -> None:
        self._buf = bytearray()
        self._need: int | None = None
        self.max_record = max_record

    def feed(self, chunk: bytes) -> list[bytes]:
        self._buf += chunk
        out: list[bytes] = []
        buf = self._buf
        pos = 0
        while True:
            if self._need is None:
                nl = buf.find(b"\n", pos)
                if nl < 0:
                    if len(buf) - pos > 20:
                        raise RecordIOError("record length header is too long")
                    break
                digits = bytes(buf[pos:nl])
                if not digits.isdigit():
                    raise RecordIOError(f"bad record length {digits[:20]!r}")
                n = int(digits)
                if n > self.max_record:
                    raise RecordIOError(f"record of {n} bytes exceeds {self.max_record}")
                self._need = n
                pos = nl + 1
            if len(buf) - pos < self._need:
                break
            out.append(bytes(buf[pos : pos + self._need]))
            pos += self._need
            self._need = None
        del buf[:pos]
        return out
