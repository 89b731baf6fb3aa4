"""``python -m threadline`` runs the command line."""

from threadline.cli_entry import main

main()
