"""The composition root builds only what the configuration asks for."""

from __future__ import annotations

import subprocess
import sys


def test_the_process_backend_does_not_load_the_kubernetes_client() -> None:
    code = (
        "import sys, mis_app.bootstrap, mis_app.cli\n"
        "assert 'kubernetes_asyncio' not in sys.modules, 'loaded for nothing: ~50 MB'\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True, timeout=60)
