"""The `mis` command: serve, config check, infer, map inspect, kubernetes render-job.

Heavy imports happen inside the subcommands, so `mis infer` starts fast.
"""

from __future__ import annotations

import argparse
import os
import shutil
import sys
from pathlib import Path
from typing import TYPE_CHECKING, TypeAlias

import attrs
import yaml

from mis_app.audit_verify import add_audit_command
from mis_app.infer_options import DEFAULT_URL, MAX_RETRY_AFTER_SECONDS, InferOptions
from mis_app.settings import (
    Settings,
    SettingsError,
    load_docker_settings,
    load_settings,
)

if TYPE_CHECKING:
    from mis_adapters.docker.manifest import MapManifest


def main(argv: list[str] | None = None) -> int:
    parser = _parser()
    options = parser.parse_args(argv)
    try:
        if not getattr(options, "needs_settings", True):
            return int(options.run(options))
        settings = load_settings(options.config, os.environ)
        return int(options.run(settings, options))
    except SettingsError as error:
        print(f"mis: {error}", file=sys.stderr)
        return 2


# what add_subparsers gives
Commands: TypeAlias = "argparse._SubParsersAction[argparse.ArgumentParser]"


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="mis", description="MONAI Inference Service: run a MAP behind a REST API."
    )
    commands = parser.add_subparsers(required=True, metavar="COMMAND")

    serve = commands.add_parser("serve", help="start the service")
    _add_config(serve)
    serve.add_argument("--host", help="address to listen on (default: server.host)")
    serve.add_argument("--port", type=int, help="port to listen on (default: server.port)")
    serve.set_defaults(run=_serve)

    config = commands.add_parser("config", help="work with the configuration")
    config_commands = config.add_subparsers(required=True, metavar="COMMAND")
    check = config_commands.add_parser("check", help="validate and print the effective config")
    _add_config(check)
    check.set_defaults(run=_check)

    _add_infer(commands)
    _add_tools(commands)
    return parser


def _add_infer(commands: Commands) -> None:
    defaults = attrs.fields(InferOptions)
    infer = commands.add_parser(
        "infer",
        help="send a zip or a folder to MIS and save the result (exit codes: docs/client.md)",
    )
    infer.add_argument("input", type=Path, help="a .zip, or a folder (zipped while it is sent)")
    infer.add_argument("-o", "--output", type=Path, help="where to save the result zip")
    infer.add_argument(
        "--url",
        default=os.environ.get("MIS_URL", DEFAULT_URL),
        help=f"MIS base URL (default: $MIS_URL, else {DEFAULT_URL})",
    )
    infer.add_argument(
        "--token-file",
        type=Path,
        help="the bearer token: a file in the server's tokens format (its first token is sent)",
    )
    infer.add_argument(
        "--extract",
        type=Path,
        metavar="DIR",
        help="unpack the result into DIR (new or empty; checked before uploading)",
    )
    infer.add_argument(
        "--force",
        action="store_true",
        help="with --extract: DIR may hold files; the result replaces those it also has",
    )
    infer.add_argument("--wait", action="store_true", help="retry while the service is busy")
    retries = defaults.retries.default
    infer.add_argument(
        "--retries", type=int, default=retries, help="retries with --wait (%(default)s)"
    )
    infer.add_argument(
        "--max-wait",
        type=float,
        default=defaults.max_wait_seconds.default,
        metavar="SECONDS",
        help="with --wait: stop retrying after waiting this long in all (%(default)g; each wait "
        f"is at most {MAX_RETRY_AFTER_SECONDS:g} s, whatever the server's Retry-After says)",
    )
    infer.set_defaults(run=_infer, needs_settings=False)


def _add_tools(commands: Commands) -> None:
    """`mis map inspect` and `mis kubernetes render-job`."""
    map_parser = commands.add_parser("map", help="look into MAP images")
    map_commands = map_parser.add_subparsers(required=True, metavar="COMMAND")
    inspect = map_commands.add_parser(
        "inspect", help="print what a MAP image's manifest declares, as map configuration"
    )
    inspect.add_argument("image", help="the MAP image, as the container engine names it")
    inspect.add_argument(
        "--url",
        help="the Docker Engine API (default: docker.url as `mis serve` reads it: from "
        "MIS_DOCKER__URL or the configuration file, else the local Docker socket)",
    )
    _add_config(inspect)
    inspect.set_defaults(run=_inspect_map, needs_settings=False)

    kubernetes = commands.add_parser("kubernetes", help="Kubernetes backend tools")
    kubernetes_commands = kubernetes.add_subparsers(required=True, metavar="COMMAND")
    render = kubernetes_commands.add_parser(
        "render-job",
        help="print the Job MIS would submit for a sample request, and the NetworkPolicy "
        "for its pods, as YAML",
    )
    _add_config(render)
    render.set_defaults(run=_render_job)

    add_audit_command(commands)


def _add_config(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--config", type=Path, help="YAML configuration file (default: the file MIS_CONFIG names)"
    )


