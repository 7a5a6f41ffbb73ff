"""A study holding one file of each transfer syntax and each kind of object a PACS exports.

Two sources, nothing downloaded: files that pydicom's wheel ships (read from its folder, never
through its on-demand downloader), and files made here from pixel arrays this module knows,
encoded with imagecodecs (every JPEG flavour, JPEG-LS, JPEG 2000, HTJ2K) or pydicom (RLE,
deflate, the native syntaxes), so their statistics can be checked exactly.
"""

from __future__ import annotations

import io
import shutil
import struct
import zlib
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import imagecodecs
import numpy as np
import pydicom
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.encaps import encapsulate, generate_frames
from pydicom.pixels import convert_color_space
from pydicom.sequence import Sequence
from pydicom.uid import (
    JPEG2000,
    UID,
    CTImageStorage,
    DeflatedExplicitVRLittleEndian,
    DigitalXRayImageStorageForPresentation,
    EnhancedCTImageStorage,
    EnhancedMRImageStorage,
    ExplicitVRBigEndian,
    ExplicitVRLittleEndian,
    GrayscaleSoftcopyPresentationStateStorage,
    HTJ2KLossless,
    ImplicitVRLittleEndian,
    JPEG2000Lossless,
    JPEGBaseline8Bit,
    JPEGExtended12Bit,
    JPEGLossless,
    JPEGLosslessSV1,
    JPEGLSLossless,
    JPEGLSNearLossless,
    RLELossless,
    SecondaryCaptureImageStorage,
    generate_uid,
)

PYDICOM_FILES = Path(pydicom.__file__).parent / "data" / "test_files"

# Image objects pydicom ships: what each one stands for.
SHIPPED_IMAGES = {
    "CT_small.dcm": "CT, explicit VR little endian",
    "MR_small_implicit.dcm": "MR, implicit VR little endian",
    "MR_small_bigendian.dcm": "MR, explicit VR big endian",
    "image_dfl.dcm": "deflated explicit VR little endian",
    "MR_small_RLE.dcm": "RLE lossless",
    "SC_rgb_jpeg_dcmtk.dcm": "JPEG baseline, YBR_FULL colour",
    "SC_rgb_dcmtk_+eb+cy+s2.dcm": "JPEG baseline, YBR_FULL_422 colour",
    "JPGExtended.dcm": "JPEG extended (12-bit)",
    "SC_rgb_jpeg_gdcm.dcm": "JPEG lossless SV1, RGB",
    "MR_small_jpeg_ls_lossless.dcm": "JPEG-LS lossless",
    "JPEGLSNearLossless_16.dcm": "JPEG-LS near-lossless",
    "MR_small_jp2klossless.dcm": "JPEG 2000 lossless",
    "693_J2KI.dcm": "JPEG 2000",
    "examples_jpeg2k.dcm": "JPEG 2000 colour (YBR_RCT)",
    "J2K_pixelrep_mismatch.dcm": "JPEG 2000 whose sign differs from its header",
    "rtdose.dcm": "RT dose, 15 frames",
    "SC_rgb_rle_2frame.dcm": "multi-frame RGB, RLE",
    "examples_ybr_color.dcm": "multi-frame ultrasound, JPEG YBR_FULL_422, 30 frames",
    "examples_rgb_color.dcm": "RGB, native",
    "SC_ybr_full_422_uncompressed.dcm": "YBR_FULL_422, native",
    "examples_palette.dcm": "palette colour",
    "liver_1frame.dcm": "segmentation, 1 bit",
}
# Objects pydicom ships that are not usable images, and the kind of reason each must get.
SHIPPED_OTHERS = {
    "test-SR.dcm": "not an image",  # comprehensive SR
    "reportsi.dcm": "not an image",  # basic text SR
    "rtplan.dcm": "not an image",
    "waveform_ecg.dcm": "not an image",
    "dicomdirtests/DICOMDIR": "not an image",
    "MR_truncated.dcm": "truncated",
    "rtplan_truncated.dcm": "truncated",
    "JPEG-lossy.dcm": "cannot decode",  # a JPEG stream no decoder accepts
    "badVR.dcm": "unreadable",  # Number of Frames '1A'
}

