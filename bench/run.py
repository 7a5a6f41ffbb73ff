"""`nox -s bench`: MIS against its baselines, side by side, on the same payloads and machine.

For each payload profile: MIS (the real server, process backend), the floor (`unzip`, `cp -r`,
`zip -1 -r`, no HTTP) and the naive service (bench/naive_server.py), all doing the same work
with a MAP that copies its input to its output. Also: `busy` latency at each stage of a running
request, 200 clients at once while one request runs (against a bare uvicorn app answering the
same bytes), the time from the MAP finishing to the first response byte (process backend, and
the Kubernetes backend against the API double), and MIS's output compression policies.
Writes bench/results/latest.json (and a dated copy) and bench/results/latest.png; a run of
some parts only (`nox -s bench -- burst`, `-- CT-500x512KB`) writes only its dated copy.
"""

from __future__ import annotations

import contextlib
import json
import os
import platform
import shutil
import socket
import statistics
import subprocess
import sys
import threading
import time
import zipfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import yaml
from prometheus_client.parser import text_string_to_metric_families

from bench.burst import burst, p99, run_loop
from bench.payloads import PROFILES, MiB, Profile, payload

ROOT = Path(__file__).resolve().parents[1]
WORK = ROOT / ".mis" / "bench"
RESULTS = ROOT / "bench" / "results"
MAP = [
    "sh",
    "-c",
    'cp -r "$1/." "$2" && date +%s.%N > "$3"',
    "map",
    "{input_path}",
    "{output_path}",
]
CLOCK_TICKS = os.sysconf("SC_CLK_TCK")


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def wait_healthy(url: str, process: subprocess.Popen[bytes]) -> None:
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise SystemExit(f"server exited with {process.returncode}")
        with contextlib.suppress(httpx.TransportError):
            if httpx.get(f"{url}/healthz", timeout=1).status_code == 200:
                return
        time.sleep(0.05)
    raise SystemExit("server did not start")


@contextlib.contextmanager
def serve(
    argv: list[str], env: dict[str, str] | None = None
) -> Iterator[tuple[str, subprocess.Popen[bytes]]]:
    port = free_port()
    log = open(WORK / f"server-{port}.log", "wb")  # noqa: SIM115 - closed below
    process = subprocess.Popen(
        [*argv, str(port)],
        stdout=log,
        stderr=subprocess.STDOUT,
        cwd=ROOT,
        env={**os.environ, **(env or {})},
    )  # argv ends with "--port"
    url = f"http://127.0.0.1:{port}"
    try:
        wait_healthy(url, process)
        yield url, process
    finally:
        process.terminate()
        process.wait(20)
        log.close()


def process_stats(pid: int) -> tuple[int, float]:
    """Peak RSS in bytes and CPU seconds (user + system) of `pid` itself."""
    peak = 0
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            peak = int(line.split()[1]) * 1024
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return peak, (int(fields[11]) + int(fields[12])) / CLOCK_TICKS


def post(url: str, archive: Path, out: Path, phase: list[str] | None = None) -> dict[str, float]:
    """Upload `archive` as the raw body, stream the answer to `out`; client-side timings."""

    def body() -> Iterator[bytes]:
        with open(archive, "rb") as source:
            while chunk := source.read(1024 * 1024):
                yield chunk
        if phase is not None:
            phase[0] = "running"

    started = time.time()
    first = 0.0
    with (
        httpx.stream(
            "POST",
            f"{url}/v1/inference",
            content=body(),
            timeout=600,
            headers={"Content-Type": "application/zip"},
        ) as response,
        open(out, "wb") as sink,
    ):
        for chunk in response.iter_raw(1024 * 1024):
            if not first:
                first = time.time()
                if phase is not None:
                    phase[0] = "sending"
            sink.write(chunk)
        status = response.status_code
    if status != 200:
        raise SystemExit(f"{url}: HTTP {status}: {out.read_bytes()[:300]!r}")
    return {"started": started, "first_byte": first, "ended": time.time()}


def first_byte_at(url: str, archive: Path) -> float:
    """When the response's first bytes arrive, from a plain socket: an HTTP client library
    can add its own buffering to what is measured."""
    body = archive.read_bytes()
    host, port = url.removeprefix("http://").split(":")
    with socket.create_connection((host, int(port))) as sock:
        sock.sendall(
            b"POST /v1/inference HTTP/1.1\r\nHost: bench\r\nContent-Type: application/zip\r\n"
            + f"Content-Length: {len(body)}\r\n\r\n".encode()
            + body
        )
        head = sock.recv(64)
        first = time.time()
        assert head.startswith(b"HTTP/1.1 200"), head
        while not (data := sock.recv(1 << 20)).endswith(b"0\r\n\r\n") and data:
            pass
    return first


