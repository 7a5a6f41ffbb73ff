"""The zip container's records, as bytes: what the writer sends around the entries' data.

Written to the format (APPNOTE), with the choices the output zip has always made: names in
UTF-8 (flag bit 11), Unix modes (made by system 3), the DOS time and an extended timestamp
(0x5455, modification time only). An entry is either plain (version 20, 32-bit fields) or
zip64 (version 45, every size and offset in the 0x0001 extra field, the fixed fields
0xFFFFFFFF). Its sizes and CRC are in the local header when known before its data is sent;
otherwise (`streamed`) they follow the data in a data descriptor (flag bit 3), 8-byte sizes
for zip64 entries.

Also CRC-32's combine: the CRC of A+B from the CRCs of A and B and B's length (zlib has it
in C, Python's zlib module does not expose it), so pieces of a file can be checksummed on
separate threads.
"""

from __future__ import annotations

import datetime
import functools

import attrs

from mis_adapters.zip.constants import (
    CENTRAL,
    CENTRAL_SIGNATURE,
    DESCRIPTOR_32,
    DESCRIPTOR_64,
    DESCRIPTOR_SIGNATURE,
    END,
    END_64,
    END_64_LOCATOR,
    END_64_LOCATOR_SIGNATURE,
    END_64_SIGNATURE,
    END_SIGNATURE,
    FLAG_DATA_DESCRIPTOR,
    FLAG_UTF8,
    LOCAL,
    LOCAL_SIGNATURE,
    MAX_16,
    MAX_32,
    TIME_EXTRA,
    TIME_TAG,
    UNIX,
    VERSION_32,
    VERSION_64,
    ZIP64_CENTRAL_EXTRA,
    ZIP64_LOCAL_EXTRA,
    ZIP64_TAG,
)

_MS_DOS_FOLDER = 0x10
# A central record at its largest besides its name: zip64 sizes and offset, and the time.
CENTRAL_MOST = CENTRAL.size + ZIP64_CENTRAL_EXTRA.size + TIME_EXTRA.size


@attrs.define
class Entry:
    """One member of the zip; `crc` and the sizes are filled in once its data is known."""

    name: bytes  # UTF-8; a folder's ends with "/"
    mode: int  # st_mode as the zip stores it (type and permission bits)
    dos_time: int
    dos_date: int
    mtime: int  # seconds since the epoch, for the extended timestamp
    method: int  # STORED or DEFLATED
    zip64: bool
    streamed: bool = False  # sizes and CRC in a data descriptor after the data
    crc: int = 0
    compressed: int = 0
    size: int = 0

    @classmethod
    def at(cls, name: bytes, mode: int, seconds: float, method: int, zip64: bool) -> Entry:
        """An entry modified `seconds` after the epoch (within 1980 .. 2038, local time)."""
        modified = datetime.datetime.fromtimestamp(seconds)
        time = (modified.second // 2) | (modified.minute << 5) | (modified.hour << 11)
        date = modified.day | (modified.month << 5) | ((modified.year - 1980) << 9)
        return cls(name, mode, time, date, int(seconds), method, zip64)

    def _flags(self) -> int:
        return FLAG_UTF8 | (FLAG_DATA_DESCRIPTOR if self.streamed else 0)

    def _version(self) -> int:
        return VERSION_64 if self.zip64 else VERSION_32

    def _time_extra(self) -> bytes:
        return TIME_EXTRA.pack(TIME_TAG, 5, 1, self.mtime)

    def local_header(self) -> bytes:
        crc, compressed, size = (
            (0, 0, 0) if self.streamed else (self.crc, self.compressed, self.size)
        )
        extra = self._time_extra()
        if self.zip64:
            extra = ZIP64_LOCAL_EXTRA.pack(ZIP64_TAG, 16, size, compressed) + extra
            compressed = size = MAX_32
        fixed = LOCAL.pack(
            LOCAL_SIGNATURE,
            self._version(),
            self._flags(),
            self.method,
            self.dos_time,
            self.dos_date,
            crc,
            compressed,
            size,
            len(self.name),
            len(extra),
        )
        return fixed + self.name + extra

    def data_descriptor(self) -> bytes:
        layout = DESCRIPTOR_64 if self.zip64 else DESCRIPTOR_32
        return layout.pack(DESCRIPTOR_SIGNATURE, self.crc, self.compressed, self.size)

    def central_header(self, offset: int) -> bytes:
        """The entry's central directory record; `offset`: where its local header starts."""
        compressed, size = self.compressed, self.size
        extra = self._time_extra()
        if self.zip64:
            extra = ZIP64_CENTRAL_EXTRA.pack(ZIP64_TAG, 24, size, compressed, offset) + extra
            compressed = size = offset = MAX_32
        folder = _MS_DOS_FOLDER if self.name.endswith(b"/") else 0
        version = self._version()
        fixed = CENTRAL.pack(
            CENTRAL_SIGNATURE,
            (UNIX << 8) | version,
            version,
            self._flags(),
            self.method,
            self.dos_time,
            self.dos_date,
            self.crc,
            compressed,
            size,
            len(self.name),
            len(extra),
            0,  # comment length
            0,  # disk number
            0,  # internal attributes
            (self.mode << 16) | folder,
            offset,
        )
        return fixed + self.name + extra


def end_of_archive(entries: int, start: int, size: int, zip64: bool) -> bytes:
    """What follows the central directory (`size` bytes from `start`, `entries` records):
    the zip64 end record and its locator when `zip64` (or when the plain fields overflow),
    then the end record."""
    if not (zip64 or entries > MAX_16 or start > MAX_32 or size > MAX_32):
        return END.pack(END_SIGNATURE, 0, 0, entries, entries, size, start, 0)
    record = END_64.pack(
        END_64_SIGNATURE, 44, VERSION_64, VERSION_64, 0, 0, entries, entries, size, start
    )
    locator = END_64_LOCATOR.pack(END_64_LOCATOR_SIGNATURE, 0, start + size, 1)
    end = END.pack(END_SIGNATURE, MAX_16, MAX_16, MAX_16, MAX_16, MAX_32, MAX_32, 0)
    return record + locator + end


# CRC-32 as polynomials over GF(2), bit-reflected as zlib keeps them: bit 31 is x^0.
_POLYNOMIAL = 0xEDB88320
_X0 = 1 << 31


def _multiply(a: int, b: int) -> int:
    """a(x)·b(x) modulo the CRC polynomial."""
    product = 0
    bit = _X0
    while a:
        if a & bit:
            product ^= b
            a ^= bit
        bit >>= 1
        b = (b >> 1) ^ _POLYNOMIAL if b & 1 else b >> 1  # b·x
    return product


@functools.lru_cache(maxsize=64)
def _shift(length: int) -> int:
    """x^(8·length) modulo the polynomial: what appending `length` bytes multiplies by."""
    result, square, exponent = _X0, _X0 >> 1, 8 * length  # 1, x
    while exponent:
        if exponent & 1:
            result = _multiply(result, square)
        square = _multiply(square, square)
        exponent >>= 1
    return result


def crc32_combine(first: int, second: int, second_length: int) -> int:
    """zlib.crc32(A + B) from zlib.crc32(A), zlib.crc32(B) and len(B)."""
    return _multiply(_shift(second_length), first) ^ second
