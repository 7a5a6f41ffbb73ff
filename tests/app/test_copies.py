"""Facts that have to be written more than once (in a script that runs outside MIS's packages,
in files of other languages) are pinned equal here, so that changing one copy fails a test."""

from __future__ import annotations

import re
import tomllib

import yaml

from mis_adapters import open_flags
from mis_adapters.process import supervisor
from mis_core.model import HOST_VERSION
from tests.harness.repo import REPO
from tools import images

CHART = REPO / "deploy" / "helm" / "monai-inference-service"


def test_the_supervisor_makes_its_report_as_mis_makes_a_new_file() -> None:
    assert supervisor.NEW_FILE == open_flags.NEW_FILE


def test_one_version_for_the_package_the_images_and_what_the_chart_deploys() -> None:
    """The chart's own `version` is the chart's to bump; what it deploys is MIS's version."""
    version = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]["version"]
    chart = yaml.safe_load((CHART / "Chart.yaml").read_text())
    map_image = yaml.safe_load((CHART / "values.yaml").read_text())["map"]["image"]
    [dockerfile] = re.findall(r"^ARG VERSION=(\S+)$", (REPO / "Dockerfile").read_text(), re.M)
    copies = {
        "mis_core.model.HOST_VERSION (a MAP's MONAI_HOSTVERSION)": HOST_VERSION,
        "Chart.yaml appVersion (the MIS image the chart runs)": chart["appVersion"],
        "values.yaml map.image.tag (the example MAP inside that image)": map_image["tag"],
        "Dockerfile VERSION (the image's label)": dockerfile,
        "tools/images.py VERSION (the images the tests build)": images.VERSION,
    }
    assert copies == dict.fromkeys(copies, version)
