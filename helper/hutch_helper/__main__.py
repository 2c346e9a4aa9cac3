import sys

from hutch_helper.server import main

sys.exit(main())
