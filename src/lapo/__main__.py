"""``python -m lapo`` runs the ``lapo`` command."""

import sys

from lapo.cli import main

sys.exit(main())
