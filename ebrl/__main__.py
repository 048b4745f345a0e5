"""``python -m ebrl`` runs the console script."""

import sys

from ebrl.cli import main

sys.exit(main())
