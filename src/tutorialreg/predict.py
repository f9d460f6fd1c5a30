"""Command line: ``python -m tutorialreg.predict --config C [--checkpoint P] [--split test] [--out D]``.

Registers every pair of a split with a trained network and writes NIfTI files, the tutorial's PNG
slices and ``metrics.csv``; the work is done by :func:`tutorialreg.train.predict`.
"""

import sys

from tutorialreg.train import predict, predict_main

__all__ = ["predict"]

if __name__ == "__main__":
    sys.exit(predict_main())
