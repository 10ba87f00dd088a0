"""``python -m streams.cli``: the ``solicit`` command of this interpreter."""

import sys

from streams.cli.main import main

sys.exit(main())
