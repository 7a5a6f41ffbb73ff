"""The Helm chart rendered by the real helm binary, and ways to look into what it renders."""

from __future__ import annotations

import subprocess
from pathlib import Path
from typing import Any

import yaml

from mis_app.settings import load_settings
from tests.harness.repo import REPO
from tests.harness.unavailable import require_tool

CHART = REPO / "deploy" / "helm" / "monai-inference-service"


KUBERNETES_VERSIONS = ["1.35.0", "1.36.0", "1.37.0"]


def helm(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([require_tool("helm"), *args], capture_output=True, text=True, timeout=60)


def render(*values: Path, sets: tuple[str, ...] = ()) -> list[dict[str, Any]]:
    args = ["template", "mis", str(CHART), "--namespace", "radiology"]
    for path in values:
        args += ["-f", str(path)]
    for item in sets:
        args += ["--set", item]
    result = helm(*args)
    assert result.returncode == 0, result.stderr
    return [doc for doc in yaml.safe_load_all(result.stdout) if doc]


def schema_refusal(values: dict[str, Any], folder: Path) -> str:
    """What helm says refusing `values` against the chart's schema (it must refuse them)."""
    bad = folder / "bad-values.yaml"
    bad.write_text(yaml.safe_dump(values))
    result = helm("template", "mis", str(CHART), "-f", str(bad))
    assert result.returncode != 0
    assert "values don't meet the specifications of the schema" in result.stderr
    return result.stderr


def find(docs: list[dict[str, Any]], kind: str) -> dict[str, Any]:
    [doc] = [
        d
        for d in docs
        if d["kind"] == kind and "helm.sh/hook" not in d["metadata"].get("annotations", {})
    ]
    return doc


def mis_settings_from(docs: list[dict[str, Any]], tmp_path: Path):  # type: ignore[no-untyped-def]
    config = tmp_path / "mis.yaml"
    config.write_text(find(docs, "ConfigMap")["data"]["mis.yaml"])
    return load_settings(config, {})


def deployment_pod(docs: list[dict[str, Any]]) -> dict[str, Any]:
    return find(docs, "Deployment")["spec"]["template"]["spec"]


def mount_secret_as_the_kubelet_would(docs: list[dict[str, Any]], secret: str, data: str) -> Path:
    """Write `data` where the Deployment mounts `secret`'s key; the file's path."""
    pod = deployment_pod(docs)
    [volume] = [v for v in pod["volumes"] if v.get("secret", {}).get("secretName") == secret]
    [mount] = [m for m in pod["containers"][0]["volumeMounts"] if m["name"] == volume["name"]]
    assert mount["readOnly"] is True
    [item] = volume["secret"]["items"]
    path = Path(mount["mountPath"]) / item["path"]
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(data)
    return path
