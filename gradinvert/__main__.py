# No imports before the current folder leaves sys.path (see gradinvert.cli.entry).
from gradinvert.cli.entry import main

main()