def stage_sums(url: str) -> dict[str, float]:
    text = httpx.get(f"{url}/metrics").text
    return {
        s.labels["stage"]: s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
        if s.name == "mis_stage_duration_seconds_sum"
    }


def mis_config(
    payload_dir: Path,
    stamp: Path,
    compression: str = "adaptive",
    backend: dict[str, Any] | None = None,
) -> Path:
    config = {
        "server": {
            "payload_dir": str(payload_dir),
            "output_compression": compression,
            "log_level": "WARNING",
            "max_upload_bytes": "8GiB",
            "max_extracted_bytes": "8GiB",
        },
        "map": {"command": [*MAP, str(stamp)], "timeout_seconds": 600},
        **(backend or {}),
    }
    path = WORK / f"mis-{compression}.yaml"
    path.write_text(yaml.safe_dump(config))
    return path


def count_entries(path: Path) -> int:
    with zipfile.ZipFile(path) as zf:
        return len([i for i in zf.infolist() if not i.is_dir()])


def run_mis(profile: Profile, archive: Path, compression: str = "adaptive") -> dict[str, Any]:
    stamp = WORK / "map-finished"
    stamp.unlink(missing_ok=True)
    config = mis_config(WORK / "payload", stamp, compression)
    with serve([sys.executable, "-m", "mis_app", "serve", "--config", str(config), "--port"]) as (
        url,
        process,
    ):
        base_peak, base_cpu = process_stats(process.pid)
        timing = post(url, archive, WORK / "mis-out.zip")
        stages = stage_sums(url)
        peak, cpu = process_stats(process.pid)
    assert count_entries(WORK / "mis-out.zip") == profile.files
    wall = timing["ended"] - timing["started"]
    return {
        "wall_seconds": wall,
        "throughput_mb_s": profile.total / MiB / wall,
        "stages": stages,
        "send_seconds": timing["ended"] - timing["first_byte"],
        "peak_rss_mb": peak / MiB,
        "idle_rss_mb": base_peak / MiB,
        "cpu_seconds": cpu - base_cpu,
        "output_mb": (WORK / "mis-out.zip").stat().st_size / MiB,
    }


def run_naive(profile: Profile, archive: Path) -> dict[str, Any]:
    argv = [
        sys.executable,
        str(ROOT / "bench" / "naive_server.py"),
        "cp",
        "-r",
        "{input_path}/.",
        "{output_path}",
        "--port",
    ]
    with serve(argv) as (url, process):
        timing = post(url, archive, WORK / "naive-out.zip")
        peak, cpu = process_stats(process.pid)
    assert count_entries(WORK / "naive-out.zip") == profile.files
    wall = timing["ended"] - timing["started"]
    return {
        "wall_seconds": wall,
        "throughput_mb_s": profile.total / MiB / wall,
        "peak_rss_mb": peak / MiB,
        "cpu_seconds": cpu,
        "output_mb": (WORK / "naive-out.zip").stat().st_size / MiB,
    }


def run_floor(profile: Profile, archive: Path) -> dict[str, Any]:
    floor = WORK / "floor"
    shutil.rmtree(floor, ignore_errors=True)
    (floor / "out").mkdir(parents=True)
    steps = {}
    peak = 0
    started = time.perf_counter()
    for name, argv, cwd in [
        ("unzip", ["unzip", "-q", str(archive), "-d", str(floor / "in")], floor),
        ("cp", ["cp", "-r", str(floor / "in") + "/.", str(floor / "out")], floor),
        ("zip", ["zip", "-1", "-qr", str(floor / "out.zip"), "."], floor / "out"),
    ]:
        step = time.perf_counter()
        child = subprocess.Popen(argv, cwd=cwd)
        _, status, usage = os.wait4(child.pid, 0)  # this step's own peak memory
        child.returncode = os.waitstatus_to_exitcode(status)
        assert child.returncode == 0, argv
        steps[name] = time.perf_counter() - step
        peak = max(peak, usage.ru_maxrss * 1024)
    wall = time.perf_counter() - started
    result = {
        "wall_seconds": wall,
        "throughput_mb_s": profile.total / MiB / wall,
        "steps": steps,
        "peak_rss_mb": peak / MiB,
        "output_mb": (floor / "out.zip").stat().st_size / MiB,
    }
    shutil.rmtree(floor)
    return result


