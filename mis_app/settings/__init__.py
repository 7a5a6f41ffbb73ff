"""The configuration file (YAML), `MIS_<SECTION>__<KEY>` overrides, and its validation.

Invalid configuration stops start-up with a message that names each bad key. One module per
section (server, map, process, kubernetes, docker); `root` puts them together and `load`
reads them.
"""

from mis_app.settings.docker import DockerSettings
from mis_app.settings.kubernetes import (
    DEFAULT_POD_SECURITY_CONTEXT,
    DEFAULT_SECURITY_CONTEXT,
    KubernetesSettings,
    PayloadVolumeSettings,
    SecretKeyRef,
)
from mis_app.settings.load import (
    CONFIG_ENV,
    ENV_PREFIX,
    load_docker_settings,
    load_settings,
    with_map_defaults,
)
from mis_app.settings.map import MapSettings, ResourceSettings
from mis_app.settings.process import ProcessSettings
from mis_app.settings.root import Settings
from mis_app.settings.section import SettingsError
from mis_app.settings.server import AuthSettings, ServerSettings, TlsSettings

__all__ = [
    "CONFIG_ENV",
    "DEFAULT_POD_SECURITY_CONTEXT",
    "DEFAULT_SECURITY_CONTEXT",
    "ENV_PREFIX",
    "AuthSettings",
    "DockerSettings",
    "KubernetesSettings",
    "MapSettings",
    "PayloadVolumeSettings",
    "ProcessSettings",
    "ResourceSettings",
    "SecretKeyRef",
    "ServerSettings",
    "Settings",
    "SettingsError",
    "TlsSettings",
    "load_docker_settings",
    "load_settings",
    "with_map_defaults",
]
