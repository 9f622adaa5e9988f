import sys

from serving.monitoring._cli import main

sys.exit(main())
