import sys

from edge_agent._cli import main

sys.exit(main())
