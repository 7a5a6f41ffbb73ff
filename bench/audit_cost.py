"""What the audit record costs: a ~200 MB study (stored zip) sent to two MIS servers, one with
`server.audit_file` and one without, alternately, a few rounds; wall time per request and the
server's CPU seconds, median of the rounds.

    .nox/bench/bin/python -m bench.audit_cost [ROUNDS]     # 3 rounds by default
"""

from __future__ import annotations

import hashlib
import json
import statistics
import sys
from contextlib import ExitStack
from pathlib import Path

import yaml

from bench import procstat
from bench.payloads import KiB, Profile, payload
from bench.run import WORK, mis_argv, mis_config, post, serve, wait_deleted

PROFILE = Profile("audit-200MB", 400, 512 * KiB, stored=True)


def config(name: str, audit: Path | None) -> Path:
    payload_dir = WORK / name
    payload_dir.mkdir(parents=True, exist_ok=True)
    settings = yaml.safe_load(mis_config(payload_dir).read_text())
    settings["server"]["audit_file"] = str(audit) if audit else None
    path = WORK / f"{name}.yaml"
    path.write_text(yaml.safe_dump(settings))
    return path


def main(rounds: int = 3) -> None:
    WORK.mkdir(parents=True, exist_ok=True)
    archive = payload(PROFILE, WORK / "payloads")
    audit = WORK / "audit-cost.jsonl"
    audit.unlink(missing_ok=True)
    results: dict[str, dict[str, list[float]]] = {
        "off": {"wall": [], "cpu": []},
        "on": {"wall": [], "cpu": []},
    }
    with ExitStack() as stack:
        servers = {
            "off": stack.enter_context(serve(mis_argv(config("audit-off", None)))),
            "on": stack.enter_context(serve(mis_argv(config("audit-on", audit)))),
        }
        for done in range(1, rounds + 1):
            for name, server in servers.items():
                out = WORK / f"audit-{name}-out.zip"
                cpu = procstat.cpu(server.pid)
                timing = post(server.url, archive, out)
                wait_deleted(server.url, WORK / f"audit-{name}", requests=done)
                results[name]["cpu"].append((procstat.cpu(server.pid) - cpu).total)
                results[name]["wall"].append(timing["ended"] - timing["started"])
    last = json.loads(audit.read_bytes().splitlines()[-1])
    assert last["input_sha256"] == hashlib.sha256(archive.read_bytes()).hexdigest()
    assert last["output_sha256"] == hashlib.sha256(out.read_bytes()).hexdigest()
    size = archive.stat().st_size / 1e6
    print(f"{size:.0f} MB stored zip, {PROFILE.files} files; median of {rounds} rounds")
    for name, measured in results.items():
        wall = statistics.median(measured["wall"])
        cpu = statistics.median(measured["cpu"])
        print(f"  audit {name:3}: {wall:.2f} s wall, {cpu:.2f} s server CPU  {measured}")
    off, on = (statistics.median(results[n]["wall"]) for n in ("off", "on"))
    print(f"  audit costs {on - off:+.2f} s ({(on / off - 1) * 100:+.1f}%) per request")


if __name__ == "__main__":
    main(int(sys.argv[1]) if len(sys.argv) > 1 else 3)