def busy_latency(archive: Path) -> dict[str, dict[str, float]]:
    """Probe with a second request every 20 ms while one big request uploads, runs and is sent."""
    stamp = WORK / "map-finished"
    config = mis_config(WORK / "payload", stamp)
    probes: dict[str, list[float]] = {"uploading": [], "running": [], "sending": []}
    phase = ["uploading"]
    done = threading.Event()
    with serve([sys.executable, "-m", "mis_app", "serve", "--config", str(config), "--port"]) as (
        url,
        _,
    ):

        def probe() -> None:
            with httpx.Client(timeout=10) as client:
                while client.get(f"{url}/v1/status").json()["state"] != "busy":  # not before it
                    if done.is_set():
                        return
                    time.sleep(0.005)
                while not done.is_set():
                    started = time.perf_counter()
                    response = client.post(
                        f"{url}/v1/inference",
                        content=b"PK\x05\x06" + bytes(18),
                        headers={"Content-Type": "application/zip"},
                    )
                    if response.status_code == 500 and response.json()["error"]["code"] == "busy":
                        probes[phase[0]].append((time.perf_counter() - started) * 1000)
                    time.sleep(0.02)

        thread = threading.Thread(target=probe)
        thread.start()
        post(url, archive, WORK / "busy-out.zip", phase)
        done.set()
        thread.join()
    return {
        stage: {
            "probes": len(values),
            "p50_ms": percentile(values, 50),
            "p99_ms": percentile(values, 99),
        }
        for stage, values in probes.items()
    }


def busy_burst(bursts: int = 9) -> dict[str, dict[str, float]]:
    """p99 of 200 simultaneous busy answers while one request runs: MIS, then a bare uvicorn app
    answering the same bytes (the floor), alternating, with the same client."""
    held = WORK / "burst"
    shutil.rmtree(held, ignore_errors=True)
    held.mkdir(parents=True)
    files = {name: held / name for name in ("started", "release", "pids")}
    config = {
        "server": {"payload_dir": str(held / "payload")},  # INFO: the access line is included
        "map": {
            "command": [
                sys.executable,
                "tests/maps/scripted_map.py",
                "{input_path}",
                "{output_path}",
            ],
            "timeout_seconds": 600,
            "env": {
                "MIS_TEST_STARTED": str(files["started"]),
                "MIS_TEST_RELEASE": str(files["release"]),
                "MIS_TEST_PIDFILE": str(files["pids"]),
            },
        },
    }
    config_file = held / "mis.yaml"
    config_file.write_text(yaml.safe_dump(config))
    waiting = held / "wait.zip"
    with zipfile.ZipFile(waiting, "w") as archive:
        archive.writestr("_mode", "wait")
    p99s: dict[str, list[float]] = {"mis": [], "floor": []}
    mis_argv = [sys.executable, "-m", "mis_app", "serve", "--config", str(config_file), "--port"]
    floor_argv = [
        sys.executable,
        "-m",
        "uvicorn",
        "bench.busy_floor:app",
        "--log-level",
        "warning",
        "--no-access-log",
        "--lifespan",
        "off",
        "--port",
    ]
    with serve(mis_argv) as (mis_url, _), serve(floor_argv) as (floor_url, _):
        holder = threading.Thread(target=post, args=(mis_url, waiting, held / "out.zip"))
        holder.start()
        while not files["started"].exists():
            time.sleep(0.01)
        ports = {"mis": int(mis_url.rsplit(":", 1)[1]), "floor": int(floor_url.rsplit(":", 1)[1])}
        for port in ports.values():
            run_loop(burst(port))  # warm-up
        for _ in range(bursts):
            for name, port in ports.items():
                latencies, answers = run_loop(burst(port))
                assert all(a.startswith(b'500 {"error":{"code":"busy"') for a in answers)
                p99s[name].append(p99(latencies) * 1000)
        files["release"].write_text("go")
        holder.join()
    return {
        name: {"median_p99_ms": statistics.median(v), "worst_p99_ms": max(v), "bursts": len(v)}
        for name, v in p99s.items()
    }


def percentile(values: list[float], p: float) -> float:
    if not values:
        return float("nan")
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(len(ordered) * p / 100))]