# The pixels every generated grayscale file carries (stored values, 12 bits, CT-like: air,
# soft tissue, bone after the rescale intercept of -1024).
ROWS, COLUMNS = 48, 64
INTERCEPT = -1024.0


def ct_pixels() -> np.ndarray:
    y, x = np.mgrid[:ROWS, :COLUMNS]
    pixels = np.full((ROWS, COLUMNS), 24, dtype=np.uint16)  # air, -1000 HU
    pixels[((y - 24) / 20) ** 2 + ((x - 32) / 28) ** 2 <= 1] = 1064  # tissue, 40 HU
    pixels[(y - 24) ** 2 + (x - 32) ** 2 <= 64] = 1824  # bone, 800 HU
    noise = np.random.default_rng(3).integers(0, 200, size=(ROWS, COLUMNS), dtype=np.uint16)
    return pixels + noise


def hounsfield() -> np.ndarray:
    return ct_pixels().astype(np.float64) + INTERCEPT


@dataclass(frozen=True)
class Generated:
    name: str
    syntax: UID
    lossless: bool


ENCODERS: dict[UID, Callable[[np.ndarray], bytes]] = {
    JPEGLossless: lambda a: imagecodecs.jpeg8_encode(
        a, lossless=True, predictor=6, bitspersample=12
    ),
    JPEGLosslessSV1: lambda a: imagecodecs.jpeg8_encode(
        a, lossless=True, predictor=1, bitspersample=12
    ),
    JPEGLSLossless: lambda a: imagecodecs.jpegls_encode(a),
    JPEG2000Lossless: lambda a: imagecodecs.jpeg2k_encode(
        a, level=0, codecformat="J2K", reversible=True, bitspersample=12
    ),
    HTJ2KLossless: lambda a: imagecodecs.htj2k_encode(a),
    JPEGExtended12Bit: lambda a: imagecodecs.jpeg8_encode(a, level=95, bitspersample=12),
    JPEGLSNearLossless: lambda a: imagecodecs.jpegls_encode(a, level=2),
    JPEG2000: lambda a: imagecodecs.jpeg2k_encode(
        a, level=50, codecformat="J2K", reversible=False, bitspersample=12
    ),
}
LOSSLESS = [
    ExplicitVRLittleEndian,
    ImplicitVRLittleEndian,
    ExplicitVRBigEndian,
    DeflatedExplicitVRLittleEndian,
    RLELossless,
    JPEGLossless,
    JPEGLosslessSV1,
    JPEGLSLossless,
    JPEG2000Lossless,
    HTJ2KLossless,
]
LOSSY = [JPEGExtended12Bit, JPEGLSNearLossless, JPEG2000]


def image_dataset(sop_class: UID, rows: int, columns: int, bits_stored: int) -> Dataset:
    ds = Dataset()
    ds.file_meta = FileMetaDataset()
    ds.SOPClassUID = ds.file_meta.MediaStorageSOPClassUID = sop_class
    ds.SOPInstanceUID = ds.file_meta.MediaStorageSOPInstanceUID = generate_uid()
    ds.StudyInstanceUID, ds.SeriesInstanceUID = generate_uid(), generate_uid()
    ds.PatientName, ds.PatientID = "Corpus^Test", "CORPUS"
    ds.Rows, ds.Columns = rows, columns
    ds.SamplesPerPixel = 1
    ds.PhotometricInterpretation = "MONOCHROME2"
    ds.BitsAllocated = 16 if bits_stored > 8 else 8
    ds.BitsStored, ds.HighBit, ds.PixelRepresentation = bits_stored, bits_stored - 1, 0
    return ds


