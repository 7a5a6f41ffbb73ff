"""Access control and HTTPS against the real server."""

from __future__ import annotations

import os
import socket
import ssl
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.harness.certificates import self_signed
from tests.harness.servers import Server, ServerFactory
from tests.zips import make_zip

TOKENS = ["s3cret-token-for-alice", "s3cret-token-for-bob"]


@pytest.fixture(scope="module")
def workdir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("auth")


@pytest.fixture(scope="module")
def server(workdir: Path, mis_server: ServerFactory) -> Iterator[Server]:
    tokens = workdir / "tokens"
    tokens.write_text("# one token per line\n" + "\n".join(TOKENS) + "\n")
    with mis_server(workdir, {"server": {"auth": {"tokens_file": str(tokens)}}}) as running:
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


def test_round_trip_over_https_with_a_generated_certificate(
    tmp_path: Path, mis_server: ServerFactory
) -> None:
    cert, key = self_signed(tmp_path)
    tls = {"server": {"tls": {"cert_file": str(cert), "key_file": str(key)}}}
    trust = ssl.create_default_context(cafile=str(cert))
    with mis_server(tmp_path, tls, verify=trust) as server:
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


def authorized(server: Server, token: str) -> int:
    return httpx.get(
        f"{server.url}/v1/status", headers={"Authorization": f"Bearer {token}"}
    ).status_code


@pytest.fixture
def restore_tokens(workdir: Path) -> Iterator[Path]:
    tokens = workdir / "tokens"
    original = tokens.read_bytes()
    yield tokens
    tokens.unlink(missing_ok=True)
    tokens.write_bytes(original)


def test_a_tokens_file_rewritten_with_the_same_size_and_times_is_read_again(
    server: Server, restore_tokens: Path
) -> None:
    tokens = restore_tokens
    assert authorized(server, TOKENS[0]) == 200
    before = tokens.stat()
    replacement = TOKENS[0].replace("alice", "carol")  # same length
    tokens.write_text(tokens.read_text().replace(TOKENS[0], replacement))
    os.utime(tokens, ns=(before.st_atime_ns, before.st_mtime_ns))
    after = tokens.stat()
    assert (after.st_size, after.st_mtime_ns) == (before.st_size, before.st_mtime_ns)
    assert authorized(server, replacement) == 200
    assert authorized(server, TOKENS[0]) == 401


def test_a_tokens_file_swapped_for_another_with_the_same_size_and_times_is_read_again(
    server: Server, workdir: Path, restore_tokens: Path
) -> None:
    tokens = restore_tokens  # a Kubernetes Secret update: a new file moved into place
    before = tokens.stat()
    replacement = TOKENS[1].replace("bob", "eve")
    swapped = workdir / "tokens.new"
    swapped.write_text(tokens.read_text().replace(TOKENS[1], replacement))
    os.utime(swapped, ns=(before.st_atime_ns, before.st_mtime_ns))
    os.replace(swapped, tokens)
    assert authorized(server, replacement) == 200
    assert authorized(server, TOKENS[1]) == 401


@pytest.mark.parametrize(
    "broken",
    [b"s3cret-token-for-alice\nhalf a token\n", b"\xff\xfe not text\n", None],
    ids=["malformed-line", "not-utf8", "deleted"],
)
def test_a_broken_tokens_file_keeps_the_last_good_tokens_and_logs_no_token(
    server: Server, restore_tokens: Path, broken: bytes | None
) -> None:
    tokens = restore_tokens
    assert authorized(server, TOKENS[1]) == 200
    if broken is None:
        tokens.unlink()
    else:
        tokens.write_bytes(broken)
    assert authorized(server, TOKENS[1]) == 200  # the set read before still holds
    assert authorized(server, "half") == 401
    log = server.log_text()
    assert f"the tokens file {tokens}" in log
    assert "keeping the 2 token(s) read before" in log
    for secret in (*TOKENS, "half a token"):
        assert secret not in log


def test_indented_comment_lines_are_comments(server: Server, restore_tokens: Path) -> None:
    restore_tokens.write_text(f"  #disabled-token\n\t# another comment\n{TOKENS[0]}\n")
    assert authorized(server, TOKENS[0]) == 200  # the file was read, not refused
    assert authorized(server, "#disabled-token") == 401


def test_a_tokens_file_never_readable_refuses_everything_with_json_503(
    tmp_path: Path, mis_server: ServerFactory
) -> None:
    tokens = tmp_path / "tokens"
    tokens.write_text("my secret token\n")  # spaces: not a token
    with mis_server(tmp_path, {"server": {"auth": {"tokens_file": str(tokens)}}}) as server:
        response = httpx.get(f"{server.url}/v1/status", headers={"Authorization": "Bearer my"})
        assert response.status_code == 503
        error = response.json()["error"]
        assert error["code"] == "backend_unavailable"
        assert "server.auth.tokens_file" in error["message"]
        assert httpx.get(f"{server.url}/healthz").status_code == 200
        tokens.write_text("my-secret-token\n")  # fixed: let in without a restart
        good = httpx.get(
            f"{server.url}/v1/status", headers={"Authorization": "Bearer my-secret-token"}
        )
        assert good.status_code == 200
        log = server.log_text()
    assert "malformed line 1" in log
    assert "my secret token" not in log
    assert "my-secret-token" not in log
    assert "Traceback" not in log


def test_an_oversized_head_is_refused_before_authentication(server: Server) -> None:
    port = int(server.url.rsplit(":", 1)[1])
    with socket.create_connection(("127.0.0.1", port)) as sock:
        sock.sendall(b"GET /v1/status HTTP/1.1\r\nHost: x\r\nX-Big: " + b"a" * 100_000)
        sock.settimeout(10)
        answer = b""
        while b"\r\n\r\n" not in answer and (data := sock.recv(65536)):
            answer += data
    assert answer.startswith(b"HTTP/1.1 431 ")
