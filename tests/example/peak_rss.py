"""Run a command, then write its peak RSS into a folder: a MAP's memory, measured from inside.

    python peak_rss.py OUTPUT_FOLDER COMMAND...

The command's exit status is this script's. `peak_rss.json` in OUTPUT_FOLDER (the MAP's
output, so it comes back in the result zip) holds the largest resident set of the command
and every process it waited for (the kernel's ru_maxrss of reaped children), in bytes.
"""

from __future__ import annotations

import json
import resource
import subprocess
import sys
from pathlib import Path


def main() -> int:
    output, command = Path(sys.argv[1]), sys.argv[2:]
    status = subprocess.call(command)
    peak = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss * 1024  # KiB on Linux
    (output / "peak_rss.json").write_text(json.dumps({"peak_rss_bytes": peak}) + "\n")
    return status


if __name__ == "__main__":
    sys.exit(main())
