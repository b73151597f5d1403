"""``pip install aauth-server[starlette]`` gives a user something that runs (issue 9 item 5):
the wheel is built from this checkout and installed into a fresh virtualenv in a temp dir,
and the README's quick start (a resource, ``python -m aauth_server.agent --dev`` and a
signed request) runs there, against the installed package only."""

from __future__ import annotations

import os
import subprocess
import sys
import venv
import zipfile
from pathlib import Path

from tests.docs.snippets import REPO, Runner, runnable_blocks

QUICK_START = 3  # the README's first runnable blocks: app.py, the servers, the agent


def _run(*args: str, cwd: Path) -> str:
    # Never from this checkout's directory: `python -c` would import the source, not the wheel.
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    done = subprocess.run(
        args, cwd=cwd, env=env, capture_output=True, text=True, timeout=600, check=False
    )
    assert done.returncode == 0, f"{args}\n{done.stdout}\n{done.stderr}"
    return done.stdout


def test_the_wheel_installs_and_the_quick_start_runs(tmp_path: Path) -> None:
    dist = tmp_path / "dist"
    _run(sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "--no-build-isolation",
         "-w", str(dist), str(REPO), cwd=tmp_path)  # fmt: skip
    (wheel,) = dist.glob("aauth_server-*.whl")
    names = zipfile.ZipFile(wheel).namelist()
    for shipped in (
        "aauth_server/agent/__main__.py",
        "aauth_server/py.typed",
        "aauth_server_starlette/__init__.py",
        "aauth_server_flask/__init__.py",
        "aauth_server_django/__init__.py",
    ):
        assert shipped in names, shipped
    assert any(n.startswith("aauth_server/person/templates/") for n in names)
    # The examples stay in the repository (README section 4): nothing top-level but ours.
    assert {n.split("/")[0] for n in names if not n.startswith("aauth_server-")} == {
        "aauth_server",
        "aauth_server_starlette",
        "aauth_server_flask",
        "aauth_server_django",
    }

    env = tmp_path / "venv"
    venv.EnvBuilder(with_pip=True).create(env)
    python = str(env / "bin" / "python")
    _run(python, "-m", "pip", "install", "-q", f"{wheel}[starlette]", cwd=tmp_path)
    where = _run(
        python, "-c", "import aauth_server, uvicorn; print(aauth_server.__file__)", cwd=tmp_path
    )
    assert where.startswith(str(env)), where  # the installed package, not this checkout

    work = tmp_path / "quickstart"
    work.mkdir()
    blocks = runnable_blocks(REPO / "README.md")[:QUICK_START]
    assert "status_code == 200" in blocks[-1].text
    runner = Runner(REPO / "README.md", work, python=python, repo_on_path=False)
    try:
        runner.run(blocks)
    finally:
        runner.close()
    assert runner.ran == [b.where for b in blocks]