def ct_file(syntax: UID) -> bytes:
    """The known CT image in `syntax`, as a DICOM file."""
    pixels = ct_pixels()
    ds = image_dataset(CTImageStorage, ROWS, COLUMNS, 12)
    ds.Modality = "CT"
    ds.RescaleIntercept, ds.RescaleSlope = INTERCEPT, 1
    ds.PixelSpacing, ds.SliceThickness = [0.5, 0.5], 2.0
    ds.ImagePositionPatient, ds.ImageOrientationPatient = [0, 0, 0], [1, 0, 0, 0, 1, 0]
    ds.file_meta.TransferSyntaxUID = syntax
    if syntax in ENCODERS:
        ds.PixelData = encapsulate([ENCODERS[syntax](pixels)])
        ds["PixelData"].VR = "OB"
    elif syntax == RLELossless:
        ds.file_meta.TransferSyntaxUID = ExplicitVRLittleEndian
        ds.PixelData = pixels.tobytes()
        ds.compress(RLELossless)
    elif syntax == ExplicitVRBigEndian:
        ds.PixelData = pixels.astype(">u2").tobytes()
    else:
        ds.PixelData = pixels.tobytes()
    return _encoded(ds)


def radiograph_file(photometric: str) -> bytes:
    """A radiograph-like image: a bright disc on a dark field as shown, stored as
    `photometric` says (MONOCHROME1 stores what is shown bright as low values)."""
    rows, columns = np.mgrid[0:ROWS, 0:COLUMNS]
    disc = (rows - ROWS / 2) ** 2 + (columns - COLUMNS / 3) ** 2 < (ROWS / 5) ** 2
    shown = np.where(disc, 3500, 400).astype(np.uint16)
    pixels = (4095 - shown if photometric == "MONOCHROME1" else shown).astype(np.uint16)
    ds = image_dataset(DigitalXRayImageStorageForPresentation, ROWS, COLUMNS, 12)
    ds.Modality = "DX"
    ds.PhotometricInterpretation = photometric
    ds.file_meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds.PixelData = pixels.tobytes()
    return _encoded(ds)


def jpeg_baseline_file() -> bytes:
    """An 8-bit grayscale image, JPEG baseline (what most viewers export)."""
    pixels = (ct_pixels() >> 4).astype(np.uint8)
    ds = image_dataset(SecondaryCaptureImageStorage, ROWS, COLUMNS, 8)
    ds.Modality = "OT"
    ds.file_meta.TransferSyntaxUID = JPEGBaseline8Bit
    ds.PixelData = encapsulate([imagecodecs.jpeg8_encode(pixels, level=95)])
    ds["PixelData"].VR = "OB"
    return _encoded(ds)


# Enhanced multi-frame objects: frames stored out of order, placed by their functional groups.
FRAME_ORDER = [3, 0, 4, 1, 2]  # the slice (along the normal) each stored frame shows
ENHANCED_SPACING = 3.0  # mm between slices; the nominal slice thickness says otherwise
ENHANCED_THICKNESS = 1.0
ENHANCED_ORIENTATION = [0, 1, 0, 0, 0, -1]  # sagittal


def enhanced_position(slice_number: int) -> list[float]:
    return [-40 + ENHANCED_SPACING * slice_number, 10.0, 20.0]


def enhanced_pixels(slice_number: int) -> np.ndarray:
    """Slice `slice_number`'s stored values: a bone disc growing with the slice."""
    y, x = np.mgrid[:ROWS, :COLUMNS]
    pixels = np.full((ROWS, COLUMNS), 1024, dtype=np.uint16)  # 0 HU at slope 1
    pixels[(y - 24) ** 2 + (x - 32) ** 2 <= (4 + 4 * slice_number) ** 2] = 2024
    return pixels


def enhanced_slope(stored_frame: int) -> float:
    """Per-frame rescale: frame 2 is stored at half scale with slope 2."""
    return 2.0 if stored_frame == 2 else 1.0


