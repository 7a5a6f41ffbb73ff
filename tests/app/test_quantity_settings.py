"""Resource quantities in the configuration mean what Kubernetes means, or stop start-up."""

from __future__ import annotations

import pytest

from mis_app.settings import Settings, SettingsError, load_settings

BASE = {"MIS_MAP__COMMAND": "[app]"}


def settings_with(key: str, value: str) -> Settings:
    return load_settings(None, {**BASE, f"MIS_{key.upper().replace('.', '__')}": value})


@pytest.mark.parametrize(
    ("value", "cores", "nano_cpus"),
    [("1", 1.0, 10**9), ("2", 2.0, 2 * 10**9), ("0.5", 0.5, 5 * 10**8), ("500m", 0.5, 5 * 10**8),
     ("1m", 0.001, 10**6), ("2500m", 2.5, 25 * 10**8), (".25", 0.25, 25 * 10**7)],
)  # fmt: skip
def test_good_cpu_values(value: str, cores: float, nano_cpus: int) -> None:
    cpu = settings_with("map.resources.cpu", value).map.spec().resources.cpu
    assert (cpu.cores, cpu.nano_cpus, str(cpu)) == (cores, nano_cpus, value)


@pytest.mark.parametrize(
    ("value", "expected"),
    [("8Gi", 8 * 2**30), ("512Mi", 512 * 2**20), ("1G", 10**9), ("100M", 10**8),
     ("1.5Gi", 3 * 2**29), ("134217728", 2**27), ("2e9", 2 * 10**9), ("6Mi", 6 * 2**20)],
)  # fmt: skip
def test_good_memory_values(value: str, expected: int) -> None:
    memory = settings_with("map.resources.memory", value).map.spec().resources.memory
    assert (memory.bytes, str(memory)) == (expected, value)


# Values the old rule (a number and any suffix) accepted, but the backends read as 0 CPUs or 0
# bytes, which a container engine takes as no limit: each is now refused, naming its key.
READ_AS_ZERO = [
    ("map.resources.cpu", "2Gi", "would mean no limit"),
    ("map.resources.cpu", "1k", "would mean no limit"),
    ("map.resources.cpu", "4M", "would mean no limit"),
    ("map.resources.cpu", "0", "less than 1m"),
    ("map.resources.cpu", "0m", "less than 1m"),
    ("map.resources.cpu", "0.0001", "less than 1m"),
    ("map.resources.memory", "512m", "not a whole number of bytes (m means thousandths"),
    ("map.resources.memory", "999m", "not a whole number of bytes"),
    ("map.resources.memory", "0.5", "not a whole number of bytes"),
    ("map.resources.memory", "0", "less than 6Mi"),
    ("map.resources.memory", "0k", "less than 6Mi"),
    ("docker.shm_size", "512m", "not a whole number of bytes"),
]
NOT_QUANTITIES = [
    ("map.resources.cpu", "two", "not a Kubernetes quantity"),
    ("map.resources.cpu", "-1", "not a Kubernetes quantity"),
    ("map.resources.memory", "8GB", "not a Kubernetes quantity"),
    ("map.resources.memory", "8 gigs", "not a Kubernetes quantity"),
    ("map.resources.memory", "8gi", "not a Kubernetes quantity"),
    ("map.resources.memory", "1Ki", "less than 6Mi"),
    ("map.resources.memory", "20E", "larger than any memory limit"),
    ("docker.shm_size", "2 GiB", "not a Kubernetes quantity"),
]


@pytest.mark.parametrize(("key", "value", "message"), READ_AS_ZERO + NOT_QUANTITIES)
def test_bad_values_stop_start_up_naming_the_key(key: str, value: str, message: str) -> None:
    with pytest.raises(SettingsError) as info:
        settings_with(key, value)
    [line] = [line for line in str(info.value).splitlines() if line.strip().startswith(key)]
    assert message in line
    assert value in line


def test_the_shared_memory_size_may_stay_unset() -> None:
    assert settings_with("docker.shm_size", "").docker.shm_size == ""
    assert settings_with("docker.shm_size", "2Gi").docker.shm_size == "2Gi"
