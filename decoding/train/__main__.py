"""``python -m decoding.train MODEL ...``: the same as ``decoding train MODEL ...`` (see :mod:`decoding.cli.train`)."""

import sys

from decoding.cli.train import main

sys.exit(main())
