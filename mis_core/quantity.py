"""Resource quantities as Kubernetes writes them, parsed once, strictly, for every backend."""

from __future__ import annotations

import math
import re
from fractions import Fraction
from typing import ClassVar, Self

import attrs

# Kubernetes' quantity grammar, unsigned: a decimal number, then a binary suffix (Ki..Ei), a
# decimal one (m, k..E) or a decimal exponent (e3, E-2). "1E" is exa, "1E3" a thousand.
_QUANTITY = re.compile(
    r"(?P<number>[0-9]+(?:\.[0-9]*)?|\.[0-9]+)"
    r"(?:[eE](?P<exponent>[+-]?[0-9]{1,2})|(?P<suffix>[KMGTPE]i|[mkMGTPE])?)"
)
_SCALE = {
    "": Fraction(1),
    "m": Fraction(1, 1000),
    **{unit: Fraction(1000**power) for power, unit in enumerate("kMGTPE", 1)},
    **{f"{unit}i": Fraction(1024**power) for power, unit in enumerate("KMGTPE", 1)},
}
_LARGEST = 2**63 - 1  # Kubernetes and container engines keep quantities in 64 bits


class QuantityError(ValueError):
    """A resource quantity that cannot be used, with what to write instead."""


@attrs.frozen
class Quantity:
    """A Kubernetes resource quantity: the text as written (what a Job gets) and its exact value.

    `parse` is the one parser of quantities in MIS: settings validate with it, and every
    backend reads its numbers from it, so nothing accepted can later mean zero or no limit.
    """

    text: str
    value: Fraction
    suffix: str

    KIND: ClassVar[str] = "quantity"

    @classmethod
    def parse(cls, text: str) -> Self:
        match = _QUANTITY.fullmatch(text)
        if match is None:
            raise QuantityError(
                f"{text!r} is not a Kubernetes quantity: write a number with an optional "
                "suffix (m, k, M, G, T, P, E, Ki, Mi, Gi, Ti, Pi, Ei), such as 500m or 8Gi"
            )
        number = Fraction(match["number"])
        if match["exponent"] is not None:
            value, suffix = number * Fraction(10) ** int(match["exponent"]), "e"
        else:
            suffix = match["suffix"] or ""
            value = number * _SCALE[suffix]
        if value > _LARGEST:
            raise QuantityError(f"{text} is larger than any {cls.KIND} limit can be")
        quantity = cls(text, value, suffix)
        quantity.check()
        return quantity

    def check(self) -> None:
        """Raise QuantityError when the value cannot mean what the key asks for."""

    def __str__(self) -> str:
        return self.text


class CpuQuantity(Quantity):
    """CPUs, counted in cores as Kubernetes counts them: "2", "1.5", "500m" (half a core)."""

    KIND = "CPU"
    SMALLEST = Fraction(1, 1000)

    def check(self) -> None:
        if self.suffix not in ("", "m"):
            meaning = "" if self.suffix == "e" else f" ({self.text} CPUs would mean no limit)"
            raise QuantityError(
                f"{self.text} is not a number of CPUs{meaning}: CPUs are counted in cores "
                "(2, 1.5) or in thousandths of a core (500m)"
            )
        if self.value < self.SMALLEST:
            raise QuantityError(
                f"{self.text} CPU is less than 1m (a thousandth of a core): almost nothing, "
                "and a container engine reads 0 as no limit; write at least 1m, e.g. 500m or 2"
            )

    @property
    def cores(self) -> float:
        return float(self.value)

    @property
    def nano_cpus(self) -> int:
        return math.ceil(self.value * 10**9)

    @property
    def threads(self) -> int:
        """Threads for numeric libraries: whole cores, at least one ("1.5" → 1, "500m" → 1)."""
        return max(1, math.floor(self.value))


class MemoryQuantity(Quantity):
    """Bytes: "8Gi" (8 × 2**30), "512M" (512 × 10**6), "1073741824"."""

    KIND = "memory"
    SMALLEST = 6 * 2**20  # the smallest memory limit container engines accept

    def check(self) -> None:
        if self.value.denominator != 1:
            milli = (
                " (m means thousandths: use Mi or M for megabytes)" if self.suffix == "m" else ""
            )
            raise QuantityError(
                f"{self.text} is not a whole number of bytes{milli}; write e.g. 512Mi or 8Gi"
            )
        if self.value < self.SMALLEST:
            raise QuantityError(
                f"{self.text} of memory is less than 6Mi: almost nothing, and a container "
                "engine reads 0 as no limit; write e.g. 512Mi or 8Gi"
            )

    @property
    def bytes(self) -> int:
        return int(self.value)
