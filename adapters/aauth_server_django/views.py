from __future__ import annotations

from django.http import HttpRequest, HttpResponse
from django.views.decorators.http import require_safe

from .conf import get_guard
from .convert import to_django


@require_safe
def metadata(request: HttpRequest) -> HttpResponse:
    """``/.well-known/aauth-resource.json``."""
    return to_django(get_guard().metadata_response())
