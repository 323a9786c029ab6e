"""`python -m detect` is the `detect` console script."""

from detect.cli import main

raise SystemExit(main())
