"""A synthetic CT series of any length, for measuring the example MAP and testing it at scale.

Each slice is a 512×512 CT image (16-bit, 12 bits stored, rescale intercept -1024): air,
an elliptic body of soft tissue (40 HU) and a disc of bone (700 HU) whose radius grows with
the slice's position, so every slice's mask differs and their order can be checked. Instance
numbers run against the positions, as some scanners write them. Written straight into a zip,
one slice at a time.
"""

from __future__ import annotations

import io
import zipfile
from pathlib import Path

import numpy as np
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.uid import CTImageStorage, ExplicitVRLittleEndian, generate_uid

SPACING_MM = 1.25
PIXEL_MM = 0.7
BONE_STORED = 1024 + 700
TISSUE_STORED = 1024 + 40


def bone_radius(index: int, slices: int, size: int) -> float:
    """The bone disc's radius (pixels) on slice `index` (0 is the lowest position)."""
    return size * (0.05 + 0.15 * index / max(slices - 1, 1))


def write_zip(target: Path, slices: int, size: int = 512, folder: str = "study/CT") -> Path:
    """Write a series of `slices` slices into the zip `target` (stored, not deflated)."""
    y, x = np.mgrid[:size, :size]
    centre = size / 2
    body = (((x - centre) / (size * 0.42)) ** 2 + ((y - centre) / (size * 0.33)) ** 2) <= 1
    distance2 = (x - centre) ** 2 + (y - centre) ** 2
    noise = np.random.default_rng(7).integers(0, 16, size=(size, size), dtype=np.uint16)
    study, series, frame_of_reference = generate_uid(), generate_uid(), generate_uid()
    target.parent.mkdir(parents=True, exist_ok=True)
    with zipfile.ZipFile(target, "w", compression=zipfile.ZIP_STORED) as zf:
        for index in range(slices):
            pixels = np.where(body, TISSUE_STORED, 0).astype(np.uint16)
            pixels[distance2 <= bone_radius(index, slices, size) ** 2] = BONE_STORED
            pixels += np.roll(noise, index, axis=0)
            ds = _slice(size, index, slices, study, series, frame_of_reference)
            ds.PixelData = pixels.tobytes()
            buffer = io.BytesIO()
            ds.save_as(buffer, enforce_file_format=True)
            zf.writestr(f"{folder}/slice-{index:04d}.dcm", buffer.getvalue())
    return target


def _slice(
    size: int, index: int, slices: int, study: str, series: str, frame_of_reference: str
) -> Dataset:
    ds = Dataset()
    ds.file_meta = FileMetaDataset()
    ds.file_meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds.SOPClassUID = ds.file_meta.MediaStorageSOPClassUID = CTImageStorage
    ds.SOPInstanceUID = ds.file_meta.MediaStorageSOPInstanceUID = generate_uid()
    ds.StudyInstanceUID, ds.SeriesInstanceUID = study, series
    ds.FrameOfReferenceUID = frame_of_reference
    ds.Modality = "CT"
    ds.PatientName, ds.PatientID = "Synthetic^CT", "SYNTHETIC"
    ds.InstanceNumber = slices - index  # against the positions
    ds.ImagePositionPatient = [-size * PIXEL_MM / 2, -size * PIXEL_MM / 2, index * SPACING_MM]
    ds.ImageOrientationPatient = [1, 0, 0, 0, 1, 0]
    ds.PixelSpacing = [PIXEL_MM, PIXEL_MM]
    ds.SliceThickness = SPACING_MM
    ds.Rows = ds.Columns = size
    ds.SamplesPerPixel = 1
    ds.PhotometricInterpretation = "MONOCHROME2"
    ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation = 16, 12, 11, 0
    ds.RescaleIntercept, ds.RescaleSlope = -1024, 1
    return ds
