"""`python -m bot.cli`, as the `loracle` script."""

from bot.cli import main

main()
