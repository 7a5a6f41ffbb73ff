"""The naive service, for comparison: what a straightforward implementation does.

It reads the whole upload into memory, `extractall`s it, runs the MAP, writes the output zip
to a temporary file (deflate, the library's default level), then sends that file.
    python bench/naive_server.py MAP_COMMAND... --port PORT
"""

from __future__ import annotations

import io
import shutil
import subprocess
import sys
import tempfile
import zipfile
from pathlib import Path

import uvicorn
from starlette.applications import Starlette
from starlette.background import BackgroundTask
from starlette.requests import Request
from starlette.responses import FileResponse, PlainTextResponse, Response
from starlette.routing import Route

COMMAND = sys.argv[1:-2]


async def inference(request: Request) -> Response:
    data = await request.body()
    work = Path(tempfile.mkdtemp())
    (work / "input").mkdir()
    (work / "output").mkdir()
    zipfile.ZipFile(io.BytesIO(data)).extractall(work / "input")
    argv = [
        a.replace("{input_path}", str(work / "input")).replace(
            "{output_path}", str(work / "output")
        )
        for a in COMMAND
    ]
    subprocess.run(argv, check=True)  # noqa: ASYNC221 - naive on purpose: it blocks the loop
    result = work / "output.zip"
    with zipfile.ZipFile(result, "w", compression=zipfile.ZIP_DEFLATED) as zf:
        for path in sorted((work / "output").rglob("*")):
            if path.is_file():
                zf.write(path, path.relative_to(work / "output").as_posix())
    return FileResponse(
        result, media_type="application/zip", background=BackgroundTask(shutil.rmtree, work)
    )


async def healthz(request: Request) -> Response:
    return PlainTextResponse("ok")


app = Starlette(
    routes=[Route("/v1/inference", inference, methods=["POST"]), Route("/healthz", healthz)]
)

if __name__ == "__main__":
    uvicorn.run(app, host="127.0.0.1", port=int(sys.argv[-1]), log_level="warning")
