"""A MAP for the live-log tests: prints numbered lines as it works, then copies its input.

`_ticks.json` at the top of the input steers it: {"lines": 5, "interval": 1.0, "text": "tick",
"width": 0, "hold": false}. Each line is `<text> <n> at <unix time>` in green (ANSI colour
codes, which the page must not show), padded with `=` to `width` characters when given. With
`hold`, it waits after the last line until the file MIS_TEST_RELEASE names exists (and writes
the file MIS_TEST_STARTED names once it has printed them all).
"""

import json
import os
import shutil
import time
from pathlib import Path

source = Path(os.environ["MONAI_INPUTPATH"])
target = Path(os.environ["MONAI_OUTPUTPATH"])
ticks_file = source / "_ticks.json"
ticks = json.loads(ticks_file.read_text()) if ticks_file.exists() else {}
lines = int(ticks.get("lines", 5))
interval = float(ticks.get("interval", 1.0))
text = str(ticks.get("text", "tick"))
width = int(ticks.get("width", 0))

for n in range(1, lines + 1):
    if n > 1:
        time.sleep(interval)
    line = f"{text} {n} at {time.time():.3f} "
    print(f"\x1b[32m{line.ljust(width, '=')}\x1b[0m", flush=True)

if ticks.get("hold"):
    Path(os.environ["MIS_TEST_STARTED"]).write_text("printed")
    release = Path(os.environ["MIS_TEST_RELEASE"])
    while not release.exists():
        time.sleep(0.02)

shutil.copytree(source, target, dirs_exist_ok=True)
print("done", flush=True)
