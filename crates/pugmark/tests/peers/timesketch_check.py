"""Checks a Timesketch JSONL file the way Timesketch reads it.

Usage: timesketch_check.py FILE

1. Timesketch's own import client (PyPI `timesketch-import-client`): every line goes
   through `ImportStreamer._fix_dict` (what `add_json`/`add_file` do to a JSONL line before
   upload) and must come out unchanged but for the `datetime` spelling (the client rewrites
   it with `isoformat()`; the instant must be the same); then the whole file as a pandas
   frame through `_fix_data_frame` (the CSV/frame path) must keep every row and produce no
   unparsable datetime.
2. The server's JSONL rules (google/timesketch `timesketch/lib/utils.py`,
   `read_and_validate_jsonl` at commit 00cd3660983b99c394e31c825e424c0c6264bbaf): each line
   a JSON object with `message`, `datetime`, `timestamp_desc`; `datetime` parsed by dateutil;
   `timestamp`, when given, the datetime in microseconds (what the server would derive); no
   key the server scrubs (`_id`, `_type`, `_index`, `_source`, `__ts_timeline_id`) — it would
   drop data — and `tag` only as a list of strings.

Prints `N lines ok` or the problems, exit 1.
"""

import copy
import json
import sys

import dateutil.parser
import pandas
from timesketch_import_client import importer

MANDATORY = ["message", "datetime", "timestamp_desc"]
SCRUBBED = ["_id", "_type", "_index", "_source", "__ts_timeline_id"]

path = sys.argv[1]
problems = []
rows = []
streamer = importer.ImportStreamer()
with open(path, encoding="utf-8") as f:
    for lineno, line in enumerate(f, 1):
        try:
            d = json.loads(line)
        except ValueError as e:
            problems.append(f"line {lineno}: not JSON: {e}")
            continue
        if not isinstance(d, dict):
            problems.append(f"line {lineno}: not an object")
            continue
        missing = [k for k in MANDATORY if k not in d]
        if missing:
            problems.append(f"line {lineno}: missing {missing}")
            continue
        for k in SCRUBBED:
            if k in d:
                problems.append(f"line {lineno}: key {k} would be scrubbed by the server")
        if "tag" in d and not (isinstance(d["tag"], list) and all(isinstance(t, str) for t in d["tag"])):
            problems.append(f"line {lineno}: tag is not a list of strings")
        try:
            dt = dateutil.parser.parse(d["datetime"])
        except (ValueError, OverflowError) as e:
            problems.append(f"line {lineno}: datetime {d['datetime']!r}: {e}")
            continue
        if dt.tzinfo is None:
            problems.append(f"line {lineno}: datetime {d['datetime']!r} has no offset")
        if "timestamp" in d and int(dt.timestamp() * 1000000) != d["timestamp"]:
            problems.append(
                f"line {lineno}: timestamp {d['timestamp']} is not datetime's microseconds {int(dt.timestamp() * 1000000)}"
            )
        for k in ("message", "timestamp_desc"):
            if not isinstance(d[k], str) or not d[k]:
                problems.append(f"line {lineno}: {k} is not a non-empty string")
        fixed = copy.deepcopy(d)
        streamer._fix_dict(fixed)
        if dateutil.parser.parse(fixed["datetime"]) != dt:
            problems.append(f"line {lineno}: the import client moved datetime to {fixed['datetime']}")
        fixed["datetime"] = d["datetime"]
        if fixed != d:
            changed = sorted(k for k in set(fixed) | set(d) if fixed.get(k) != d.get(k))
            problems.append(f"line {lineno}: the import client changed {changed}")
        rows.append(d)

if rows:
    frame = pandas.DataFrame(rows)
    out = streamer._fix_data_frame(frame)
    if len(out) != len(rows):
        problems.append(f"the frame path kept {len(out)} of {len(rows)} rows")
    for k in MANDATORY:
        if k not in out:
            problems.append(f"the frame path lost {k}")
    if "datetime" in out and out["datetime"].isna().any():
        problems.append("the frame path could not parse some datetimes")

if problems:
    print("\n".join(problems[:50]))
    sys.exit(1)
print(f"{len(rows)} lines ok")
