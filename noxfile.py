"""Developer tasks: `nox -s tests`, `lint`, `typecheck`, `serve` (the quick start)."""

from __future__ import annotations

import nox

nox.options.sessions = ["tests", "lint", "typecheck"]
nox.options.reuse_existing_virtualenvs = True

RUFF = "ruff==0.17.5"
MYPY = ["mypy==2.4.1", "types-pyyaml"]
SOURCES = ["mis_core", "mis_adapters", "mis_app", "tests", "examples", "noxfile.py"]
EXAMPLE_CONFIG = "examples/dicom_stats/mis.yaml"
SAMPLE_INPUT = ".mis/sample-input.zip"


@nox.session
def tests(session: nox.Session) -> None:
    """The whole test suite: core, adapters, the real server, the example MAP."""
    session.install("-e", ".[test,example]")
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
    session.run("mypy", "mis_core", "mis_adapters", "mis_app")


@nox.session
def serve(session: nox.Session) -> None:
    """Start MIS on the process backend with the example DICOM statistics MAP."""
    session.install("-e", ".[example]")
    session.run("python", "examples/dicom_stats/make_sample.py", SAMPLE_INPUT, silent=True)
    session.log(
        "try it: curl -F file=@%s http://127.0.0.1:8000/v1/inference -o output.zip",
        SAMPLE_INPUT,
    )
    session.run("mis", "serve", "--config", EXAMPLE_CONFIG, *session.posargs)
