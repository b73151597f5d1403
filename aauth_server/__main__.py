"""Command line: ``python -m aauth_server db upgrade URL`` (and ``db current URL``).

``upgrade`` brings the records database at ``URL`` (``sqlite:///path`` or
``postgresql+psycopg://...``) to the schema this version needs; ``current`` prints the
revision it is at and the one this code expects, and exits 1 when they differ.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m aauth_server", description=__doc__)
    commands = parser.add_subparsers(dest="group", required=True)
    db = commands.add_parser("db", help="the records database (schema migrations)")
    actions = db.add_subparsers(dest="action", required=True)
    up = actions.add_parser("upgrade", help="migrate the schema (to the newest by default)")
    up.add_argument("url", help="sqlite:///path or postgresql+psycopg://user@host/db")
    up.add_argument("--revision", default="head")
    now = actions.add_parser("current", help="show the schema revision")
    now.add_argument("url")
    args = parser.parse_args(argv)

    from .errors import ConfigurationError
    from .records import RecordStore
    from .records.migrate import current, head, upgrade
    from .storage.base import StorageError

    try:
        store = RecordStore(args.url)
        try:
            if args.action == "upgrade":
                upgrade(store, args.revision)
                print(f"records at {current(store)} ({store!r})")
                return 0
            at, expected = current(store), head()
            print(f"records at {at or 'none'}; this code needs {expected}")
            return 0 if at == expected else 1
        finally:
            store.close()
    except (ConfigurationError, StorageError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
