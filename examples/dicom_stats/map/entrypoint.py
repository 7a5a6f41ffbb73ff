"""The example MAP image's entrypoint: run the application, or describe the package.

    entrypoint.py           run app.py on the host's folders
    entrypoint.py show      print the manifests (app.json and pkg.json) as one JSON object
    entrypoint.py export    copy app, manifests, models and docs to /var/run/holoscan/export/

The folders come from the environment the hosting service sets: MONAI_INPUTPATH and
MONAI_OUTPUTPATH (MONAI hosts, MIS), else HOLOSCAN_INPUT_PATH and HOLOSCAN_OUTPUT_PATH
(Holoscan hosts; the image sets them to its own /var/holoscan/input and output, so a plain
`docker run` with those two folders mounted works too).
"""

from __future__ import annotations

import json
import os
import shutil
import sys
from pathlib import Path

APP = Path("/opt/holoscan/app")
MODELS = Path("/opt/holoscan/models")
DOCS = Path("/opt/holoscan/docs")
MANIFESTS = Path("/etc/holoscan")
EXPORT = Path("/var/run/holoscan/export")


def main(argv: list[str]) -> int:
    if argv == ["show"]:
        return show()
    if argv == ["export"]:
        return export()
    if argv:
        print(f"unknown arguments {argv}; use no arguments, 'show' or 'export'", file=sys.stderr)
        return 2
    return run()


def folder(*names: str) -> str:
    for name in names:
        if os.environ.get(name):
            return os.environ[name]
    raise SystemExit(f"set {' or '.join(names)} to the folder to use")


def run() -> int:
    source = folder("MONAI_INPUTPATH", "HOLOSCAN_INPUT_PATH")
    target = folder("MONAI_OUTPUTPATH", "HOLOSCAN_OUTPUT_PATH")
    if not os.path.isdir(source):
        print(f"the input folder {source} does not exist: mount the study there", file=sys.stderr)
        return 2
    if not os.path.isdir(target):
        print(f"the output folder {target} does not exist: mount a folder there", file=sys.stderr)
        return 2
    app = str(APP / "app.py")
    os.execv(sys.executable, [sys.executable, app, "--input", source, "--output", target])
    return 1  # not reached: execv replaces this process


def show() -> int:
    manifests = {f.stem: json.loads(f.read_text()) for f in sorted(MANIFESTS.glob("*.json"))}
    print(json.dumps(manifests, indent=2))
    return 0


def export() -> int:
    """The MAP specification's export: fill whichever of app/, config/, models/, docs/ exists."""
    parts = {"app": APP, "config": MANIFESTS, "models": MODELS, "docs": DOCS}
    wanted = [name for name in parts if (EXPORT / name).is_dir()]
    if not wanted and EXPORT.is_dir():
        wanted = list(parts)
    if not wanted:
        print(f"mount a folder at {EXPORT} (or one of its {', '.join(parts)})", file=sys.stderr)
        return 2
    for name in wanted:
        copy_files(parts[name], EXPORT / name)
        print(f"exported {parts[name]} to {EXPORT / name}")
    return 0


def copy_files(source: Path, target: Path) -> None:
    """Copy the files' contents only: the mounted folder belongs to the host's user."""
    for path in sorted(source.rglob("*")):
        destination = target / path.relative_to(source)
        if path.is_dir():
            destination.mkdir(parents=True, exist_ok=True)
        elif path.is_file():
            destination.parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(path, destination)


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