def _serve(settings: Settings, options: argparse.Namespace) -> int:
    from loguru import logger

    from mis_app.bootstrap import TlsUnusable, build_server
    from mis_app.logs import configure_logging
    from mis_app.serve import STARTUP_FAILED, serve

    configure_logging(settings.server.log_level, settings.server.log_format)
    try:
        app, listener = build_server(settings)
    except TlsUnusable as exc:
        logger.error("{}", exc)
        return STARTUP_FAILED
    server = settings.server
    return serve(app, listener, options.host or server.host, options.port or server.port)


def _inspect_map(options: argparse.Namespace) -> int:
    url = options.url or load_docker_settings(options.config, os.environ).url
    manifest = _read_manifest(url, options.image)
    if manifest is None:
        return 1
    print(f"# declared in {manifest.source} of {options.image}")
    described = {"map": {"image": options.image, **manifest.map_settings()}}
    print(yaml.safe_dump(described, sort_keys=False), end="")
    if manifest.environment:
        print("# the image's own environment (already set inside it):")
        print(yaml.safe_dump({"environment": manifest.environment}, sort_keys=False), end="")
    return 0


def _read_manifest(url: str, image: str) -> MapManifest | None:
    """The image's manifest, or None after saying on stderr why it could not be read."""
    from mis_app.bootstrap import map_manifest

    try:
        return map_manifest(url, image)
    except SettingsError as error:
        print(f"mis: {error}", file=sys.stderr)
        return None


def _check(settings: Settings, options: argparse.Namespace) -> int:
    effective = settings.model_dump(mode="json")
    print(yaml.safe_dump(effective, sort_keys=False), end="")
    if settings.backend == "process":
        from mis_app.bootstrap import process_backend

        try:  # the sandbox, and what the MAP sees in it
            process_backend(settings, say=lambda line: print(f"# {line}", file=sys.stderr))
        except SettingsError as exc:
            print(f"mis: {exc}", file=sys.stderr)
            return 2
    warnings = _warnings(settings)
    for warning in warnings:
        print(f"# warning: {warning}", file=sys.stderr)
    more = f", but it will not serve as it is: {len(warnings)} warning(s) above" if warnings else ""
    print(f"# configuration is valid{more}", file=sys.stderr)
    return 0


def _warnings(settings: Settings) -> list[str]:
    """What is valid but will not serve: /readyz would say 503, and so would requests."""
    warnings = []
    program = [*settings.map.command, *settings.map.args][:1]
    if settings.backend == "process" and program and shutil.which(program[0]) is None:
        warnings.append(
            f"map.command: {program[0]} was not found (on PATH, or as a path from this "
            "directory); /readyz and every request will be 503 backend_unavailable"
        )
    if settings.server.auth.tokens_file is not None:
        from loguru import logger

        from mis_app.auth import TokenFile, TokensUnavailable

        logger.disable("mis_app.auth")  # what it would log is the warning below
        try:
            if not TokenFile(settings.server.auth.tokens_file).tokens():
                warnings.append(
                    f"server.auth: the tokens file {settings.server.auth.tokens_file} holds no "
                    "token; every request will be refused until one is added"
                )
        except TokensUnavailable as problem:
            warnings.append(f"server.auth: {problem}; every request will be refused")
        finally:
            logger.enable("mis_app.auth")
    return warnings


def _render_job(settings: Settings, options: argparse.Namespace) -> int:
    """The Job, and the NetworkPolicy for its pods, as MIS would submit them (notes on stderr)."""
    import anyio

    from mis_adapters.kubernetes.render import render_job
    from mis_app.bootstrap import kubernetes_backend, sample_job_request

    asks_once = settings.kubernetes.model_copy(update={"api_retry_max_seconds": 0})
    backend = kubernetes_backend(settings.model_copy(update={"kubernetes": asks_once}))
    documents, notes = anyio.run(render_job, backend, sample_job_request(settings))
    for note in notes:
        print(f"# {note}", file=sys.stderr)
    print(yaml.safe_dump_all(documents, sort_keys=False), end="")
    return 0


def _infer(options: argparse.Namespace) -> int:
    from mis_app.client import infer
    from mis_app.token_format import TokenFileProblem, client_token
    from mis_core.error_catalogue import Exit

    source: Path = options.input
    token = ""
    if options.token_file:
        try:
            token, count = client_token(options.token_file)
        except TokenFileProblem as problem:
            print(f"mis infer: {problem}", file=sys.stderr)
            return Exit.USAGE
        if count > 1:
            print(
                f"mis infer: {options.token_file} holds {count} tokens; sending the first",
                file=sys.stderr,
            )
    output = options.output
    if output is None and options.extract is None:
        output = Path(f"{source.name.removesuffix('.zip')}-output.zip")
    return infer(
        InferOptions(
            source=source,
            output=output,
            url=options.url,
            token=token,
            extract_to=options.extract,
            force=options.force,
            wait=options.wait,
            retries=options.retries,
            max_wait_seconds=options.max_wait,
        )
    )
