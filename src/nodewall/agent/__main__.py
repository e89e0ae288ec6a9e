"""`python -m nodewall.agent ...`: the agent, the same as `nodewall agent ...`."""

import sys

from nodewall.agent.main import main

sys.exit(main(sys.argv[1:]))
