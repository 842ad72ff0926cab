"""``python -m polylens`` runs the command line."""

from polylens.cli import main

raise SystemExit(main())
