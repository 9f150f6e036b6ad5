import sys

from qshard.cli import main

sys.exit(main())
