"""`python -m nmaccel` runs the console script."""
import sys

from nmaccel.cli import main

sys.exit(main())
