"""`python -m nocd` runs the CLI."""

from nocd.cli import main

raise SystemExit(main())
