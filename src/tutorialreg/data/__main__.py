"""``python -m tutorialreg.data list | fetch NAME|all | verify [--clean]``."""

import sys

from tutorialreg.data.cli import main

sys.exit(main())
