"""`python -m pipeline.schedule ...` works without the package's dispatcher."""
import sys

from pipeline.schedule.cli import cli

sys.exit(cli(sys.argv[1:]))
