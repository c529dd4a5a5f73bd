"""``python -m decoding`` is the ``decoding`` command."""

import sys

from decoding.cli.main import main

sys.exit(main())
