"""`python -m services` is the `mediacdr` command."""

from services.cli import main

main()
