"""`python -m mailer` runs the command line, for when the console script is not on PATH."""

from mailer.cli import main

main()
