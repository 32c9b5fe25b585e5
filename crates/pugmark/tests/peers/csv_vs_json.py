"""Reads an export CSV back with Python's csv module and holds it against the same records'
`--json`: every key of every JSON record is a column whose cell is the value (strings as
they are, numbers and booleans as JSON spells them, null empty, objects and arrays as JSON
that parses back to the same value); an absent key is an empty cell.

Usage: csv_vs_json.py CSV JSON LIST_KEY   (LIST_KEY: hits for search, entries for timeline)
Prints `N rows equal` or the differences, exit 1.
"""

import csv
import json
import sys

csv_path, json_path, list_key = sys.argv[1:4]
records = json.load(open(json_path))[list_key]
with open(csv_path, newline="", encoding="utf-8") as f:
    rows = list(csv.DictReader(f))
problems = []
if len(rows) != len(records):
    problems.append(f"{len(rows)} CSV rows, {len(records)} JSON records")
for i, (row, rec) in enumerate(zip(rows, records)):
    for k, v in rec.items():
        if k not in row:
            problems.append(f"row {i}: no column {k}")
            continue
        cell = row[k]
        if v is None:
            ok = cell == ""
        elif isinstance(v, bool):
            ok = cell == ("true" if v else "false")
        elif isinstance(v, (int, float)):
            ok = cell == json.dumps(v)
        elif isinstance(v, str):
            ok = cell == v
        else:
            try:
                ok = json.loads(cell) == v
            except ValueError:
                ok = False
        if not ok:
            problems.append(f"row {i} (seq {rec.get('seq')}): {k}: CSV {cell[:80]!r} != JSON {json.dumps(v)[:80]}")
    for k, cell in row.items():
        if k not in rec and k != "fields" and cell != "":
            problems.append(f"row {i}: column {k} has {cell[:40]!r} but the JSON has no such key")
if problems:
    print("\n".join(problems[:40]))
    sys.exit(1)
print(f"{len(rows)} rows equal")
