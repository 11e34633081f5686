"""The one stand-in of gate's OpenStack test services: a read-only Networking API (Neutron).

Real Neutron does not give the fake compute driver's servers any network on this machine,
and the harness boots servers with `networks: none`. Nova and Heat still ask Neutron for
security groups, ports, networks, floating IPs and quotas when they show, list or delete
servers; this answers those reads as Neutron's v2.0 API does for a cloud with nothing in
it: the version document, empty collections, 404 NeutronError for an id, and quota
objects. Writes are refused with 501 and a NeutronError saying why. Tokens are not
checked. Every request is logged to stderr (the service's log in the harness's run dir).
"""
import json
import re
import sys

QUOTA = {
    "network": 100,
    "subnet": 100,
    "subnetpool": -1,
    "port": 500,
    "router": 10,
    "floatingip": 50,
    "security_group": 10,
    "security_group_rule": 100,
    "rbac_policy": 10,
}

# Collections the stand-in knows; any other name is a 404 as in real Neutron.
COLLECTIONS = [
    "networks", "subnets", "subnetpools", "ports", "routers", "floatingips",
    "security-groups", "security-group-rules", "trunks", "qos/policies",
    "segments", "address-scopes", "network-ip-availabilities", "agents",
    "availability_zones", "rbac-policies", "port_forwardings", "network_segment_ranges",
]


def _json(start_response, status, body):
    data = json.dumps(body).encode()
    start_response(status, [("Content-Type", "application/json"),
                            ("Content-Length", str(len(data)))])
    return [data]


def _error(start_response, status, kind, message):
    return _json(start_response, status,
                 {"NeutronError": {"type": kind, "message": message, "detail": ""}})


def application(environ, start_response):
    method = environ.get("REQUEST_METHOD", "GET")
    path = environ.get("PATH_INFO", "/")
    print("%s %s?%s" % (method, path, environ.get("QUERY_STRING", "")),
          file=sys.stderr, flush=True)
    path = re.sub(r"\.json$", "", path.rstrip("/")) or "/"
    base = "http://%s" % environ.get("HTTP_HOST", "127.0.0.1")
    if path == "/":
        return _json(start_response, "200 OK", {"versions": [{
            "id": "v2.0", "status": "CURRENT",
            "links": [{"href": base + "/v2.0/", "rel": "self"}]}]})
    if not path.startswith("/v2.0"):
        return _error(start_response, "404 Not Found", "HTTPNotFound", "Not found")
    rest = path[len("/v2.0"):].strip("/")
    if rest == "":
        return _json(start_response, "200 OK", {"resources": [
            {"name": c.rstrip("s"), "collection": c,
             "links": [{"href": base + "/v2.0/" + c, "rel": "self"}]} for c in COLLECTIONS]})
    if method != "GET":
        return _error(start_response, "501 Not Implemented", "NotImplemented",
                      "gate's test Neutron stand-in only answers reads: "
                      "boot servers with networks 'none'")
    if rest == "extensions":
        return _json(start_response, "200 OK", {"extensions": []})
    match = re.fullmatch(r"quotas/([^/]+)(/details|/default)?", rest)
    if match:
        if match.group(2) == "/details":
            quota = {k: {"limit": v, "used": 0, "reserved": 0} for k, v in QUOTA.items()}
        else:
            quota = dict(QUOTA)
        return _json(start_response, "200 OK", {"quota": quota})
    if rest == "quotas":
        return _json(start_response, "200 OK", {"quotas": []})
    for collection in COLLECTIONS:
        key = collection.replace("-", "_").split("/")[-1]
        if rest == collection:
            return _json(start_response, "200 OK", {key: []})
        if rest.startswith(collection + "/"):
            return _error(start_response, "404 Not Found",
                          key.rstrip("s").title().replace("_", "") + "NotFound",
                          "%s %s could not be found." % (key.rstrip("s"), rest[len(collection) + 1:]))
    return _error(start_response, "404 Not Found", "HTTPNotFound",
                  "The resource could not be found.")
