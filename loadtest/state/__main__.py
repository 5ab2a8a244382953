"""`python -m loadtest.state`: see loadtest/state/bench.py."""

import sys

from loadtest.state.bench import main

sys.exit(main())
