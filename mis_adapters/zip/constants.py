"""The zip format's numbers and record layouts (APPNOTE): the one copy that the reader and the
writer share."""

from __future__ import annotations

import struct

STORED = 0
DEFLATED = 8
FLAG_ENCRYPTED = 0x0001
FLAG_DATA_DESCRIPTOR = 0x0008  # sizes and CRC follow the data; the local header has zeros
FLAG_STRONG_ENCRYPTION = 0x0040
FLAG_UTF8 = 0x0800
UNIX = 3  # "made by" system whose external attributes' high half is a st_mode
VERSION_32 = 20
VERSION_64 = 45
MAX_16 = 0xFFFF  # a 16-bit field holding this means "see the zip64 record"
MAX_32 = 0xFFFFFFFF
MAX_NAME_BYTES = MAX_16  # a name's length field is 16 bits
ZIP64_TAG = 0x0001
TIME_TAG = 0x5455

LOCAL = struct.Struct("<4sHHHHHIIIHH")  # local file header: 30 bytes
CENTRAL = struct.Struct("<4sHHHHHHIIIHHHHHII")  # central directory record: 46 bytes
END = struct.Struct("<4sHHHHIIH")  # end of central directory record
END_64 = struct.Struct("<4sQHHIIQQQQ")  # zip64 end of central directory record
END_64_LOCATOR = struct.Struct("<4sIQI")
DESCRIPTOR_32 = struct.Struct("<4sIII")
DESCRIPTOR_64 = struct.Struct("<4sIQQ")
ZIP64_LOCAL_EXTRA = struct.Struct("<HHQQ")  # sizes
ZIP64_CENTRAL_EXTRA = struct.Struct("<HHQQQ")  # sizes and offset
TIME_EXTRA = struct.Struct("<HHBl")  # modification time only

LOCAL_SIGNATURE = b"PK\x03\x04"
CENTRAL_SIGNATURE = b"PK\x01\x02"
DESCRIPTOR_SIGNATURE = b"PK\x07\x08"
END_SIGNATURE = b"PK\x05\x06"
END_64_SIGNATURE = b"PK\x06\x06"
END_64_LOCATOR_SIGNATURE = b"PK\x06\x07"
