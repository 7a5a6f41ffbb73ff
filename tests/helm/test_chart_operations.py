"""The chart runs MIS the way an operator needs: updates, stops, auth and an Ingress that
carries studies."""

from __future__ import annotations

from pathlib import Path

import httpx
import pytest
import yaml

from tests.harness.servers import ServerFactory
from tests.helm.chart import (
    deployment_pod,
    find,
    mis_settings_from,
    mount_secret_as_the_kubelet_would,
    render,
)

GiB = 1024**3


@pytest.mark.parametrize(
    ("sets", "strategy"),
    [
        ((), "Recreate"),  # the default claim is ReadWriteOnce: one pod at a time
        (("payload.persistentVolumeClaim.accessModes={ReadWriteMany}",), "RollingUpdate"),
        (("payload.hostPath=/srv/mis",), "RollingUpdate"),
        (("payload.nodeLocal=false",), "RollingUpdate"),
        (("updateStrategy.type=Recreate", "payload.hostPath=/srv/mis"), "Recreate"),
    ],
    ids=["rwo", "rwx", "host-path", "not-node-local", "explicit"],
)
def test_the_update_strategy_follows_the_payload_volume(
    sets: tuple[str, ...], strategy: str
) -> None:
    rendered = find(render(sets=sets), "Deployment")["spec"]["strategy"]
    assert rendered["type"] == strategy
    if strategy == "RollingUpdate":  # the new pod is ready before the old one is stopped
        assert rendered["rollingUpdate"] == {"maxSurge": 1, "maxUnavailable": 0}


@pytest.mark.parametrize(
    ("sets", "grace"),
    [
        ((), 50 + 30),
        (("map.timeoutSeconds=120",), 120 + 30),
        (("server.shutdownGraceSeconds=200",), 200),
    ],
    ids=["default", "longer-map", "explicit"],
)
def test_the_pod_may_take_longer_to_stop_than_mis_grace_lets_the_study_finish(
    tmp_path: Path, sets: tuple[str, ...], grace: int
) -> None:
    docs = render(sets=sets)
    settings = mis_settings_from(docs, tmp_path)
    assert settings.server.shutdown_grace_seconds == grace  # what MIS itself waits
    assert deployment_pod(docs)["terminationGracePeriodSeconds"] > grace
    if not any(value.startswith("server.shutdownGraceSeconds=") for value in sets):
        # the chart's default is the one MIS would take with the setting left out
        server = settings.server.model_copy(update={"shutdown_grace_seconds": None})
        assert settings.model_copy(update={"server": server}).shutdown_grace_seconds == grace


def test_mis_pods_know_their_name_and_uid_for_the_jobs_they_own() -> None:
    [container] = deployment_pod(render())["containers"]
    fields = {e["name"]: e["valueFrom"]["fieldRef"]["fieldPath"] for e in container["env"]}
    assert fields == {
        "NODE_NAME": "spec.nodeName",
        "POD_NAME": "metadata.name",
        "POD_UID": "metadata.uid",
    }


def test_auth_from_an_existing_secret_refuses_a_request_without_its_token(
    tmp_path: Path, mis_server: ServerFactory
) -> None:
    docs = render(sets=("auth.existingSecret=mis-tokens", f"auth.mountPath={tmp_path / 'auth'}"))
    tokens = mount_secret_as_the_kubelet_would(
        docs, "mis-tokens", "# the radiology team\ns3cret-token\n"
    )
    config = yaml.safe_load(find(docs, "ConfigMap")["data"]["mis.yaml"])
    assert config["server"]["auth"]["tokens_file"] == str(tokens)
    # the rendered configuration as it is, but for the process backend and a local folder
    env = {
        "MIS_BACKEND": "process",
        "MIS_SERVER__HOST": "127.0.0.1",
        "MIS_SERVER__PAYLOAD_DIR": str(tmp_path / "payload"),
    }
    with mis_server(tmp_path, config=config, env=env) as server:
        refused = httpx.get(f"{server.url}/v1/status")
        wrong = httpx.get(f"{server.url}/v1/status", headers={"Authorization": "Bearer nope"})
        allowed = httpx.get(
            f"{server.url}/v1/status", headers={"Authorization": "Bearer s3cret-token"}
        )
    assert refused.status_code == wrong.status_code == 401
    assert refused.json()["error"]["code"] == "unauthorized"
    assert allowed.status_code == 200


def test_without_a_secret_auth_stays_off(tmp_path: Path) -> None:
    docs = render()
    assert mis_settings_from(docs, tmp_path).server.auth.tokens_file is None
    assert not [v for v in deployment_pod(docs)["volumes"] if "secret" in v]


def nginx_ingress(*sets: str) -> dict[str, str]:
    base = ("ingress.enabled=true", "ingress.className=nginx")
    return find(render(sets=(*base, *sets)), "Ingress")["metadata"]["annotations"]


def test_an_nginx_ingress_lets_studies_through_as_the_values_say() -> None:
    annotations = nginx_ingress(
        "server.maxUploadBytes=8GiB", "map.timeoutSeconds=120", "server.uploadIdleTimeoutSeconds=45"
    )
    prefix = "nginx.ingress.kubernetes.io/"
    size = annotations[prefix + "proxy-body-size"]
    assert size.endswith("m")
    assert int(size[:-1]) * 2**20 > 8 * GiB  # nginx's m is MiB
    assert int(size[:-1]) * 2**20 <= 8 * GiB + 2 * 2**20
    assert int(annotations[prefix + "proxy-read-timeout"]) > 120  # waits out the MAP
    assert int(annotations[prefix + "proxy-send-timeout"]) > 45
    assert annotations[prefix + "proxy-request-buffering"] == "off"  # MIS's own limits apply
    assert annotations[prefix + "proxy-buffering"] == "off"


@pytest.mark.parametrize(
    ("value", "mebibytes"),
    # rounded up to MiB, plus one for the form's framing
    [("10GiB", 10 * 1024 + 1), ("500MB", 477 + 1), ("1048576", 1 + 1), ("1.5GiB", 1536 + 1)],
)
def test_the_body_limit_reads_sizes_as_mis_does(value: str, mebibytes: int) -> None:
    annotations = nginx_ingress(f"server.maxUploadBytes={value}")
    assert annotations["nginx.ingress.kubernetes.io/proxy-body-size"] == f"{mebibytes}m"


def test_ingress_annotations_of_ones_own_win_and_other_controllers_get_none_of_nginx() -> None:
    own = nginx_ingress("ingress.annotations.nginx\\.ingress\\.kubernetes\\.io/proxy-body-size=20g")
    assert own["nginx.ingress.kubernetes.io/proxy-body-size"] == "20g"
    traefik = find(render(sets=("ingress.enabled=true", "ingress.className=traefik")), "Ingress")[
        "metadata"
    ].get("annotations", {})
    assert not [key for key in traefik if key.startswith("nginx.")]
