"""`python -m alems …` is the same as the `alems` command."""

import sys

try:  # Ctrl-C while the command line is still loading: one line, not a traceback
    from alems.cli import main
except KeyboardInterrupt:
    print("alems: error: interrupted (Ctrl-C)", file=sys.stderr)
    sys.exit(130)

main()
