"""`python -m alems …` is the same as the `alems` command."""

from alems.cli import main

main()
