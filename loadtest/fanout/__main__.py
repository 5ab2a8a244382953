"""`python -m loadtest.fanout`: see loadtest/fanout/bench.py."""

import sys

from loadtest.fanout.bench import main

sys.exit(main())
