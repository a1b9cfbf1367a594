"""`python -m nmaccel ARGS` runs the `nmaccel` console script."""
import sys

from nmaccel.cli import main

sys.exit(main())
