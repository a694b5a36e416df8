"""The command line: each subcommand parses, calls one library function, renders (a table, or JSON).

    main.py     the parser and the small commands (profiles, models, predict, calibrate, validate, results)
    run.py      `emulator run`
    size.py     `emulator size`
    render.py   tables for people
"""

from emulator.cli.main import main

__all__ = ["main"]
