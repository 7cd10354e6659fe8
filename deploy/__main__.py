"""`python -m a2qflow_deploy bench` (in a package) or `python -m a2qflow.deploy bench`."""
import sys

from .cli import main

sys.exit(main())
