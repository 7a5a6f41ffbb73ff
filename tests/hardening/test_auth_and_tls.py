"""Access control and HTTPS against the real server."""

from __future__ import annotations

import ssl
import subprocess
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.conftest import require_tool
from tests.e2e.server import Server, running_server, scripted_map_config
from tests.zips import make_zip

TOKENS = ["s3cret-token-for-alice", "s3cret-token-for-bob"]


@pytest.fixture(scope="module")
def workdir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("auth")


@pytest.fixture(scope="module")
def server(workdir: Path) -> Iterator[Server]:
    tokens = workdir / "tokens"
    tokens.write_text("# one token per line\n" + "\n".join(TOKENS) + "\n")
    config = scripted_map_config(workdir, auth={"tokens_file": str(tokens)})
    with running_server(config, workdir) as running:
        yield running


def upload(
    server: Server, workdir: Path, headers: dict[str, str], query: str = ""
) -> httpx.Response:
    archive = make_zip(workdir / "in.zip", {"a.txt": b"hello"})
    return httpx.post(
        f"{server.url}/v1/inference{query}",
        files={"file": archive.read_bytes()},
        headers=headers,
        timeout=30,
    )


def map_ran_for(server: Server, response: httpx.Response) -> bool:
    request_id = response.headers["x-request-id"]
    return any(request_id in line and "| map |" in line for line in server.log_text().splitlines())


@pytest.mark.parametrize(
    ("headers", "query", "message"),
    [
        ({}, "", "needs a token"),
        ({"Authorization": "Bearer not-a-token"}, "", "not valid"),
        ({"Authorization": "Basic czNjcmV0"}, "", "needs a token"),
        (
            {"Authorization": f"Bearer {TOKENS[0]}"},
            f"?access_token={TOKENS[0]}",
            "refused in the URL",
        ),
        ({}, f"?token={TOKENS[0]}", "refused in the URL"),
    ],
    ids=["no-token", "wrong-token", "wrong-scheme", "token-in-url-too", "token-in-url"],
)
def test_requests_without_a_valid_header_token_get_401_and_never_reach_the_map(
    server: Server, workdir: Path, headers: dict[str, str], query: str, message: str
) -> None:
    response = upload(server, workdir, headers, query)
    assert response.status_code == 401
    assert response.headers["www-authenticate"].startswith("Bearer")
    error = response.json()["error"]
    assert error["code"] == "unauthorized"
    assert message in error["message"]
    assert not map_ran_for(server, response)


def test_every_listed_token_works(server: Server, workdir: Path) -> None:
    for token in TOKENS:
        response = upload(server, workdir, {"Authorization": f"Bearer {token}"})
        assert response.status_code == 200, response.text
        assert map_ran_for(server, response)


def test_a_revoked_token_stops_working_without_a_restart(server: Server, workdir: Path) -> None:
    tokens = workdir / "tokens"
    assert upload(server, workdir, {"Authorization": f"Bearer {TOKENS[1]}"}).status_code == 200
    tokens.write_text(TOKENS[0] + "\n")  # bob's token is revoked
    try:
        revoked = upload(server, workdir, {"Authorization": f"Bearer {TOKENS[1]}"})
        assert revoked.status_code == 401
        assert not map_ran_for(server, revoked)
        assert upload(server, workdir, {"Authorization": f"Bearer {TOKENS[0]}"}).status_code == 200
    finally:
        tokens.write_text("\n".join(TOKENS) + "\n")


def test_health_and_the_api_description_stay_open_metrics_do_not(server: Server) -> None:
    assert httpx.get(f"{server.url}/healthz").status_code == 200
    assert httpx.get(f"{server.url}/readyz").status_code == 200
    assert httpx.get(f"{server.url}/openapi.json").status_code == 200
    assert httpx.get(f"{server.url}/metrics").status_code == 401
    assert httpx.get(f"{server.url}/v1/status").status_code == 401
    authorized = {"Authorization": f"Bearer {TOKENS[0]}"}
    assert httpx.get(f"{server.url}/metrics", headers=authorized).status_code == 200


def test_tokens_never_appear_in_the_log(server: Server, workdir: Path) -> None:
    upload(server, workdir, {"Authorization": f"Bearer {TOKENS[0]}"}, f"?access_token={TOKENS[1]}")
    upload(server, workdir, {"Authorization": "Bearer a-guess-at-a-token"})
    log = server.log_text()
    for secret in [*TOKENS, "a-guess-at-a-token"]:
        assert secret not in log


def test_round_trip_over_https_with_a_generated_certificate(tmp_path: Path) -> None:
    openssl = require_tool("openssl")
    cert, key = tmp_path / "cert.pem", tmp_path / "key.pem"
    subprocess.run(
        [openssl, "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1", "-subj", "/CN=127.0.0.1",
         "-addext", "subjectAltName=IP:127.0.0.1", "-keyout", str(key), "-out", str(cert)],
        check=True, capture_output=True,
    )  # fmt: skip
    config = scripted_map_config(tmp_path, tls={"cert_file": str(cert), "key_file": str(key)})
    trust = ssl.create_default_context(cafile=str(cert))
    with running_server(config, tmp_path, verify=trust) as server:
        assert server.url.startswith("https://")
        archive = make_zip(tmp_path / "in.zip", {"scan.dcm": b"pixels"})
        response = httpx.post(
            f"{server.url}/v1/inference",
            files={"file": archive.read_bytes()},
            verify=trust,
            timeout=30,
        )
        with pytest.raises(httpx.TransportError):  # no plain HTTP on that port
            httpx.get(server.url.replace("https", "http") + "/healthz", timeout=5)
    assert response.status_code == 200
    assert b"scan.dcm" in response.content
