import sys

from civicchat.cli import main

sys.exit(main())
