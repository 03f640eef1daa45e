"""python -m holmes."""

from holmes.cli import main

if __name__ == "__main__":
    raise SystemExit(main())
