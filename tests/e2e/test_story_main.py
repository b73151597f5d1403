"""The demo scripts' exit statuses (example_apps._procs.story_main): a story's own status, 2
with the app's output when an example did not start, 130 on Ctrl-C; and a mistyped --store
given to a demo or an example server: a one-line usage error, never a traceback."""

from __future__ import annotations

import subprocess
import sys

import pytest

from example_apps._procs import AppStartError, story_main


def test_the_story_status_is_the_exit_status() -> None:
    assert story_main("Demo", lambda: 0) == 0
    assert story_main("Demo", lambda: 1) == 1


def test_an_app_that_did_not_start_is_2_with_its_output(
    capsys: pytest.CaptureFixture[str],
) -> None:
    def fails() -> int:
        raise AppStartError("resource exited: Traceback ... boom")

    assert story_main("Four-party demo", fails) == 2
    err = capsys.readouterr().err
    assert "Four-party demo FAILED: an example app did not start." in err
    assert "boom" in err


def test_ctrl_c_is_130(capsys: pytest.CaptureFixture[str]) -> None:
    def interrupted() -> int:
        raise KeyboardInterrupt

    assert story_main("Demo", interrupted) == 130
    assert "Interrupted; servers stopped." in capsys.readouterr().err


def test_other_errors_are_not_swallowed() -> None:
    def broken() -> int:
        raise ValueError("a bug in the story")

    with pytest.raises(ValueError, match="a bug in the story"):
        story_main("Demo", broken)


@pytest.mark.parametrize("module", ["example_apps.three_party", "example_apps.demo"])
def test_a_demo_with_an_unknown_store_says_so_before_starting_anything(module: str) -> None:
    done = subprocess.run(
        [sys.executable, "-m", module, "--store", "nosuch://x"],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert done.returncode == 2, done.stdout + done.stderr
    assert "--store: store 'nosuch://x' is not a storage URI" in done.stderr
    assert "Traceback" not in done.stderr


@pytest.mark.parametrize(
    ("module", "extra"),
    [
        ("example_apps.person_server", ()),
        ("example_apps.person_server", ("--store-prefix", "p")),
        ("example_apps.access_server", ()),
    ],
)
def test_an_example_server_with_an_unknown_store_is_a_usage_error(
    module: str, extra: tuple[str, ...]
) -> None:
    done = subprocess.run(
        [sys.executable, "-m", module, "--dev", "--port", "18999", "--store", "nosuch://x", *extra],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert done.returncode == 2, done.stdout + done.stderr
    assert "nosuch" in done.stderr and "memory://, redis://" in done.stderr
    assert "Traceback" not in done.stderr
