"""Every runnable block of README.md and docs/*.md runs as written, against loopback servers
(issue 9 item 1): see :mod:`tests.docs.snippets` for the marker and what each kind does."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.docs.snippets import DOCUMENTS, REPO, Runner, blocks, port_map, remap, runnable_blocks

RUNNABLE_DOCUMENTS = [d for d in DOCUMENTS if runnable_blocks(d)]


@pytest.mark.parametrize("document", RUNNABLE_DOCUMENTS, ids=lambda d: d.name)
def test_runnable_blocks_run_as_written(document: Path, tmp_path: Path) -> None:
    runner = Runner(document, tmp_path)
    try:
        runner.run()
    finally:
        runner.close()
    assert runner.ran == [b.where for b in runnable_blocks(document)]


def test_every_document_with_an_app_has_runnable_blocks() -> None:
    names = {d.name for d in RUNNABLE_DOCUMENTS}
    assert {"README.md", "starlette.md", "flask.md", "django.md"} <= names


def test_the_readme_reaches_a_signed_200_on_its_own() -> None:
    """The quick start: a resource, the development agent provider and a signed request."""
    readme = [b for b in runnable_blocks(REPO / "README.md")]
    served = " ".join(b.text for b in readme if "serve" in b.options)
    assert "python -m aauth_server.agent --dev" in served and "uvicorn app:app" in served
    assert any("Agent.enroll_dev" in b.text and "status_code == 200" in b.text for b in readme)
    assert any("AgentFlow(" in b.text for b in readme)


def test_the_parser_and_the_port_map(tmp_path: Path) -> None:
    doc = tmp_path / "doc.md"
    doc.write_text(
        "text\n```python runnable file=app.py\nx = 'http://127.0.0.1:8001'\n```\n"
        "```sh runnable serve\nuvicorn app:app --port 8001  # note\n```\n"
        "  ```python\n  y = 1\n  ```\n```\nplain\n```\n",
        encoding="utf-8",
    )
    found = blocks(doc)
    assert [(b.language, b.options, b.text) for b in found] == [
        ("python", {"runnable": "", "file": "app.py"}, "x = 'http://127.0.0.1:8001'"),
        ("sh", {"runnable": "", "serve": ""}, "uvicorn app:app --port 8001  # note"),
        ("python", {}, "y = 1"),
        ("", {}, "plain"),
    ]
    ports = port_map([b.text for b in found])
    assert list(ports) == ["8001"] and ports["8001"] != "8001"
    assert remap(found[1].text, ports) == f"uvicorn app:app --port {ports['8001']}  # note"
