"""The example resources of ``bench/http.py`` with one more unprotected endpoint: the control.

``python -m bench.control_servers --framework NAME [the example app's own arguments]`` runs
``example_apps.<NAME>_resource`` exactly as ``python -m example_apps.<NAME>_resource`` runs it
(same server, same settings), with ``GET /floor`` added: an unprotected endpoint whose handler
does exactly one raw Ed25519 verify (``cryptography``, no aauth_server code) over
``FLOOR_SIZE`` bytes (the environment; ``bench/http.py`` sets it to the request signature
base's size) and then answers as ``/health`` answers.  Both go through the same framework
path, so ``/floor - /health`` is what one Ed25519 verify costs inside that server, under the
same load generator: the protection's floor measured where the protection runs.

``/floor`` comes first in Starlette's and Django's routes, so it costs ``/health`` and
``/whoami`` one failed route match (the same for both) rather than flattering the floor with
failed matches of its own; Werkzeug (Flask) orders its rules itself.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Callable
from typing import Any

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

FRAMEWORKS = ("starlette", "django", "flask")


def raw_verifier(size: int) -> Callable[[], None]:
    """One Ed25519 verify of a valid signature over ``size`` random bytes per call."""
    key = Ed25519PrivateKey.generate()
    message = os.urandom(size)
    signature = key.sign(message)
    verify = key.public_key().verify

    def floor() -> None:
        verify(signature, message)

    return floor


def run_starlette(argv: list[str], floor: Callable[[], None]) -> None:
    from starlette.requests import Request
    from starlette.responses import Response
    from starlette.routing import Route

    import example_apps.starlette_resource as example

    create_app = example.create_app

    def with_floor(aauth: Any) -> Any:
        app = create_app(aauth)

        async def floor_endpoint(request: Request) -> Response:
            floor()
            return example._json({"status": "ok"})  # what /health answers

        app.router.routes.insert(0, Route("/floor", floor_endpoint))
        return app

    example.create_app = with_floor  # type: ignore[assignment]  # main() looks it up
    example.main(argv)


def run_django(argv: list[str], floor: Callable[[], None]) -> None:
    from django.http import HttpRequest, JsonResponse
    from django.urls import path

    import example_apps.django_resource as example

    async def floor_endpoint(request: HttpRequest) -> JsonResponse:
        floor()
        return JsonResponse({"status": "ok"})  # what /health answers

    # ROOT_URLCONF is that module; Django reads urlpatterns at the first request.
    example.urlpatterns.insert(0, path("floor", floor_endpoint))
    example.main(argv)


def run_flask(argv: list[str], floor: Callable[[], None]) -> None:
    from flask import Response, jsonify

    import example_apps.flask_resource as example

    create_app = example.create_app

    def with_floor(*args: Any, **kwargs: Any) -> Any:
        app = create_app(*args, **kwargs)

        def floor_endpoint() -> Response:
            floor()
            return jsonify(status="ok")  # what /health answers

        app.add_url_rule("/floor", "bench_floor", floor_endpoint, methods=["GET"])
        return app

    example.create_app = with_floor  # main() looks it up
    example.main(argv)


def main(argv: list[str]) -> None:
    if "--framework" not in argv:
        raise SystemExit("usage: python -m bench.control_servers --framework NAME ...")
    at = argv.index("--framework")
    name = argv[at + 1] if at + 1 < len(argv) else ""
    if name not in FRAMEWORKS:
        raise SystemExit(f"--framework must be one of {', '.join(FRAMEWORKS)}")
    rest = argv[:at] + argv[at + 2 :]
    floor = raw_verifier(int(os.environ.get("FLOOR_SIZE", "700")))
    {"starlette": run_starlette, "django": run_django, "flask": run_flask}[name](rest, floor)


if __name__ == "__main__":
    main(sys.argv[1:])
