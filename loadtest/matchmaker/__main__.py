"""`python -m loadtest.matchmaker`: see loadtest/matchmaker/bench.py."""

import sys

from loadtest.matchmaker.bench import main

sys.exit(main())
