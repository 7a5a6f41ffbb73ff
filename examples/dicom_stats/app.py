"""Example MAP: per-series statistics and threshold masks for every DICOM image in the input.

Reads each file under the input folder (any layout), groups the images by series, and writes
to the output folder:

    summary.json                     `series`: one flat record per series (modality, size,
                                     spacing, intensity statistics, threshold, mask volume);
                                     `skipped`: every file not used, with the reason
    masks/<series>/<nnnn>.png        a threshold mask per frame, in slice order: bone
                                     (> 300 HU) for CT, Otsu's threshold otherwise

What it reads: every common transfer syntax (implicit/explicit little and big endian,
deflated, RLE, JPEG baseline/extended/lossless, JPEG-LS, JPEG 2000; decoders: see pixels.py),
single- and multi-frame images (enhanced CT/MR with per-frame geometry, RT dose, cine), and
colour (RGB, YBR_FULL, YBR_FULL_422, palette: statistics of luma). Frames are ordered by
position along the slice normal, and a mask's volume uses the real distance between slices.
Files that are not images (SR, RT plan and structure set, waveforms, presentation states,
DICOMDIR), not DICOM, truncated, undecodable or too large to read safely (frames over
4096×4096, deflated objects inflating past 256 MiB) are skipped and listed with the reason;
the MAP fails (exit 2) only when no file is a usable image.

Memory is bounded by one image, not the study: headers are read first without pixels, then
pixels one frame at a time, and the statistics and Otsu's threshold come from streamed
moments and histograms. Measured with bench.py beside this file (2 shared cores, one thread
as MIS gives `cpu: "1"`): a 1,000-slice 512×512 CT peaks at 77 MiB RSS, against the 2 GiB
mis.yaml gives it, and takes 7-8 ms of CPU a slice; on 200 slices, 10-12 ms a slice and
74 MiB, where the version that held the whole study took 10-23 ms a slice and 1,473 MiB
(growing with the study). CT needs one decoding pass; Otsu's threshold needs two.

Run it by hand with `python app.py --input IN --output OUT`, or let MIS run it (see mis.yaml
beside this file). It prints counts only: MIS logs a MAP's output, and never file names.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import warnings
from collections import Counter, defaultdict
from pathlib import Path
from typing import Any

import pydicom

from analysis import analyse
from headers import Image, Skipped, scan

NO_IMAGES = 2  # the exit code when nothing in the input is a usable image


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--input", type=Path, default=os.environ.get("MONAI_INPUTPATH"))
    parser.add_argument("--output", type=Path, default=os.environ.get("MONAI_OUTPUTPATH"))
    options = parser.parse_args()
    if options.input is None or options.output is None:
        parser.error("give --input and --output (or set MONAI_INPUTPATH and MONAI_OUTPUTPATH)")
    # pydicom warns about odd values by quoting them, and a MAP's output ends up in MIS's log:
    # keep header values (patient data) out of it.
    warnings.simplefilter("ignore")
    pydicom.config.settings.reading_validation_mode = pydicom.config.IGNORE

    series: dict[str, list[Image]] = defaultdict(list)
    skipped: list[Skipped] = []
    for item in scan(options.input):
        if isinstance(item, Skipped):
            skipped.append(item)
        else:
            series[item.series_uid].append(item)
    print(f"read {sum(map(len, series.values()))} image file(s) in {len(series)} series")

    records: list[dict[str, Any]] = []
    for uid in sorted(series):
        record, failed = analyse(len(records) + 1, series[uid], options.output)
        skipped += failed
        if record is not None:
            records.append(record)
            print(f"series {len(records)}: {record['images']} image(s), {record['modality']}")

    kinds = Counter(s.kind for s in skipped)
    counted = ", ".join(f"{n} {kind}" for kind, n in sorted(kinds.items()))
    if skipped:
        print(f"skipped {len(skipped)} file(s): {counted}")
    if not records:
        print(
            f"no usable DICOM image in the input: {len(skipped)} file(s), all skipped"
            + (f" ({counted})" if skipped else "")
            + "; send DICOM image files (CT, MR, ...), any folder layout",
            file=sys.stderr,
        )
        return NO_IMAGES
    summary = {
        "series": records,
        "skipped_files": len(skipped),
        "skipped": [
            {"file": s.file, "kind": s.kind, "reason": s.reason}
            for s in sorted(skipped, key=lambda s: s.file)
        ],
    }
    (options.output / "summary.json").write_text(json.dumps(summary, indent=2) + "\n")
    print(f"wrote summary of {len(records)} series")
    return 0


if __name__ == "__main__":
    sys.exit(main())
