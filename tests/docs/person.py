"""The docs' scripted person, used as ``BROWSER`` by the snippet runner: ``webbrowser.open``
on a consent link signs in as the demo person (alice / wonderland, as the README's Person
Server has her) and approves the request the page shows, as a browser would."""

from __future__ import annotations

import sys
from urllib.parse import urlsplit

from example_apps.three_party import ScriptedPerson

USER, PASSWORD = "alice", "wonderland"


def main() -> None:
    link = sys.argv[1]
    parts = urlsplit(link)
    person = ScriptedPerson(f"{parts.scheme}://{parts.netloc}", user=USER, password=PASSWORD)
    try:
        person.open(link)
        person.approve()
    finally:
        person.close()


if __name__ == "__main__":
    main()
