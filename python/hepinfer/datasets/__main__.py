"""``python -m hepinfer.datasets``: see :func:`hepinfer.datasets.main`."""

import sys

from hepinfer.datasets import main

sys.exit(main())
