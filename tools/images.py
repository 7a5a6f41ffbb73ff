"""Build the MIS image and the example MAP image with Podman: `nox -s image`, and the tests.

    python tools/images.py [--base IMAGE] [--out DIR]

Without `--base`, the base is a Debian root filesystem made here by `mmdebstrap` from the
machine's own apt sources (no image registry needed) and imported into Podman. The builds run
with `--network host` and the machine's CA bundle mounted read-only, so pip inside them trusts
what the machine trusts; the machine's pip index settings go in as a pip.conf mounted for the
build only (never into a layer). The images are built in a Podman store of their own (a
temporary folder, with tools/containers.conf), so nothing lands in the machine's store, and are
saved as archives under `--out` (default .artifacts/images) for `podman load` / `docker load`;
the tests load them from there instead of building again when MIS_IMAGE_ARCHIVES names it.
"""

from __future__ import annotations

import argparse
import os
import re
import shlex
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
VERSION = "0.1.0"
MIS_IMAGE = f"localhost/monai-inference-service:{VERSION}"
MAP_IMAGE = f"localhost/monai-dicom-stats:{VERSION}"
BASE_IMAGE = "localhost/mis-debian-base:latest"
MAP_CONTAINERFILE = REPO / "examples" / "dicom_stats" / "map" / "Containerfile"
CONTAINERS_CONF = REPO / "tools" / "containers.conf"
CA_BUNDLE = Path("/etc/ssl/certs/ca-certificates.crt")
APT_SOURCES = Path("/etc/apt/sources.list.d")
# Documentation, manuals and translations are a quarter of a Debian root filesystem and no
# program reads them; the copyright files stay.
DPKG_EXCLUDES = ("/usr/share/doc/*", "/usr/share/man/*", "/usr/share/info/*", "/usr/share/locale/*")
DPKG_INCLUDES = ("/usr/share/doc/*/copyright",)
BASE_PACKAGES = ("python3", "python3-venv", "ca-certificates", "passwd")


@dataclass(frozen=True)
class Podman:
    """A Podman command line: the executable and global options, and its environment."""

    argv: tuple[str, ...]
    env: Mapping[str, str] = field(default_factory=lambda: dict(os.environ))

    @classmethod
    def isolated(cls, podman: str, folder: Path) -> Podman:
        """Podman with its own storage and configuration under `folder` (created)."""
        folder.mkdir(parents=True, exist_ok=True)
        conf = folder / "containers.conf"
        conf.write_text(
            CONTAINERS_CONF.read_text()
            + f'\n[network]\nnetwork_config_dir = "{folder / "networks"}"\n'
        )
        argv = (
            podman,
            "--root", str(folder / "storage"),
            "--runroot", str(folder / "run"),
            "--tmpdir", str(folder / "libpod"),  # else /run/libpod, shared with every Podman
            "--storage-driver", "overlay",
        )  # fmt: skip
        return cls(argv, {**os.environ, "CONTAINERS_CONF": str(conf)})

    def run(self, *args: str, capture: bool = False, check: bool = True) -> str:
        result = subprocess.run(
            [*self.argv, *args],
            env=dict(self.env),
            check=False,
            text=True,
            stdout=subprocess.PIPE if capture else None,
            stderr=subprocess.PIPE if capture else None,
        )
        if check and result.returncode != 0:
            detail = (result.stderr or "").strip()[-2000:]
            raise RuntimeError(f"podman {shlex.join(args[:3])} ... failed: {detail}")
        return result.stdout or ""


def make_debian_base(podman: Podman, folder: Path, name: str = BASE_IMAGE) -> str:
    """A Debian base with Python 3 and venv, made by mmdebstrap from this machine's apt sources."""
    tarball = folder / "debian-base.tar"
    codename = _os_release().get("VERSION_CODENAME") or "bookworm"
    command = [
        shutil.which("mmdebstrap") or "mmdebstrap",
        "--quiet",
        "--variant=apt",
        f"--include={','.join(BASE_PACKAGES)}",
        *(f"--dpkgopt=path-exclude={p}" for p in DPKG_EXCLUDES),
        *(f"--dpkgopt=path-include={p}" for p in DPKG_INCLUDES),
        codename,
        str(tarball),
        *map(str, apt_sources()),
    ]
    subprocess.run(command, check=True)
    try:
        podman.run("import", "--quiet", str(tarball), name, capture=True)
    finally:
        tarball.unlink(missing_ok=True)
    return name


def apt_sources() -> list[Path]:
    """The machine's apt sources files (mmdebstrap reads them as mirrors); [] for its default."""
    files = sorted(p for p in APT_SOURCES.glob("*") if p.suffix in (".sources", ".list"))
    legacy = APT_SOURCES.parent / "sources.list"
    if legacy.is_file() and legacy.read_text().strip():
        files.insert(0, legacy)
    return files


