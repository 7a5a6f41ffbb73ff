"""The audit pieces on their own: named tokens, the client address behind proxies, the
chain across restarts and on standard output, and what `verify` says of each kind of damage."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import pytest

from mis_app.audit import client_address, trusted_networks
from mis_app.audit_log import EMPTY_SHA256, AuditLog, AuditUnavailable
from mis_app.audit_verify import verify_file, verify_lines
from mis_app.digest import Digest
from mis_app.token_format import MalformedTokens, client_token, parse_named_tokens


def test_a_token_line_may_carry_a_name_and_one_without_is_named_by_its_line() -> None:
    text = "# tokens\nradiology: abc-1\n\n  cde.2==\nops@site : xyz\n"
    assert parse_named_tokens(text) == [
        ("radiology", "abc-1"),
        ("token-4", "cde.2=="),
        ("ops@site", "xyz"),
    ]


@pytest.mark.parametrize(
    ("text", "line"),
    [("a: t1\na: t2\n", 2), ("bad name: t1\n", 1), ("ok\nname: two words\n", 2), (": t\n", 1)],
)
def test_a_bad_or_repeated_name_is_refused_by_line_number(text: str, line: int) -> None:
    with pytest.raises(MalformedTokens, match=f"line {line} "):
        parse_named_tokens(text)


def test_the_client_sends_the_token_not_its_name(tmp_path: Path) -> None:
    tokens = tmp_path / "tokens"
    tokens.write_text("radiology: abc-1\n")
    assert client_token(tokens) == ("abc-1", 1)


def scope(peer: str, forwarded: str | None = None) -> dict[str, object]:
    headers = [(b"x-forwarded-for", forwarded.encode())] if forwarded is not None else []
    return {"client": (peer, 40000), "headers": headers}


@pytest.mark.parametrize(
    ("peer", "forwarded", "expected"),
    [
        ("10.0.0.5", None, "10.0.0.5"),  # a trusted proxy that forwards nothing
        ("192.0.2.9", "203.0.113.7", "192.0.2.9"),  # not a proxy: its header is not believed
        ("10.0.0.5", "198.51.100.1, 203.0.113.7", "203.0.113.7"),  # the first can be forged
        ("10.0.0.5", "203.0.113.7, 10.2.0.1", "203.0.113.7"),  # past the trusted hops
        ("10.0.0.5", "10.2.0.1", "10.2.0.1"),  # all trusted: the farthest
        ("10.0.0.5", "not-an-address", "10.0.0.5"),  # garbage: the proxy itself
    ],
)
def test_the_client_is_the_last_hop_no_trusted_proxy_added(
    peer: str, forwarded: str | None, expected: str
) -> None:
    trusted = trusted_networks(["10.0.0.0/8", "127.0.0.1"])
    assert client_address(scope(peer, forwarded), trusted) == expected


def test_a_restarted_writer_continues_the_chain_of_the_file(tmp_path: Path) -> None:
    path = tmp_path / "audit.jsonl"
    first = AuditLog(str(path))
    first.write({"code": "ok"})
    first.write({"code": "busy"})
    first.close()
    with open(path, "ab") as cut:  # a crash in the middle of a line
        cut.write(b'{"code":"o')
    second = AuditLog(str(path))
    second.write({"code": "timeout"})
    second.close()
    lines = path.read_bytes().splitlines()
    records = [json.loads(line) for line in (lines[0], lines[1], lines[3])]
    assert [r["seq"] for r in records] == [1, 2, 3]
    assert records[0]["prev_sha256"] == EMPTY_SHA256
    assert records[2]["prev_sha256"] == hashlib.sha256(lines[2]).hexdigest()
    verdict = verify_file(path)
    assert [(b.line, b.what) for b in verdict.breaks] == [
        (3, "is not an audit record (edited, or cut short)")
    ]


def test_on_standard_output_records_are_marked_and_chained(
    capsysbinary: pytest.CaptureFixture[bytes],
) -> None:
    log = AuditLog("-")
    log.write({"code": "ok"})
    log.write({"code": "busy"})
    lines = capsysbinary.readouterr().out.splitlines()
    assert [json.loads(line)["audit"]["code"] for line in lines] == ["ok", "busy"]
    assert verify_lines(lines).whole


def test_an_unwritable_audit_file_is_a_clear_start_up_error(tmp_path: Path) -> None:
    with pytest.raises(AuditUnavailable, match=r"server\.audit_file: cannot append to"):
        AuditLog(str(tmp_path / "missing" / "audit.jsonl"))


def chain(count: int) -> list[bytes]:
    lines, prev = [], EMPTY_SHA256
    for seq in range(1, count + 1):
        line = json.dumps({"seq": seq, "prev_sha256": prev}).encode()
        lines.append(line)
        prev = hashlib.sha256(line).hexdigest()
    return lines


def test_verify_tells_each_kind_of_damage_apart() -> None:
    lines = chain(5)
    assert verify_lines(lines).whole
    assert [b.what for b in verify_lines(lines[1:]).breaks] == [
        "1 record(s) removed between the start of the file and this line"
    ]
    swapped = [lines[0], lines[2], lines[1], *lines[3:]]
    assert [b.line for b in verify_lines(swapped).breaks] == [2, 3, 4]
    edited = [lines[0], lines[1].replace(b'"seq": 2', b'"seq":  2'), *lines[2:]]
    assert [(b.line, b.what) for b in verify_lines(edited).breaks] == [
        (2, "was edited (the next record's prev_sha256 does not match it)")
    ]


@pytest.mark.anyio
async def test_a_digest_hashes_the_whole_stream_beside_it_and_nothing_of_a_cut_one() -> None:
    chunks = [bytes([n]) * (64 * 1024 + n) for n in range(100)]  # several batches, odd sizes
    whole = Digest()
    for chunk in chunks:
        await whole.feed(chunk)
    await whole.finish()
    assert whole.sha256 == hashlib.sha256(b"".join(chunks)).hexdigest()
    assert whole.size == sum(map(len, chunks))

    cut = Digest()
    for chunk in chunks[:50]:
        await cut.feed(chunk)
    cut.close()
    assert cut.sha256 is None
    assert cut.size == sum(map(len, chunks[:50]))
    assert cut._thread is not None
    cut._thread.join(5)
    assert not cut._thread.is_alive()  # a stream cut short leaves no thread behind
