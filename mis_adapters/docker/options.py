"""What the docker backend takes from the configuration, built by the bootstrap from it.

No defaults here: the settings state them, once.
"""

from __future__ import annotations

from typing import Literal

import attrs

from mis_adapters.docker.container import ContainerOptions

# When the image is pulled; the settings take their choices from this one type.
PullPolicy = Literal["missing", "always", "never"]


@attrs.frozen
class DockerOptions:
    container: ContainerOptions  # what each request's container is made with
    image: str  # map.image: pulled ahead, and when missing, as `pull` allows
    pull: PullPolicy  # docker.pull
    stop_grace_seconds: float  # docker.stop_grace_seconds: SIGTERM, then SIGKILL after it
    map_log_bytes: int  # server.map_log_max_bytes: of each request's MAP output, in MIS's log
