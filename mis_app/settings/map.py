"""The `map` section: the MAP's image, command, folders, resources and timeout."""

from __future__ import annotations

from pydantic import Field, field_validator

from mis_app.settings.section import Section
from mis_core.model import MapSpec, Resources
from mis_core.quantity import CpuQuantity, MemoryQuantity

# The MAP conventions' folders and the spec's 50 s timeout are the core's MapSpec defaults;
# the settings take them from there rather than writing them again.
_SPEC = MapSpec()


class ResourceSettings(Section):
    """Kubernetes quantities, checked by the one parser the backends read them with."""

    cpu: str = str(_SPEC.resources.cpu)
    memory: str = str(_SPEC.resources.memory)
    gpu: int = Field(0, ge=0)

    @field_validator("cpu")
    @classmethod
    def _cpu(cls, value: str) -> str:
        return str(CpuQuantity.parse(value))

    @field_validator("memory")
    @classmethod
    def _memory(cls, value: str) -> str:
        return str(MemoryQuantity.parse(value))


class MapSettings(Section):
    image: str = ""
    command: list[str] = []
    args: list[str] = []
    env: dict[str, str] = {}
    input_path: str = _SPEC.input_path
    output_path: str = _SPEC.output_path
    resources: ResourceSettings = ResourceSettings()
    timeout_seconds: float = Field(_SPEC.timeout_seconds, gt=0)
    # Take command, folders, resources and timeout from the image's MAP manifest where this
    # configuration leaves them unset (needs the image in the engine docker.url names).
    from_manifest: bool = False

    def spec(self) -> MapSpec:
        return MapSpec(
            image=self.image,
            command=tuple(self.command),
            args=tuple(self.args),
            env=dict(self.env),
            input_path=self.input_path,
            output_path=self.output_path,
            resources=Resources(**self.resources.model_dump()),
            timeout_seconds=self.timeout_seconds,
        )
