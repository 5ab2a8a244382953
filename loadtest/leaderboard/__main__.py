"""`python -m loadtest.leaderboard`: see loadtest/leaderboard/bench.py."""

import sys

from loadtest.leaderboard.bench import main

sys.exit(main())