def first_byte_process(archive: Path, repeats: int = 15) -> dict[str, float]:
    stamp = WORK / "map-finished"
    config = mis_config(WORK / "payload", stamp)
    delays = []
    with serve([sys.executable, "-m", "mis_app", "serve", "--config", str(config), "--port"]) as (
        url,
        _,
    ):
        for _ in range(repeats):
            first = first_byte_at(url, archive)
            delays.append((first - float(stamp.read_text())) * 1000)
    return {
        "median_ms": statistics.median(delays),
        "p90_ms": percentile(delays, 90),
        "runs": repeats,
    }


def first_byte_kubernetes(archive: Path, repeats: int = 15) -> dict[str, float]:
    """The Kubernetes backend against the API double: the double's kubelet marks the pod and the
    Job finished; MIS must notice through its watches and start answering."""
    sys.path.insert(0, str(ROOT))
    from tests.k8s import kubelet
    from tests.k8s.double import KubeDouble

    finished: list[float] = []
    story = kubelet.finishes(0, lines=["done"])

    async def timed(double: KubeDouble, ns: str, job: dict[str, Any], pod: str) -> None:
        original = double.update_status

        def stamped(resource: str, namespace: str, name: str, **status: Any) -> None:
            if resource == "pods" and status.get("phase") == "Succeeded":
                finished.append(time.time())
            original(resource, namespace, name, **status)

        double.update_status = stamped  # type: ignore[method-assign]
        try:
            await story(double, ns, job, pod)
        finally:
            double.update_status = original  # type: ignore[method-assign]

    double = KubeDouble(timed).start()
    kubeconfig = double.kubeconfig(WORK / "kubeconfig")
    payload_dir = WORK / "payload-k8s"
    payload_dir.mkdir(exist_ok=True)
    backend = {
        "backend": "kubernetes",
        "kubernetes": {"payload_volume": {"host_path": str(payload_dir)}},
    }
    config = mis_config(payload_dir, WORK / "unused", backend=backend)
    data = yaml.safe_load(config.read_text())
    data["map"]["image"] = "example/copy:1"
    config.write_text(yaml.safe_dump(data))
    delays = []
    try:
        with serve(
            [sys.executable, "-m", "mis_app", "serve", "--config", str(config), "--port"],
            env={"KUBECONFIG": str(kubeconfig)},
        ) as (url, _):
            for _ in range(repeats):
                first = first_byte_at(url, archive)
                delays.append((first - finished[-1]) * 1000)
    finally:
        double.stop()
    return {
        "median_ms": statistics.median(delays),
        "p90_ms": percentile(delays, 90),
        "runs": repeats,
    }


def machine() -> dict[str, Any]:
    cpu = next(
        (
            line.split(":", 1)[1].strip()
            for line in Path("/proc/cpuinfo").read_text().splitlines()
            if line.startswith("model name")
        ),
        platform.processor(),
    )
    memory = int(Path("/proc/meminfo").read_text().split()[1]) * 1024
    return {
        "cpu": cpu,
        "cores": os.cpu_count(),
        "memory_gb": round(memory / 2**30, 1),
        "python": platform.python_version(),
        "kernel": platform.release(),
    }


def table(results: dict[str, Any]) -> str:
    lines = [
        "| profile | MIS s | floor s | naive s | MIS/floor | MIS/naive | MIS MB/s | MIS peak RSS MB | naive peak RSS MB | MIS receive / extract / job / pack s |",
        "| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |",
    ]
    for name, r in results["profiles"].items():
        m, f, n = r["mis"], r["floor"], r["naive"]
        st = m["stages"]
        lines.append(
            f"| {name} | {m['wall_seconds']:.2f} | {f['wall_seconds']:.2f} | {n['wall_seconds']:.2f} | "
            f"{m['wall_seconds'] / f['wall_seconds']:.2f} | {m['wall_seconds'] / n['wall_seconds']:.2f} | "
            f"{m['throughput_mb_s']:.0f} | {m['peak_rss_mb']:.0f} | {n['peak_rss_mb']:.0f} | "
            f"{st.get('receive', 0):.2f} / {st.get('extract', 0):.2f} / {st.get('job', 0):.2f} / {st.get('pack', 0):.2f} |"
        )
    return "\n".join(lines)


