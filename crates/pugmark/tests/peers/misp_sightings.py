"""A loopback stand-in for MISP's REST API that holds every request against MISP's own
OpenAPI description (tests/data/misp/sightings-openapi.json, see PROVENANCE.md) with
openapi-core, the maintained OpenAPI 3 request/response validator.

Usage: misp_sightings.py SPEC PORT KEY LOG

For each request: the path, method, security (the `Authorization` header), content type
and body are validated against the description; a body key outside the request schema must
be a property of MISP's `Sighting` schema with a value of its type (MISP's
SightingsController::add reads `type` and `source` beside `values` and `timestamp`). The
server answers 200 with a `Sighting` object (itself validated as the described response),
403 for a wrong key, 400 for a request the description refuses. One JSON line per request
goes to LOG: {"path", "body", "ok", "errors"}.
"""

import json
import sys
import threading

from openapi_core import OpenAPI, Config
from openapi_core.contrib.werkzeug import WerkzeugOpenAPIRequest, WerkzeugOpenAPIResponse
from werkzeug.serving import make_server
from werkzeug.wrappers import Request, Response

spec_path, port, key, log_path = sys.argv[1], int(sys.argv[2]), sys.argv[3], sys.argv[4]
spec = json.load(open(spec_path))
# The description names its example server; requests here come to the loopback address.
spec["servers"] = [{"url": f"http://127.0.0.1:{port}"}]
# MISP's description repeats an enum value ("text" in AttributesRestSearchReturnFormat),
# which a strict spec validator refuses; requests are still validated against it.
openapi = OpenAPI.from_dict(spec, config=Config(spec_validator_cls=None))
request_schema = spec["components"]["requestBodies"]["AddSightingsRequest"]["content"][
    "application/json"
]["schema"]
sighting_schema = spec["components"]["schemas"]["Sighting"]
lock = threading.Lock()
counter = [0]


def log(entry):
    with lock:
        with open(log_path, "a") as f:
            f.write(json.dumps(entry) + "\n")


def app(environ, start_response):
    req = Request(environ)
    errors = []
    body = None
    try:
        openapi.validate_request(WerkzeugOpenAPIRequest(req))
    except Exception as e:  # every validation error is a finding
        errors.append(f"{type(e).__name__}: {e}; {getattr(e, '__cause__', '')}")
    if req.headers.get("Authorization") != key:
        errors.append("Authorization header is not the API key")
    try:
        body = json.loads(req.get_data() or b"null")
    except ValueError as e:
        errors.append(f"body is not JSON: {e}")
    if isinstance(body, dict):
        for k, v in body.items():
            if k in request_schema["properties"]:
                continue
            prop = sighting_schema["properties"].get(k)
            if prop is None:
                errors.append(f"key {k!r} is in neither AddSightingsRequest nor Sighting")
            elif prop.get("type") == "string" and not isinstance(v, str):
                errors.append(f"key {k!r} must be a string (Sighting schema)")
    log({"path": req.path, "method": req.method, "body": body, "ok": not errors, "errors": errors})
    if req.headers.get("Authorization") != key:
        resp = Response(
            json.dumps({"name": "Authentication failed.", "message": "Authentication failed.", "url": req.path}),
            status=403,
            content_type="application/json",
        )
    elif errors:
        resp = Response(
            json.dumps({"name": "Invalid request", "message": "; ".join(errors), "url": req.path}),
            status=400,
            content_type="application/json",
        )
    else:
        with lock:
            counter[0] += 1
            n = counter[0]
        sighting = {
            "id": str(n),
            "attribute_id": str(1000 + n),
            "event_id": "1",
            "org_id": "1",
            "date_sighting": body.get("timestamp") or "0",
            "uuid": "5f8b8f3e-1c1a-4c5e-9f00-%012d" % n,
            "source": body.get("source", ""),
            "type": body.get("type", "0"),
        }
        resp = Response(json.dumps(sighting), status=200, content_type="application/json")
        try:
            openapi.validate_response(WerkzeugOpenAPIRequest(req), WerkzeugOpenAPIResponse(resp))
        except Exception as e:
            log({"path": req.path, "ok": False, "errors": [f"response: {e}"]})
    return resp(environ, start_response)


server = make_server("127.0.0.1", port, app, threaded=True)
print("ready", flush=True)
server.serve_forever()