def enhanced_file(sop_class: UID, syntax: UID) -> bytes:
    ds = image_dataset(sop_class, ROWS, COLUMNS, 12)
    ds.Modality = "CT" if sop_class == EnhancedCTImageStorage else "MR"
    ds.NumberOfFrames = len(FRAME_ORDER)
    shared = Dataset()
    shared.PixelMeasuresSequence = Sequence([Dataset()])
    shared.PixelMeasuresSequence[0].PixelSpacing = [0.5, 0.5]
    shared.PixelMeasuresSequence[0].SliceThickness = ENHANCED_THICKNESS
    shared.PlaneOrientationSequence = Sequence([Dataset()])
    shared.PlaneOrientationSequence[0].ImageOrientationPatient = ENHANCED_ORIENTATION
    ds.SharedFunctionalGroupsSequence = Sequence([shared])
    frames = []
    per_frame = []
    for stored, slice_number in enumerate(FRAME_ORDER):
        item = Dataset()
        item.PlanePositionSequence = Sequence([Dataset()])
        item.PlanePositionSequence[0].ImagePositionPatient = enhanced_position(slice_number)
        item.PixelValueTransformationSequence = Sequence([Dataset()])
        transform = item.PixelValueTransformationSequence[0]
        slope = enhanced_slope(stored)
        transform.RescaleSlope, transform.RescaleIntercept = slope, -1024.0
        transform.RescaleType = "HU" if ds.Modality == "CT" else "US"
        per_frame.append(item)
        pixels = enhanced_pixels(slice_number)
        frames.append((pixels / slope).astype(np.uint16))  # stored × slope - 1024 = HU
    ds.PerFrameFunctionalGroupsSequence = Sequence(per_frame)
    ds.file_meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds.PixelData = np.stack(frames).tobytes()
    if syntax != ExplicitVRLittleEndian:
        ds.compress(syntax)
    return _encoded(ds)


# Colour: the left half red, the right half white, so luma and Otsu's split are known.
RED, WHITE = (255, 0, 0), (255, 255, 255)


def luma(rgb: tuple[int, int, int]) -> float:
    return 0.299 * rgb[0] + 0.587 * rgb[1] + 0.114 * rgb[2]


