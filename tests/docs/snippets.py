"""Run the fenced blocks of README.md and docs/*.md that are marked runnable.

The marker is the fence's info string (contributors: README.md, "Runnable snippets"):

- ```` ```python runnable ````: run as a script (``python block.py`` in the document's
  scratch directory); it must exit 0.
- ```` ```python runnable file=app.py ````: written as ``app.py`` in that directory, not run
  (a server block below serves it, a later script imports it).
- ```` ```sh runnable serve ````: every command line is a server kept running for the rest of
  the document; the runner waits until its ``--port`` accepts connections.
- ```` ```sh runnable ````: every command line is run and must exit 0.

Blocks run in document order, one scratch directory per document.  The loopback ports the
documents use (8000-8099 after ``127.0.0.1:``, ``localhost:`` or ``--port``) are mapped to
free ports, the same port for the same number throughout one document.  ``python`` and the
console scripts ``uvicorn`` and ``flask`` run with this interpreter.  ``BROWSER`` is a
scripted person (:mod:`tests.docs.person`): ``webbrowser.open(link)`` signs in as the demo
person and approves what the consent page shows.
"""

from __future__ import annotations

import os
import re
import shlex
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
DOCUMENTS = (REPO / "README.md", *sorted((REPO / "docs").glob("*.md")))
_FENCE = re.compile(r"^(?P<indent> *)(?P<fence>`{3,})(?P<info>[^`]*)$")
_PORT = re.compile(r"(?<=127\.0\.0\.1:)(80\d\d)\b|(?<=localhost:)(80\d\d)\b|(?<=--port )(80\d\d)\b")
_CONSOLE_SCRIPTS = {"python": [], "uvicorn": ["-m", "uvicorn"], "flask": ["-m", "flask"]}
SCRIPT_TIMEOUT = 90.0
SERVER_TIMEOUT = 30.0


@dataclass(frozen=True)
class Block:
    document: Path
    line: int
    language: str
    options: dict[str, str]
    text: str

    @property
    def runnable(self) -> bool:
        return "runnable" in self.options

    @property
    def where(self) -> str:
        return f"{self.document.name}:{self.line}"


def blocks(document: Path) -> list[Block]:
    """Every fenced block of ``document``, with its info string parsed into options."""
    found: list[Block] = []
    lines = document.read_text(encoding="utf-8").splitlines()
    i = 0
    while i < len(lines):
        match = _FENCE.match(lines[i])
        if match is None:
            i += 1
            continue
        indent, fence = len(match["indent"]), match["fence"]
        words = match["info"].split()
        start, body = i + 1, []
        i += 1
        while i < len(lines) and lines[i].strip() != fence:
            body.append(lines[i][indent:] if lines[i][:indent].isspace() else lines[i])
            i += 1
        i += 1
        options = {}
        for word in words[1:]:
            name, _, value = word.partition("=")
            options[name] = value
        found.append(Block(document, start, words[0] if words else "", options, "\n".join(body)))
    return found


def runnable_blocks(document: Path) -> list[Block]:
    return [b for b in blocks(document) if b.runnable]


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def port_map(texts: list[str]) -> dict[str, str]:
    ports: dict[str, str] = {}
    for text in texts:
        for match in _PORT.finditer(text):
            number = next(g for g in match.groups() if g)
            ports.setdefault(number, str(free_port()))
    return ports


def remap(text: str, ports: dict[str, str]) -> str:
    return _PORT.sub(lambda m: ports[next(g for g in m.groups() if g)], text)


def command(line: str, python: str = sys.executable) -> list[str]:
    words = shlex.split(line, comments=True)
    if words and words[0] in _CONSOLE_SCRIPTS:
        return [python, *_CONSOLE_SCRIPTS[words[0]], *words[1:]]
    return words


def commands(text: str, python: str = sys.executable) -> Iterator[list[str]]:
    for line in text.splitlines():
        words = command(line, python)
        if words:
            yield words


class SnippetFailed(AssertionError):
    pass


