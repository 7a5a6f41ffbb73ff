"""Decoded frames of one image object, one at a time, as values in their real unit.

Decoding is pydicom's, with the pylibjpeg plugins the example extra installs: pylibjpeg-libjpeg
(JPEG baseline, extended and lossless, and JPEG-LS), pylibjpeg-openjpeg (JPEG 2000) and
pylibjpeg-rle (RLE, faster than pydicom's own); pydicom itself reads the uncompressed and
deflated syntaxes. They are the plugins pydicom's own project keeps, ship wheels for every
current Python on Linux, macOS and Windows, and are small (about 3 MB together), where
python-gdcm covers the same syntaxes in a 40 MB library.

A multi-frame file is read from disk one frame at a time. Monochrome frames get the modality
LUT or rescale (per frame for enhanced objects, Dose Grid Scaling for RT dose); colour frames
(RGB, the YBR family, palette colour) become luma (ITU-R BT.601 weights of R, G and B).
"""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np
import pydicom
from pydicom.dataset import Dataset
from pydicom.pixels import apply_color_lut, apply_modality_lut, iter_pixels
from pydicom.uid import DeflatedExplicitVRLittleEndian

from geometry import Frame
from headers import Image

LUMA = np.array([0.299, 0.587, 0.114])


def decoded(image: Image) -> Iterator[tuple[Frame, np.ndarray]]:
    """Each frame of `image` with its values (2-D float64), in file order."""
    if len(image.frames) == 1 or image.transfer_syntax == DeflatedExplicitVRLittleEndian:
        # One frame, or a body deflated as a whole: the object in memory is one image's worth.
        header = pydicom.dcmread(image.path)
        arrays: Iterator[np.ndarray] = (
            iter([header.pixel_array]) if len(image.frames) == 1 else iter_pixels(header)
        )
    else:
        header = Dataset()  # iter_pixels fills in the image pixel group (palettes, LUTs)
        arrays = iter_pixels(image.path, ds_out=header)
    for frame, array in zip(image.frames, arrays, strict=True):
        yield frame, values(array, header, image, frame)


def values(array: np.ndarray, header: Dataset, image: Image, frame: Frame) -> np.ndarray:
    """A decoded frame in its real unit: luma for colour, else after the modality LUT."""
    if image.photometric == "PALETTE COLOR":
        return np.dot(apply_color_lut(array, header), LUMA)
    if array.ndim == 3:
        return np.dot(array, LUMA)
    if "ModalityLUTSequence" in header:
        return apply_modality_lut(array, header).astype(np.float64)
    result = array.astype(np.float64)
    if frame.slope != 1.0:
        result *= frame.slope
    if frame.intercept:
        result += frame.intercept
    return result
