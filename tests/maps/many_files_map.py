"""A MAP for the page's large-output test: writes many PNG images of noise, and a summary.

    many_files_map.py IMAGES BYTES_PER_IMAGE

Each image is a valid PNG of random pixels (stored without compression, so it does not
shrink in the zip either), under `images/<nnn>/`, and `summary.json` lists them as records.
"""

import json
import os
import struct
import sys
import zlib
from pathlib import Path


def png(width: int, height: int, pixels: bytes) -> bytes:
    def chunk(kind: bytes, data: bytes) -> bytes:
        body = kind + data
        return struct.pack(">I", len(data)) + body + struct.pack(">I", zlib.crc32(body))

    rows = b"".join(b"\0" + pixels[y * width * 3 : (y + 1) * width * 3] for y in range(height))
    header = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return (
        b"\x89PNG\r\n\x1a\n"
        + chunk(b"IHDR", header)
        + chunk(b"IDAT", zlib.compress(rows, 0))
        + chunk(b"IEND", b"")
    )


images, size = int(sys.argv[1]), int(sys.argv[2])
output = Path(os.environ["MONAI_OUTPUTPATH"])
side = max(1, int((size / 3) ** 0.5))
records = []
for n in range(images):
    name = f"images/{n // 100:03d}/{n:05d}.png"
    (output / name).parent.mkdir(parents=True, exist_ok=True)
    (output / name).write_bytes(png(side, side, os.urandom(side * side * 3)))
    records.append({"file": name, "width": side, "height": side})
(output / "summary.json").write_text(json.dumps({"images": records}))
print(f"wrote {images} images", flush=True)
