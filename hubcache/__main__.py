"""``python -m hubcache``: the same as the ``hubcache`` command."""

from hubcache.cli import main

raise SystemExit(main())
