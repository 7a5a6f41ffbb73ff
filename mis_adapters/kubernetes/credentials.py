"""How MIS reaches and authenticates to the Kubernetes API, and keeps its credentials fresh.

In a pod, the service account's token is a projected file that the kubelet rewrites before
the token expires (after an hour by default): it is read again whenever the file changes (a
`stat` per call), so MIS keeps working past the token's life without a restart. Elsewhere
the kubeconfig is used. Either way a 401 makes MIS read its credentials again once
(`Reauthentication`, one per call: a watch's stream is one, whether its request is refused or
it is sent a 401 error event) before it gives up on the call.
"""

from __future__ import annotations

import contextlib
import os
from pathlib import Path
from typing import Any, Protocol

import attrs
from kubernetes_asyncio import client, config
from kubernetes_asyncio.config.config_exception import ConfigException

from mis_core.errors import BackendUnavailable

SERVICE_ACCOUNT = Path("/var/run/secrets/kubernetes.io/serviceaccount")


class Credentials(Protocol):
    async def reload(self) -> None:
        """Read the credentials again (after the API refused them)."""


@attrs.define
class Reauthentication:
    """A refusal's one more try: the first 401 reads the credentials again (a token rotated
    under MIS); any other refusal, or a second 401, is final."""

    credentials: Credentials
    used: bool = False

    async def retry(self, code: int) -> bool:
        """Whether a call the API refused with `code` may be tried again (credentials reread)."""
        if code != 401 or self.used:
            return False
        self.used = True
        await self.credentials.reload()
        return True


@attrs.frozen
class Connection:
    api_client: client.ApiClient
    namespace: str
    credentials: Credentials


class TokenFile:
    """The service account's bearer token, read again whenever its file changes."""

    def __init__(self, path: Path, configuration: client.Configuration) -> None:
        self.path = path
        self.configuration = configuration
        self._seen: tuple[int, int, int, int] | None = None
        configuration.refresh_api_key_hook = self._refresh

    def _refresh(self, configuration: Any) -> None:
        """Called by the client before each request: cheap unless the file has changed."""
        try:
            info = self.path.stat()  # follows the ..data link the kubelet swaps
        except OSError:
            return  # mid-rotation or gone: keep the token MIS has; a 401 says if it is stale
        seen = (info.st_dev, info.st_ino, info.st_mtime_ns, info.st_size)
        if seen != self._seen:
            self._read()
            self._seen = seen

    def _read(self) -> None:
        try:
            token = self.path.read_text().strip()
        except OSError:
            return
        if token:
            self.configuration.api_key["BearerToken"] = f"Bearer {token}"

    async def reload(self) -> None:
        self._seen = None
        self._refresh(self.configuration)


@attrs.define
class Kubeconfig:
    """The kubeconfig's user, loaded again on demand."""

    path: str | None
    configuration: client.Configuration

    async def load(self) -> None:
        await config.load_kube_config(
            config_file=self.path, client_configuration=self.configuration
        )

    async def reload(self) -> None:
        with contextlib.suppress(ConfigException, OSError):  # else keep what was loaded
            await self.load()


async def connect(namespace: str, service_account: Path = SERVICE_ACCOUNT) -> Connection:
    """An API client: the pod's service account inside a cluster, else the kubeconfig.

    The namespace is `namespace` when set, else the pod's own, else the kubeconfig context's.
    """
    configuration = client.Configuration()
    credentials: Credentials
    try:
        if os.environ.get("KUBERNETES_SERVICE_HOST"):
            config.load_incluster_config(  # type: ignore[no-untyped-call]
                client_configuration=configuration,
                try_refresh_token=False,
                token_filename=str(service_account / "token"),
                cert_filename=str(service_account / "ca.crt"),
            )
            credentials = TokenFile(service_account / "token", configuration)
            if not namespace and (service_account / "namespace").exists():
                namespace = (service_account / "namespace").read_text().strip()
        else:
            kubeconfig = Kubeconfig(os.environ.get("KUBECONFIG") or None, configuration)
            await kubeconfig.load()
            credentials = kubeconfig
            if not namespace:
                _, active = config.list_kube_config_contexts(kubeconfig.path)
                namespace = ((active or {}).get("context") or {}).get("namespace", "")
    except (ConfigException, OSError) as exc:
        raise BackendUnavailable(
            f"No Kubernetes connection is configured ({exc}). Run MIS in a pod, or point "
            "KUBECONFIG at a kubeconfig file."
        ) from exc
    return Connection(client.ApiClient(configuration), namespace or "default", credentials)
