import sys

from hutch.cli import main

sys.exit(main())