@dataclass
class Runner:
    """Runs one document's runnable blocks in ``workdir``; :meth:`close` stops its servers.

    ``python`` runs them (another virtualenv's, to try an installed wheel); ``repo_on_path``
    puts this checkout on ``PYTHONPATH`` (off when the code under test is the installed one).
    """

    document: Path
    workdir: Path
    python: str = sys.executable
    repo_on_path: bool = True
    ports: dict[str, str] = field(default_factory=dict)
    servers: list[tuple[list[str], subprocess.Popen[str], Path]] = field(default_factory=list)
    ran: list[str] = field(default_factory=list)

    def __post_init__(self) -> None:
        person = self.workdir / "browser"
        person.write_text(f"#!{sys.executable}\nfrom tests.docs.person import main\nmain()\n")
        person.chmod(0o755)
        self.env = {
            **os.environ,
            "BROWSER": str(person),
            "PYTHONPATH": str(REPO) if self.repo_on_path else "",
            "PYTHONUNBUFFERED": "1",
            "NO_PROXY": "127.0.0.1,localhost",
        }

    def run(self, todo: list[Block] | None = None) -> None:
        todo = runnable_blocks(self.document) if todo is None else todo
        if not todo:
            raise SnippetFailed(f"{self.document.name} has no runnable block")
        self.ports = port_map([b.text for b in todo])
        for index, block in enumerate(todo):
            text = remap(block.text, self.ports)
            if block.language == "python":
                self._python(block, text, index)
            elif block.language == "sh":
                self._sh(block, text)
            else:
                raise SnippetFailed(f"{block.where}: runnable {block.language!r} is not supported")
            self.ran.append(block.where)

    def _python(self, block: Block, text: str, index: int) -> None:
        name = block.options.get("file") or f"_block_{index}.py"
        path = self.workdir / name
        path.write_text(text + "\n", encoding="utf-8")
        if block.options.get("file"):
            return
        self._check(block, [self.python, name])

    def _sh(self, block: Block, text: str) -> None:
        for words in commands(text, self.python):
            if "serve" in block.options:
                self._serve(block, words)
            else:
                self._check(block, words)

    def _check(self, block: Block, words: list[str]) -> None:
        try:
            done = subprocess.run(
                words,
                cwd=self.workdir,
                env=self.env,
                capture_output=True,
                text=True,
                timeout=SCRIPT_TIMEOUT,
                check=False,
            )
        except subprocess.TimeoutExpired as exc:
            raise SnippetFailed(f"{block.where}: {words} timed out\n{exc.stdout}\n{exc.stderr}")
        if done.returncode != 0:
            raise SnippetFailed(
                f"{block.where}: {' '.join(words)} exited {done.returncode}\n"
                f"--- stdout\n{done.stdout}\n--- stderr\n{done.stderr}\n{self._server_logs()}"
            )

    def _serve(self, block: Block, words: list[str]) -> None:
        if "--port" not in words:
            raise SnippetFailed(f"{block.where}: a served command needs --port: {words}")
        port = int(words[words.index("--port") + 1])
        log = self.workdir / f"server-{port}.log"
        with log.open("w") as out:  # the child keeps its own copy of the descriptor
            process = subprocess.Popen(
                words,
                cwd=self.workdir,
                env=self.env,
                stdout=out,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                text=True,
            )
        self.servers.append((words, process, log))
        deadline = time.monotonic() + SERVER_TIMEOUT
        while time.monotonic() < deadline:
            if process.poll() is not None:
                raise SnippetFailed(
                    f"{block.where}: {' '.join(words)} exited {process.returncode}\n"
                    + log.read_text()
                )
            with socket.socket() as sock:
                sock.settimeout(0.5)
                if sock.connect_ex(("127.0.0.1", port)) == 0:
                    return
            time.sleep(0.1)
        raise SnippetFailed(f"{block.where}: {' '.join(words)} never listened on {port}")

    def _server_logs(self) -> str:
        return "\n".join(
            f"--- {' '.join(words[1:])}\n{log.read_text()[-3000:]}"
            for words, _, log in self.servers
        )

    def close(self) -> None:
        for _, process, _ in self.servers:
            if process.poll() is None:
                process.terminate()
        for _, process, _ in self.servers:
            try:
                process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()
