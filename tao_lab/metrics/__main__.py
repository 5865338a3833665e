"""``python -m tao_lab.metrics {object,pixel,frame} ...`` (see :mod:`tao_lab.metrics.cli`)."""
import sys

from tao_lab.metrics.cli import main

if __name__ == "__main__":
    sys.exit(main())
