"""A MAP for the log-budget tests: floods its output as fast as it can, then copies its input.

`_chatter.json` at the top of the input steers it: {"lines": 1000000, "text": "line",
"bursts": 0, "burst_lines": 65536, "pause": 0.5, "then": "", "exit": 0}. It prints `lines`
numbered lines (`<text> <n>`), then `bursts` bursts of `burst_lines` empty lines, `pause`
seconds apart, then the line `then` (as is) if given; then it exits with `exit` if that is
not 0, else copies its input and prints `done`.
"""

import json
import os
import shutil
import sys
import time
from pathlib import Path

source = Path(os.environ["MONAI_INPUTPATH"])
target = Path(os.environ["MONAI_OUTPUTPATH"])
chatter_file = source / "_chatter.json"
chatter = json.loads(chatter_file.read_text()) if chatter_file.exists() else {}
out = sys.stdout.buffer
lines = int(chatter.get("lines", 0))
text = str(chatter.get("text", "line"))
step = 10_000  # lines per write: as fast as Python can print them
for start in range(1, lines + 1, step):
    stop = min(start + step, lines + 1)
    out.write("".join(f"{text} {n}\n" for n in range(start, stop)).encode())
out.flush()
for burst in range(int(chatter.get("bursts", 0))):
    if burst:
        time.sleep(float(chatter.get("pause", 0.5)))
    out.write(b"\n" * int(chatter.get("burst_lines", 65536)))
    out.flush()
if chatter.get("then"):
    out.write(str(chatter["then"]).encode() + b"\n")
out.flush()
if chatter.get("exit"):
    sys.exit(int(chatter["exit"]))
shutil.copytree(source, target, dirs_exist_ok=True)
out.write(b"done\n")
out.flush()
