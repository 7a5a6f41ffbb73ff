"""Attack: a folder shown to the MAP that lies inside another installation's payload folder.

Found: start-up refused a declared folder that holds a payload folder (any installation's,
found by its marker) and anything inside this installation's own, but not a folder inside
another installation's: `process.read_only_paths` naming a folder in another MIS's payload
folder (or a link to one), or a MAP installed there, was shown to every MAP, with that
installation's studies in it.

The fix this test expects: a folder or file that lies in a folder marked as a payload
folder stops start-up, as one in this installation's payload folder does.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from mis_adapters.storage.layout import PAYLOAD_ROOT_MARKER
from tests.containment.probes import require_bubblewrap
from tests.containment.test_allow_list import config_with, mis

pytestmark = pytest.mark.slow


@pytest.mark.parametrize("how", ["declared", "declared through a link", "the MAP's script"])
def test_a_folder_inside_another_installations_payload_folder_stops_start_up(
    tmp_path: Path, how: str
) -> None:
    require_bubblewrap()
    other = tmp_path / "other-mis" / "payload"
    study = other / "0123456789abcdef0123456789abcdef" / "input"
    study.mkdir(parents=True)
    (other / PAYLOAD_ROOT_MARKER).write_text("another installation's\n")
    (study / "scan.dcm").write_bytes(b"a patient's study")
    script = other / "shared" / "app.py"
    script.parent.mkdir()
    script.write_text("pass\n")
    link = tmp_path / "models"
    link.symlink_to(study.parent)
    if how == "the MAP's script":
        config = config_with(tmp_path)
        text = config.read_text().replace("- -c\n  - pass", f"- {script}")
        assert str(script) in text
        config.write_text(text)
    else:
        shown = link if how == "declared through a link" else study.parent
        config = config_with(tmp_path, read_only_paths=[str(shown)])
    ran = mis("config", "check", "--config", str(config))
    assert ran.returncode == 2, f"{how}: started; the MAP would see {study}\n{ran.stderr}"
    marked = f"payload folder (marked {PAYLOAD_ROOT_MARKER}) or lies in it ({other})"
    assert marked in ran.stderr


def test_a_folder_beside_another_installations_payload_folder_is_still_shown(
    tmp_path: Path,
) -> None:
    require_bubblewrap()
    other = tmp_path / "other-mis" / "payload"
    other.mkdir(parents=True)
    (other / PAYLOAD_ROOT_MARKER).write_text("another installation's\n")
    models = tmp_path / "other-mis" / "models"
    models.mkdir()
    ran = mis(
        "config", "check", "--config", str(config_with(tmp_path, read_only_paths=[str(models)]))
    )
    assert ran.returncode == 0, ran.stderr
    assert f"#   {models} (process.read_only_paths)" in ran.stderr.splitlines()
