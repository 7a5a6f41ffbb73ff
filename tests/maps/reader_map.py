"""A MAP that tries to read files of MIS's over and over while the test replaces them.

`READ_PATHS` (separated by os.pathsep) are read in rounds; after each round the number of
rounds goes to `output/rounds` (the test waits on it between replacements). It stops when a
file named `stop` appears in its output folder (the test puts it there), or after 60 s, and
writes to `output/read.json` what each read gave: the contents, or the error's name.
"""

import errno
import json
import os
import time
from pathlib import Path

paths = os.environ["READ_PATHS"].split(os.pathsep)
output = Path(os.environ["MONAI_OUTPUTPATH"])
found: dict[str, dict[str, int]] = {path: {} for path in paths}
print("reader: reading", flush=True)
rounds = 0
deadline = time.monotonic() + 60
while not (output / "stop").exists() and time.monotonic() < deadline:
    for path in paths:
        try:
            seen = Path(path).read_text(errors="replace")
        except OSError as exc:
            seen = errno.errorcode.get(exc.errno or 0, str(exc))
        found[path][seen] = found[path].get(seen, 0) + 1
    rounds += 1
    (output / "rounds.tmp").write_text(str(rounds))
    (output / "rounds.tmp").rename(output / "rounds")
(output / "read.json").write_text(json.dumps({"rounds": rounds, "found": found}))
