"""The first pass over the input: every file's header, read without its pixels.

Each file becomes an `Image` (an object with pixel data that a decoder here can read, and
the geometry of each of its frames) or a `Skipped` (why it is not used). Only the few header
values the analysis needs are kept, so a study of thousands of files costs little memory
before a single pixel is read.
"""

from __future__ import annotations

import struct
import zlib
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

import pydicom
from pydicom.dataset import Dataset
from pydicom.errors import InvalidDicomError
from pydicom.filereader import read_file_meta_info
from pydicom.pixels import get_decoder
from pydicom.pixels.utils import get_expected_length
from pydicom.uid import (
    UID,
    DeflatedExplicitVRLittleEndian,
    ExplicitVRBigEndian,
    ExplicitVRLittleEndian,
    ImplicitVRLittleEndian,
)

from geometry import Frame, frames_of

PIXEL_TAGS = {
    0x7FE00010: "PixelData",
    0x7FE00008: "FloatPixelData",
    0x7FE00009: "DoubleFloatPixelData",
}
UNDEFINED_LENGTH = 0xFFFFFFFF
# Kinds of reasons a file is skipped, as summary.json and the failure message count them.
NOT_DICOM = "not DICOM"
UNREADABLE = "unreadable"
TRUNCATED = "truncated"
NOT_AN_IMAGE = "not an image"
CANNOT_DECODE = "cannot decode"
TOO_LARGE = "too large"
# Hostile or absurd sizes are refused before they cost memory: a frame's values (float64, and
# a few temporaries) must fit well inside the MAP's 2 GiB, and a deflated object is inflated
# whole by pydicom, so its inflated size is measured (streamed) first.
MAX_FRAME_PIXELS = 2**24  # 4096 × 4096
MAX_INFLATED_BYTES = 2**28


@dataclass(frozen=True, slots=True)
class Skipped:
    file: str  # relative to the input folder
    kind: str
    detail: str

    @property
    def reason(self) -> str:
        return f"{self.kind}: {self.detail}"


@dataclass(frozen=True, slots=True)
class Image:
    """An image object: a file with pixel data, one or more frames."""

    path: Path
    file: str  # relative to the input folder
    series_uid: str
    modality: str
    sop_class: str
    transfer_syntax: UID
    rows: int
    columns: int
    photometric: str
    colour: bool  # RGB, YBR or palette: statistics are of luma
    unit: str
    frames: list[Frame]


def scan(root: Path) -> Iterator[Image | Skipped]:
    """Every file under `root` (any layout, sorted), read as a header."""
    for path in sorted(p for p in root.rglob("*") if p.is_file() and not p.is_symlink()):
        yield read(path, path.relative_to(root).as_posix())


def read(path: Path, name: str) -> Image | Skipped:
    """`path` as an image, or why it is skipped; one bad file never stops the study."""
    try:
        return _read(path, name)
    except InvalidDicomError:
        return Skipped(name, NOT_DICOM, "no DICOM file header (the 128-byte preamble and 'DICM')")
    except _Refused as refused:
        return Skipped(name, refused.kind, refused.detail)
    except Exception as exc:  # a malformed file can make pydicom raise almost anything
        return Skipped(name, UNREADABLE, describe(exc))


class _Refused(Exception):
    def __init__(self, kind: str, detail: str) -> None:
        super().__init__(detail)
        self.kind, self.detail = kind, detail


def _read(path: Path, name: str) -> Image:
    meta = read_file_meta_info(path)
    if meta.get("TransferSyntaxUID") == DeflatedExplicitVRLittleEndian:
        _refuse_deflate_bomb(path, meta)
    with open(path, "rb") as f:
        ds = pydicom.dcmread(f, stop_before_pixels=True)
        _refuse_truncated(ds)
        syntax = _transfer_syntax(ds)
        if syntax == DeflatedExplicitVRLittleEndian:
            f.seek(0)  # the body is deflated as a whole: read it (one object) to see inside
            ds = pydicom.dcmread(f)
            sizes = ((t, len(ds[t].value)) for t in PIXEL_TAGS if t in ds)
            pixels = next(((t, size, size) for t, size in sizes), None)
        else:
            pixels = _pixel_element(f, ds, path.stat().st_size)
    sop_class = UID(str(ds.get("SOPClassUID") or ds.file_meta.get("MediaStorageSOPClassUID", "")))
    if pixels is None:
        kind = sop_class.name if sop_class else "no SOP class"
        raise _Refused(NOT_AN_IMAGE, f"{kind}, no pixel data")
    return _image(path, name, ds, syntax, sop_class.name if sop_class else "", pixels)