def colour_halves() -> np.ndarray:
    """Where the white half is (True) in a generated colour image."""
    white = np.zeros((ROWS, COLUMNS), dtype=bool)
    white[:, COLUMNS // 2 :] = True
    return white


def colour_file(photometric: str, syntax: UID, frames: int = 1) -> bytes:
    rgb = np.where(colour_halves()[..., None], WHITE, RED).astype(np.uint8)
    ds = image_dataset(SecondaryCaptureImageStorage, ROWS, COLUMNS, 8)
    ds.Modality = "OT"
    ds.SamplesPerPixel, ds.PlanarConfiguration = 3, 0
    ds.file_meta.TransferSyntaxUID = ExplicitVRLittleEndian
    if frames > 1:
        ds.NumberOfFrames = frames
    stored = rgb if photometric == "RGB" else convert_color_space(rgb, "RGB", "YBR_FULL")
    ds.PhotometricInterpretation = photometric
    if photometric == "YBR_FULL_422":  # two pixels share their chroma: stored as Y Y Cb Cr
        pairs = stored.reshape(ROWS, COLUMNS // 2, 2, 3)
        chroma = pairs[..., 0, 1:]
        stored_bytes = np.concatenate([pairs[..., 0, :1], pairs[..., 1, :1], chroma], axis=-1)
        ds.PixelData = stored_bytes.tobytes() * frames
    else:
        ds.PixelData = np.stack([stored] * frames).tobytes()
    if syntax != ExplicitVRLittleEndian:
        ds.compress(syntax)
    return _encoded(ds)


def palette_file() -> bytes:
    ds = image_dataset(SecondaryCaptureImageStorage, ROWS, COLUMNS, 8)
    ds.Modality = "OT"
    ds.PhotometricInterpretation = "PALETTE COLOR"
    ds.file_meta.TransferSyntaxUID = ExplicitVRLittleEndian
    for colour, entries in (("Red", (255, 255)), ("Green", (0, 255)), ("Blue", (0, 255))):
        setattr(ds, f"{colour}PaletteColorLookupTableDescriptor", [2, 0, 16])
        data = np.array(entries, dtype="<u2") * 257  # the index: 0 red, 1 white
        setattr(ds, f"{colour}PaletteColorLookupTableData", data.tobytes())
    ds.PixelData = colour_halves().astype(np.uint8).tobytes()
    return _encoded(ds)


def broken_frame_file(series_uid: str) -> bytes:
    """The enhanced CT (RLE) with its fourth frame's data cut to nothing, in `series_uid`."""
    ds = pydicom.dcmread(io.BytesIO(enhanced_file(EnhancedCTImageStorage, RLELossless)))
    frames = list(generate_frames(ds.PixelData, number_of_frames=len(FRAME_ORDER)))
    frames[3] = struct.pack("<16L", 1, 64, *[0] * 14) + b"\x00"  # one segment, one byte
    ds.PixelData = encapsulate(frames)
    ds.SeriesInstanceUID = series_uid
    return _encoded(ds)


def huge_frame_file() -> bytes:
    """A header claiming 65,535 × 65,535 frames (8 GiB of values each) over a few bytes."""
    ds = image_dataset(SecondaryCaptureImageStorage, 65535, 65535, 8)
    ds.Modality = "OT"
    ds.file_meta.TransferSyntaxUID = RLELossless
    ds.PixelData = encapsulate([struct.pack("<16L", 1, 64, *[0] * 14) + b"\x00"])
    ds["PixelData"].VR = "OB"
    return _encoded(ds)


def deflate_bomb() -> bytes:
    """A deflated object of ~300 KB whose body inflates to 272 MiB of zeros.

    After a full flush a deflate block refers to nothing before it, so one compressed
    block of 16 MiB of zeros can be repeated; a last empty block ends the stream."""
    ds = image_dataset(SecondaryCaptureImageStorage, ROWS, COLUMNS, 8)
    ds.file_meta.TransferSyntaxUID = DeflatedExplicitVRLittleEndian
    ds.PixelData = bytes(ROWS * COLUMNS)
    head = _encoded(ds)
    meta = pydicom.dcmread(io.BytesIO(head), stop_before_pixels=True).file_meta
    body_starts = 128 + 4 + 12 + int(meta.FileMetaInformationGroupLength)
    compressor = zlib.compressobj(9, zlib.DEFLATED, -zlib.MAX_WBITS)
    block = compressor.compress(bytes(2**24)) + compressor.flush(zlib.Z_FULL_FLUSH)
    ending = zlib.compressobj(9, zlib.DEFLATED, -zlib.MAX_WBITS).flush()
    return head[:body_starts] + block * 17 + ending


def presentation_state() -> bytes:
    ds = Dataset()
    ds.file_meta = FileMetaDataset()
    ds.file_meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds.SOPClassUID = ds.file_meta.MediaStorageSOPClassUID = (
        GrayscaleSoftcopyPresentationStateStorage
    )
    ds.SOPInstanceUID = ds.file_meta.MediaStorageSOPInstanceUID = generate_uid()
    ds.Modality = "PR"
    ds.StudyInstanceUID, ds.SeriesInstanceUID = generate_uid(), generate_uid()
    ds.ContentLabel = "ANNOTATION"
    ds.PresentationLUTShape = "IDENTITY"
    return _encoded(ds)


def structure_set() -> bytes:
    """pydicom's RT structure set, given the DICOM file header it lacks."""
    ds = pydicom.dcmread(PYDICOM_FILES / "rtstruct.dcm", force=True)
    ds.file_meta = FileMetaDataset()
    ds.file_meta.TransferSyntaxUID = ImplicitVRLittleEndian
    ds.file_meta.MediaStorageSOPClassUID = ds.SOPClassUID
    ds.file_meta.MediaStorageSOPInstanceUID = ds.SOPInstanceUID
    return _encoded(ds)


def _encoded(ds: Dataset) -> bytes:
    buffer = io.BytesIO()
    ds.save_as(buffer, enforce_file_format=True)
    return buffer.getvalue()


@dataclass(frozen=True)
class Corpus:
    root: Path
    images: dict[str, str]  # file (relative) -> what it stands for
    others: dict[str, str]  # file (relative) -> the kind of reason it must be skipped for
    lossless: dict[str, UID]  # generated copies of the known CT image, one per syntax
    lossy: dict[str, UID]
    enhanced: list[str]


def build(root: Path) -> Corpus:
    """Lay the corpus out under `root` as a study folder (the layout is any, as from a PACS)."""
    images = {f"shipped/{name}": what for name, what in SHIPPED_IMAGES.items()}
    others = {f"shipped/{name}": kind for name, kind in SHIPPED_OTHERS.items()}
    for name in [*SHIPPED_IMAGES, *SHIPPED_OTHERS]:
        source = PYDICOM_FILES / name
        assert source.is_file(), f"{name} is not in pydicom's wheel (it must not be downloaded)"
        target = root / "shipped" / name
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(source, target)

    generated = root / "generated"
    generated.mkdir(parents=True)
    lossless, lossy = {}, {}
    for syntax in [*LOSSLESS, *LOSSY]:
        name = f"generated/ct-{syntax.keyword or syntax}.dcm"
        (root / name).write_bytes(ct_file(syntax))
        (lossless if syntax in LOSSLESS else lossy)[name] = syntax
        images[name] = f"the known CT image, {syntax.name}"
    (generated / "jpeg-baseline.dcm").write_bytes(jpeg_baseline_file())
    images["generated/jpeg-baseline.dcm"] = "8-bit grayscale, JPEG baseline"
    lossy["generated/jpeg-baseline.dcm"] = JPEGBaseline8Bit
    enhanced = {
        "generated/enhanced-ct-rle.dcm": enhanced_file(EnhancedCTImageStorage, RLELossless),
        "generated/enhanced-mr.dcm": enhanced_file(EnhancedMRImageStorage, ExplicitVRLittleEndian),
    }
    for name, data in enhanced.items():
        (root / name).write_bytes(data)
        images[name] = "enhanced multi-frame, per-frame geometry and rescale"

    colour = {
        "generated/rgb.dcm": colour_file("RGB", ExplicitVRLittleEndian),
        "generated/ybr-full.dcm": colour_file("YBR_FULL", ExplicitVRLittleEndian),
        "generated/ybr-full-422.dcm": colour_file("YBR_FULL_422", ExplicitVRLittleEndian),
        "generated/rgb-rle-2-frames.dcm": colour_file("RGB", RLELossless, frames=2),
        "generated/palette.dcm": palette_file(),
    }
    for name, data in colour.items():
        (root / name).write_bytes(data)
        images[name] = "colour: the left half red, the right half white"

    # A file whose later frame fails to decode, in the series of a good one: it must leave
    # neither masks nor statistics behind.
    good = pydicom.dcmread(root / "generated/ct-ExplicitVRLittleEndian.dcm")
    (generated / "enhanced-ct-broken-frame.dcm").write_bytes(
        broken_frame_file(str(good.SeriesInstanceUID))
    )
    (generated / "huge-frame.dcm").write_bytes(huge_frame_file())
    (generated / "deflate-bomb.dcm").write_bytes(deflate_bomb())
    (generated / "presentation-state.dcm").write_bytes(presentation_state())
    (generated / "rtstruct.dcm").write_bytes(structure_set())
    whole = ct_file(ExplicitVRLittleEndian)
    (generated / "ct-cut-short.dcm").write_bytes(whole[: len(whole) // 2])
    (generated / "notes.txt").write_text("not DICOM\n")
    (generated / "empty.dcm").write_bytes(b"")
    others.update(
        {
            "generated/enhanced-ct-broken-frame.dcm": "cannot decode",
            "generated/huge-frame.dcm": "too large",
            "generated/deflate-bomb.dcm": "too large",
            "generated/presentation-state.dcm": "not an image",
            "generated/rtstruct.dcm": "not an image",
            "generated/ct-cut-short.dcm": "truncated",
            "generated/notes.txt": "not DICOM",
            "generated/empty.dcm": "not DICOM",
        }
    )
    return Corpus(root, images, others, lossless, lossy, list(enhanced))
