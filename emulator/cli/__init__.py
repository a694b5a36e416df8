"""The command line: each subcommand parses, calls one library function, renders (a table, or JSON).

    main.py     the parser, `--version`, and the dispatch (each command's module is imported only when it runs)
    listing.py  profiles, models, stacks, results: listings that never import torch
    predict.py  `emulator predict`
    measure.py  `emulator calibrate` and `emulator validate`
    run.py      `emulator run`
    size.py     `emulator size`
    render.py   tables for people
    output.py   JSON and aligned tables, shared by every command (no heavy imports)
"""

from emulator.cli.main import main

__all__ = ["main"]