def build(podman: Podman, containerfile: Path, tag: str, base: str, workdir: Path) -> str:
    """`podman build` of `containerfile` (context: the repository) on `base`."""
    pip_conf = write_build_pip_conf(workdir / "pip.conf")
    args = [
        "build",
        "--network", "host",
        "--volume", f"{pip_conf}:/etc/pip.conf:ro",
        "--build-arg", f"BASE={base}",
        "--build-arg", f"VERSION={VERSION}",
        "--file", str(containerfile),
        "--tag", tag,
    ]  # fmt: skip
    if CA_BUNDLE.is_file():
        args += ["--volume", f"{CA_BUNDLE}:{CA_BUNDLE}:ro"]
    podman.run(*args, str(REPO), capture=True)
    return tag


def write_build_pip_conf(path: Path) -> Path:
    """A pip.conf for inside a build: the machine's http(s) indexes, and the CA bundle.

    Index URLs are read from this machine's pip configuration (files and PIP_* variables) at
    build time, so no index host is written anywhere; local (file:) indexes do not exist
    inside the build and are left out.
    """
    lines = ["[global]"]
    if CA_BUNDLE.is_file():
        lines.append(f"cert = {CA_BUNDLE}")
    for key, value in _pip_index_settings().items():
        lines.append(f"{key} = {value}")
    path.write_text("\n".join(lines) + "\n")
    return path


def _pip_index_settings() -> dict[str, str]:
    listed = subprocess.run(
        [sys.executable, "-m", "pip", "config", "list"],
        capture_output=True,
        text=True,
        check=False,
    ).stdout
    settings: dict[str, str] = {}
    for line in listed.splitlines():
        match = re.fullmatch(r"[^.]*\.(index-url|extra-index-url)='(.*)'", line.strip())
        if not match:
            continue
        key, value = match.groups()
        urls = [u for u in value.split() if u.startswith(("https://", "http://"))]
        if urls:
            settings[key] = " ".join(urls)
    return settings


def image_size(podman: Podman, tag: str) -> int:
    """The image's size in bytes, as the engine counts it (all layers, uncompressed)."""
    return int(podman.run("image", "inspect", "--format", "{{.Size}}", tag, capture=True))


def build_all(
    podman: Podman, workdir: Path, base: str = "", log: Callable[[str], None] | None = None
) -> dict[str, str]:
    """Both images on `base` (default: a Debian base made here); returns {what: tag}."""
    say = log or (lambda message: None)
    started = time.monotonic()
    if not base:
        base = make_debian_base(podman, workdir)
        say(f"Debian base made and imported in {time.monotonic() - started:.0f} s")
    tags = {}
    for what, containerfile, tag in (
        ("mis", REPO / "Dockerfile", MIS_IMAGE),
        ("map", MAP_CONTAINERFILE, MAP_IMAGE),
    ):
        started = time.monotonic()
        tags[what] = build(podman, containerfile, tag, base, workdir)
        say(f"{tag} built in {time.monotonic() - started:.0f} s")
    return tags


def archive_path(folder: Path, tag: str) -> Path:
    """Where `nox -s image` saves `tag`: monai-inference-service-0.1.0.tar and so on."""
    return folder / f"{tag.split('/')[-1].replace(':', '-')}.tar"


def save_all(podman: Podman, tags: Mapping[str, str], folder: Path) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    for tag in tags.values():
        archive = archive_path(folder, tag)
        archive.unlink(missing_ok=True)
        podman.run("save", "--quiet", "--output", str(archive), tag, capture=True)


def load_all(podman: Podman, folder: Path) -> dict[str, str]:
    """The images `nox -s image` saved in `folder`, loaded into `podman`; {what: tag}."""
    tags = {"mis": MIS_IMAGE, "map": MAP_IMAGE}
    for tag in tags.values():
        archive = archive_path(folder, tag)
        if not archive.is_file():
            raise FileNotFoundError(f"{archive} is missing: run nox -s image first")
        podman.run("load", "--quiet", "--input", str(archive), capture=True)
        podman.run("image", "exists", tag)
    return tags


def _os_release() -> dict[str, str]:
    try:
        text = Path("/etc/os-release").read_text()
    except OSError:
        return {}
    pairs = (line.split("=", 1) for line in text.splitlines() if "=" in line)
    return {key: value.strip('"') for key, value in pairs}


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--base", default="", help="base image (default: Debian, made here)")
    parser.add_argument("--out", type=Path, default=REPO / ".artifacts" / "images")
    options = parser.parse_args(argv)
    podman_path = shutil.which("podman")
    if podman_path is None:
        parser.error("podman is not installed")
    if not options.base and shutil.which("mmdebstrap") is None:
        parser.error("mmdebstrap is not installed (apt-get install mmdebstrap), or give --base")
    with tempfile.TemporaryDirectory(prefix="mis-images-") as scratch:
        podman = Podman.isolated(podman_path, Path(scratch) / "podman")
        try:
            tags = build_all(podman, Path(scratch), options.base, log=print)
            save_all(podman, tags, options.out)
            for what, tag in tags.items():
                size = image_size(podman, tag) / 1e6
                print(f"{what}: {tag}, {size:.0f} MB, saved to {archive_path(options.out, tag)}")
        finally:
            podman.run("system", "reset", "--force", capture=True, check=False)
    print("load with: podman load -i ARCHIVE (or docker load -i ARCHIVE)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
