"""Write stack_profiles/fits/validated.json, the records predictions report as `validated`
(emulator/stacks/accuracy.py), from the fit records and `validate --published` (emulator/validation/
accuracy_records.py says which records come from where).

    python scripts/accuracy.py                   # runs `emulator validate --published --json` (about a minute)
    python scripts/accuracy.py validate.json     # or reads a saved run of it

Rerun after a refit or any change that moves a prediction: `validate --published` says when the shipped file no
longer matches what it predicts.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from emulator.files import write_json_atomic
from emulator.stacks.accuracy import RECORDS
from emulator.validation.accuracy_records import gather

ROOT = Path(__file__).resolve().parent.parent
ABOUT = ("each stack's end-to-end errors (predicted / measured - 1) per device family and metric, written by "
         "scripts/accuracy.py: leave one model out where the stack was fitted on the family (its fit record), held "
         "out elsewhere (emulator validate --published)")


def main(argv: list[str]) -> int:
    if argv:
        validate = json.loads(Path(argv[0]).read_text())
    else:
        run = subprocess.run([sys.executable, "-m", "emulator", "validate", "--published", "--json"],
                             capture_output=True, text=True, check=True, cwd=ROOT)
        validate = json.loads(run.stdout)
    records = gather(validate)
    write_json_atomic({"about": ABOUT, "records": records}, RECORDS)
    for r in records:
        classes = "".join(f"; {k} n={c['num_cases']} {c['median_abs_error']:.1%} ({c['mean_error']:+.1%})"
                          for k, c in r["by_model_class"].items())
        print(f"{r['stack']:14s} {r['device_family']:10s} {r['metric']:20s} n={r['num_cases']:4d} "
              f"median {r['median_abs_error']:6.1%} mean {r['mean_error']:+6.1%}  ({r['method']}; {r['source']})"
              f"{classes}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
