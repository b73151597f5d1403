"""Headless-Chromium tests of the Person Server pages."""

from __future__ import annotations
