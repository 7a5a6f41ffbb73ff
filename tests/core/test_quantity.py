"""Kubernetes quantities: what each means, and what is refused."""

from __future__ import annotations

import pytest

from mis_core.quantity import CpuQuantity, MemoryQuantity, Quantity, QuantityError


@pytest.mark.parametrize(
    ("text", "cores", "nano_cpus", "threads"),
    [
        ("2", 2.0, 2_000_000_000, 2),
        ("1.5", 1.5, 1_500_000_000, 1),
        ("500m", 0.5, 500_000_000, 1),
        ("2500m", 2.5, 2_500_000_000, 2),
        ("1m", 0.001, 1_000_000, 1),
        (".25", 0.25, 250_000_000, 1),
        ("0.0015", 0.0015, 1_500_000, 1),
    ],
)
def test_cpu_quantities(text: str, cores: float, nano_cpus: int, threads: int) -> None:
    cpu = CpuQuantity.parse(text)
    assert (cpu.cores, cpu.nano_cpus, cpu.threads, str(cpu)) == (cores, nano_cpus, threads, text)


@pytest.mark.parametrize(
    ("text", "expected"),
    [("8Gi", 8 * 2**30), ("512Mi", 512 * 2**20), ("1G", 10**9), ("10M", 10**7),
     ("1.5Gi", 3 * 2**29), ("7340032", 7 * 2**20), ("1e9", 10**9), ("1E", 10**18),
     ("8e6", 8 * 10**6), ("1Ti", 2**40), ("6Mi", 6 * 2**20)],
)  # fmt: skip
def test_memory_quantities(text: str, expected: int) -> None:
    assert MemoryQuantity.parse(text).bytes == expected


@pytest.mark.parametrize(
    "text",
    ["", " 1", "1 ", "8GB", "8gi", "1.2.3", "-1", "+1", "1e", "Gi", "1Gi ", "١", "1e100", "10E"],
)
def test_what_is_not_a_quantity_is_refused(text: str) -> None:
    with pytest.raises(QuantityError):
        Quantity.parse(text)
