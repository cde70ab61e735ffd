import sys

from reconciler import cli

sys.exit(cli.main())