def _image(
    path: Path,
    name: str,
    ds: Dataset,
    syntax: UID,
    sop_name: str,
    pixels: tuple[int, int, int],
) -> Image:
    try:
        decoder = get_decoder(syntax)
    except NotImplementedError:
        raise _Refused(CANNOT_DECODE, f"transfer syntax {syntax.name} is not supported") from None
    if not decoder.is_available:
        raise _Refused(
            CANNOT_DECODE,
            f"no decoder for {syntax.name} is installed (the example extra brings them)",
        )
    missing = [k for k in ("Rows", "Columns", "BitsAllocated") if k not in ds]
    if missing:
        raise _Refused(UNREADABLE, f"an image without {', '.join(missing)}")
    if int(ds.Rows) * int(ds.Columns) > MAX_FRAME_PIXELS:
        raise _Refused(
            TOO_LARGE,
            f"{ds.Rows}×{ds.Columns} frames, more than the {MAX_FRAME_PIXELS:,} pixels"
            " this example reads at once",
        )
    count = int(ds.get("NumberOfFrames") or 1)
    tag, length, available = pixels
    if count < 1:
        raise _Refused(UNREADABLE, f"Number of Frames is {count}")
    if syntax.is_encapsulated and count > available // 8:  # an item of 8 bytes or more a frame
        raise _Refused(TRUNCATED, f"{count} frames claimed in {available} bytes of pixel data")
    if length != UNDEFINED_LENGTH and not syntax.is_encapsulated:
        keyword = PIXEL_TAGS[tag]
        expected = get_expected_length(ds, "bytes") if keyword == "PixelData" else None
        if expected is not None and length < expected:
            raise _Refused(
                TRUNCATED,
                f"pixel data holds {length} of the {expected} bytes its size calls for",
            )
    photometric = str(ds.get("PhotometricInterpretation", "MONOCHROME2")).strip()
    colour = int(ds.get("SamplesPerPixel", 1)) > 1 or photometric == "PALETTE COLOR"
    modality = str(ds.get("Modality", "OT") or "OT")
    frames = frames_of(ds, count)
    return Image(
        path=path,
        file=name,
        series_uid=str(ds.get("SeriesInstanceUID", "") or "unknown-series"),
        modality=modality,
        sop_class=sop_name,
        transfer_syntax=syntax,
        rows=int(ds.Rows),
        columns=int(ds.Columns),
        photometric=photometric,
        colour=colour,
        unit=_unit(ds, modality, colour, frames),
        frames=frames,
    )


def _unit(ds: Dataset, modality: str, colour: bool, frames: list[Frame]) -> str:
    if colour:
        return "luma"
    if modality == "CT":
        return "HU"
    if modality == "RTDOSE":
        return {"GY": "Gy", "RELATIVE": "relative dose"}.get(str(ds.get("DoseUnits", "")), "dose")
    rescaled = any(f.slope != 1 or f.intercept for f in frames) or "ModalityLUTSequence" in ds
    return "rescaled value" if rescaled else "stored value"


def _transfer_syntax(ds: Dataset) -> UID:
    syntax = ds.file_meta.get("TransferSyntaxUID")
    if syntax:
        return UID(str(syntax))
    implicit, little = ds.original_encoding
    if implicit:
        return ImplicitVRLittleEndian
    return ExplicitVRLittleEndian if little else ExplicitVRBigEndian


def _refuse_deflate_bomb(path: Path, meta: Dataset) -> None:
    """Refuse a deflated object that would inflate past MAX_INFLATED_BYTES, counting the
    inflated bytes a chunk at a time without keeping them."""
    length = meta.get("FileMetaInformationGroupLength")
    if length is None:
        raise _Refused(UNREADABLE, "deflated, without File Meta Information Group Length")
    inflater = zlib.decompressobj(-zlib.MAX_WBITS)
    inflated = 0
    with open(path, "rb") as f:
        f.seek(128 + 4 + 12 + int(length))  # preamble, 'DICM', the group length element
        pending = f.read(2**20)
        while pending and not inflater.eof:
            inflated += len(inflater.decompress(pending, 2**24))
            if inflated > MAX_INFLATED_BYTES:
                raise _Refused(TOO_LARGE, f"inflates to more than {MAX_INFLATED_BYTES:,} bytes")
            pending = inflater.unconsumed_tail or f.read(2**20)


def _refuse_truncated(ds: Dataset) -> None:
    """Refuse a file that ends inside a top-level element (pydicom reads what is there)."""
    for tag in ds.keys():  # noqa: SIM118 - iterating a Dataset converts every element
        element = ds.get_item(tag)
        value = getattr(element, "value", None)
        length = getattr(element, "length", UNDEFINED_LENGTH)
        if isinstance(value, bytes) and length != UNDEFINED_LENGTH and len(value) < length:
            raise _Refused(
                TRUNCATED, f"the file ends inside element {tag} ({len(value)} of {length} bytes)"
            )


def _pixel_element(f: BinaryIO, ds: Dataset, size: int) -> tuple[int, int, int] | None:
    """The pixel data element's tag, value length and the bytes left for it in the file, where
    the header read stopped; None if the object has none. Refuses a value the file ends
    inside."""
    head = f.read(8)
    if len(head) < 8:
        return None
    little = "<" if ds.original_encoding[1] else ">"
    group, element = struct.unpack(f"{little}HH", head[:4])
    tag = group << 16 | element
    if tag not in PIXEL_TAGS:
        return None
    # Some writers switch VR encoding mid-file; the element itself says which it uses.
    if head[4:6].isalpha() and head[4:6].isupper():
        (length,) = struct.unpack(f"{little}L", f.read(4))
    else:
        (length,) = struct.unpack(f"{little}L", head[4:8])
    remaining = size - f.tell()
    if length != UNDEFINED_LENGTH and length > remaining:
        raise _Refused(
            TRUNCATED, f"the file ends inside its pixel data ({remaining} of {length} bytes)"
        )
    return tag, length, remaining


def describe(exc: BaseException) -> str:
    """One short line: the exception's kind and message (pydicom's can run to many lines)."""
    text = " ".join(str(exc).split()) or "no details"
    text = text if len(text) <= 240 else text[:237] + "..."
    return f"{type(exc).__name__}: {text}"
