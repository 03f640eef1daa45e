"""python -m holmes."""

from holmes.cli import main

raise SystemExit(main())
