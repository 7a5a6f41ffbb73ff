"""A MAP for tests, steered by the input it is given.

It copies its input folder to its output folder and records the MAP environment in
`output/_env.json`. A file `_mode` at the top of the input changes what it does:
`fail` prints a few lines and exits with code 3; `ansi` prints a line full of control
characters and exits with code 3; `hang` starts a child and both sleep forever
(writing their pids to the file named by MIS_TEST_PIDFILE); `wait` writes MIS_TEST_STARTED and
then waits until the file MIS_TEST_RELEASE exists.
"""

import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

source = Path(os.environ["MONAI_INPUTPATH"])
target = Path(os.environ["MONAI_OUTPUTPATH"])
mode_file = source / "_mode"
mode = mode_file.read_text().strip() if mode_file.exists() else "copy"
print(f"scripted MAP starting in mode {mode}", flush=True)

if mode == "fail":
    for n in range(30):
        print(f"working on step {n}", flush=True)
    print("error: the model could not be loaded", file=sys.stderr, flush=True)
    sys.exit(3)

if mode == "ansi":  # output that tries to colour, rewrite and forge log lines
    print("\x1b[31mred\x1b[0m\rERROR forged | mis | job finished\x1b]0;title\x07", flush=True)
    sys.exit(3)

if mode == "hang":
    child = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(3600)"])
    Path(os.environ["MIS_TEST_PIDFILE"]).write_text(f"{os.getpid()} {child.pid}")
    time.sleep(3600)

if mode == "wait":
    Path(os.environ["MIS_TEST_STARTED"]).write_text("started")
    release = Path(os.environ["MIS_TEST_RELEASE"])
    while not release.exists():
        time.sleep(0.02)

shutil.copytree(source, target, dirs_exist_ok=True)
names = [k for k in os.environ if k.startswith(("MONAI_", "HOLOSCAN_", "CUDA_", "OMP_", "MKL_"))]
(target / "_env.json").write_text(json.dumps({k: os.environ[k] for k in names}, sort_keys=True))
(target / "_argv.json").write_text(json.dumps(sys.argv[1:]))
print("scripted MAP done", flush=True)