def chart(results: dict[str, Any], target: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    names = list(results["profiles"])
    sizes = [results["profiles"][n]["payload_mb"] for n in names]
    fig, (left, right) = plt.subplots(1, 2, figsize=(11, 4.2))
    for key, label, style in [
        ("mis", "MIS", "o-"),
        ("floor", "floor (unzip+cp+zip -1)", "s--"),
        ("naive", "naive service", "^:"),
    ]:
        left.plot(
            sizes, [results["profiles"][n][key]["wall_seconds"] for n in names], style, label=label
        )
        right.plot(
            sizes, [results["profiles"][n][key]["peak_rss_mb"] for n in names], style, label=label
        )
    for axis, title, unit in [
        (left, "End-to-end time", "seconds"),
        (right, "Peak memory", "RSS, MB"),
    ]:
        axis.set_xscale("log")
        axis.set_yscale("log")
        axis.set_xlabel("payload, MB")
        axis.set_ylabel(unit)
        axis.set_title(title)
        axis.grid(True, which="both", alpha=0.3)
        axis.legend()
    fig.suptitle(
        f"MIS vs baselines — {results['machine']['cores']} cores, {results['machine']['cpu']}",
        fontsize=9,
    )
    fig.tight_layout()
    fig.savefig(target, dpi=110)


def main() -> None:
    WORK.mkdir(parents=True, exist_ok=True)
    RESULTS.mkdir(parents=True, exist_ok=True)
    only = set(sys.argv[1:])
    results: dict[str, Any] = {
        "machine": machine(),
        "when": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "profiles": {},
    }
    archives = {}
    for profile in PROFILES:
        if only and profile.name not in only:
            continue
        print(f"== {profile.name}: preparing payload", flush=True)
        archive = archives[profile.name] = payload(profile, WORK / "payloads")
        entry: dict[str, Any] = {
            "payload_mb": profile.total / MiB,
            "zip_mb": archive.stat().st_size / MiB,
        }
        repeats = 5 if profile.total < 10 * MiB else 1  # small runs are noisy: take the median
        for key, run in (("floor", run_floor), ("naive", run_naive), ("mis", run_mis)):
            print(f"   {key} ...", flush=True)
            runs = sorted(
                (run(profile, archive) for _ in range(repeats)), key=lambda r: r["wall_seconds"]
            )
            entry[key] = runs[len(runs) // 2]
        results["profiles"][profile.name] = entry
    ct = next((p for p in PROFILES if p.name == "CT-500x512KB"), None)
    if ct is not None and (not only or ct.name in only):
        archive = archives[ct.name]
        print("== output compression policies (CT)", flush=True)
        results["compression"] = {
            policy: {
                k: run_mis(ct, archive, policy)[k] for k in ("wall_seconds", "output_mb", "stages")
            }
            for policy in ("adaptive", "deflate", "stored")
        }
        print("== busy latency during a CT request", flush=True)
        results["busy_latency"] = busy_latency(archive)
    if not only or "burst" in only:
        print(
            "== 200 clients at once while one request runs: MIS vs a bare uvicorn app", flush=True
        )
        results["busy_burst"] = busy_burst()
    small = payload(PROFILES[0], WORK / "payloads")
    print("== MAP finished -> first response byte", flush=True)
    results["first_byte"] = {
        "process": first_byte_process(small),
        "kubernetes": first_byte_kubernetes(small),
    }

    text = table(results)
    print()
    print(text)
    print(
        json.dumps(
            {
                k: results[k]
                for k in ("compression", "busy_latency", "busy_burst", "first_byte")
                if k in results
            },
            indent=2,
        )
    )
    missed = missed_targets(results)
    stamp = time.strftime("%Y%m%d-%H%M%S")
    (RESULTS / f"bench-{stamp}.json").write_text(json.dumps(results, indent=2) + "\n")
    if only:  # a partial run does not replace the full one the README quotes
        print(f"results: {RESULTS / f'bench-{stamp}.json'}")
    else:
        (RESULTS / "latest.json").write_text(json.dumps(results, indent=2) + "\n")
        (RESULTS / "latest.md").write_text(text + "\n")
        chart(results, RESULTS / "latest.png")
        print(f"results: {RESULTS / 'latest.json'}")
    if missed:
        raise SystemExit("targets missed:\n" + "\n".join(f"  {m}" for m in missed))


BUSY_BURST_P99_MS = 50  # the busy answers' target under a burst of 200 clients


def missed_targets(results: dict[str, Any]) -> list[str]:
    """The targets this run measured and missed (the median burst: client and server share
    the cores, and one burst in a few can meet a noisy neighbour)."""
    missed = []
    burst_p99 = results.get("busy_burst", {}).get("mis", {}).get("median_p99_ms")
    if burst_p99 is not None and burst_p99 >= BUSY_BURST_P99_MS:
        missed.append(f"busy answers under a burst: p99 {burst_p99:.1f} ms >= {BUSY_BURST_P99_MS}")
    return missed


if __name__ == "__main__":
    main()
