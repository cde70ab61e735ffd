import sys

from reconciler.cli import main as cli

sys.exit(cli.main())
