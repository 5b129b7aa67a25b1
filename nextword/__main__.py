"""`python -m nextword`: the same as the `nextword` command."""

from nextword.cli import main

main()
