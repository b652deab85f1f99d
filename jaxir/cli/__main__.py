"""``python -m jaxir.cli ...`` = ``jaxir ...``."""

import sys

from . import main

sys.exit(main())
