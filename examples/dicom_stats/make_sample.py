"""Write a sample input zip for the example MAP from the small CT and MR images pydicom ships.

    python examples/dicom_stats/make_sample.py sample-input.zip

The CT image is also written as a short synthetic series (copies with their own instance
numbers and positions), so the output has a multi-image series to summarise.
"""

from __future__ import annotations

import io
import sys
import zipfile
from pathlib import Path

import pydicom
from pydicom.data import get_testdata_file
from pydicom.uid import generate_uid


def build(target: Path, ct_slices: int = 5) -> Path:
    ct = pydicom.dcmread(get_testdata_file("CT_small.dcm"))
    mr_path = get_testdata_file("MR_small.dcm")
    series_uid = generate_uid()
    x, y, z = (float(v) for v in ct.ImagePositionPatient)
    thickness = float(ct.SliceThickness)
    target.parent.mkdir(parents=True, exist_ok=True)
    with zipfile.ZipFile(target, "w", compression=zipfile.ZIP_DEFLATED) as zf:
        for number in range(1, ct_slices + 1):
            ct.SeriesInstanceUID = series_uid
            ct.SOPInstanceUID = generate_uid()
            ct.InstanceNumber = number
            ct.ImagePositionPatient = [x, y, z + (number - 1) * thickness]  # axial: along z
            buffer = io.BytesIO()
            ct.save_as(buffer)
            zf.writestr(f"study/CT/slice-{number:03d}.dcm", buffer.getvalue())
        zf.write(mr_path, "study/MR/MR_small.dcm")
        zf.writestr("study/README.txt", "Sample input for the MIS example MAP.\n")
    return target


if __name__ == "__main__":
    out = Path(sys.argv[1] if len(sys.argv) > 1 else "sample-input.zip")
    print(build(out))
