from __future__ import annotations

from django.urls import path

from aauth_server.resource import WELL_KNOWN_PATH

from . import views

app_name = "aauth"
urlpatterns = [path(WELL_KNOWN_PATH.lstrip("/"), views.metadata, name="metadata")]
