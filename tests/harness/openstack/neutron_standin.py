"""The one stand-in of gate's OpenStack test services: a small Networking API (Neutron).

Real Neutron does not give the fake compute driver's servers any network on this machine,
and the harness boots servers with `networks: none`. Nova and Heat still ask Neutron for
security groups, ports, networks, floating IPs and quotas when they show, list or delete
servers; this answers those as Neutron's v2.0 API does: the version document, collections,
404 NeutronError for an id, and quota objects.

Beyond that read-only cloud it keeps, in memory under a lock, what a provider needs for
floating IPs, following the Neutron API reference:

- networks: a shared `private` network (ports of servers live there) and an external
  `public` network (`router:external`) whose floating addresses are 127.0.100.2-254;
  more external networks come from the harness (`POST /_harness/external-networks` with
  `name` and `addresses`, e.g. an sshd fleet's loopback addresses);
- ports: one per server, made when the server's owner first asks for the ports of its
  `device_id` (Nova asks when it shows a server; so does a provider); `GET`, list with
  filters, `PUT` (Nova unbinds), `DELETE` (Nova deletes them with the server: 204, and
  the floating IPs on them are disassociated, as in Neutron);
- floating IPs: `POST` (201; 404 for an unknown network, 400 for one that is not external,
  409 `IpAddressGenerationFailure` when the pool is used up, 409 `OverQuota` over the
  project's `floatingip` quota), `GET` by id, list with filters, `PUT` to associate
  (`port_id`) or disassociate (`null`), `DELETE` (204, 404). A floating IP is `DOWN`;
  associated on `public` it turns `ACTIVE` at once, on a harness network only when the
  harness says its host is ready (`POST /_harness/floatingips/<id>/status`) — the part of
  the L3 agent;
- quotas: `PUT /v2.0/quotas/<project>` sets a project's limits.

Tokens: the project (and admin role) of a caller comes from Keystone (`GATE_STANDIN_KEYSTONE`,
the token validated with itself, cached); a caller sees its project's ports and floating
IPs, an admin all. Requests without a token see everything, as before. Every request is
logged to stderr (the service's log in the harness's run dir).
"""
import datetime
import json
import os
import re
import sys
import threading
import urllib.error
import urllib.parse
import urllib.request
import uuid

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

LOCK = threading.Lock()
NETWORKS = {}      # id -> network
SUBNETS = {}       # id -> subnet
POOLS = {}         # network id -> {"addresses": [...], "auto_active": bool}
PORTS = {}         # id -> port
FIPS = {}          # id -> floating IP
QUOTAS = {}        # project id -> {resource: limit}
GONE_DEVICES = set()   # devices whose ports were deleted: never made again
TOKENS = {}        # token -> (project id, admin?)
PORT_NUMBER = [10]


def _now():
    return datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


def _network(name, external, shared, cidr, addresses, auto_active):
    net_id = str(uuid.uuid4())
    subnet_id = str(uuid.uuid4())
    now = _now()
    NETWORKS[net_id] = {
        "id": net_id, "name": name, "status": "ACTIVE", "admin_state_up": True,
        "shared": shared, "router:external": external, "subnets": [subnet_id],
        "project_id": "", "tenant_id": "", "mtu": 1500, "description": "",
        "availability_zones": [], "tags": [], "port_security_enabled": True,
        "created_at": now, "updated_at": now, "revision_number": 1,
    }
    SUBNETS[subnet_id] = {
        "id": subnet_id, "name": name + "-subnet", "network_id": net_id,
        "cidr": cidr, "ip_version": 4, "enable_dhcp": False, "gateway_ip": None,
        "allocation_pools": ([{"start": a, "end": a} for a in addresses]
                             if len(addresses) <= 16 else
                             [{"start": addresses[0], "end": addresses[-1]}]),
        "project_id": "", "tenant_id": "", "description": "", "tags": [],
        "created_at": now, "updated_at": now, "revision_number": 1,
    }
    POOLS[net_id] = {"addresses": list(addresses), "auto_active": auto_active,
                     "subnet": subnet_id}
    return NETWORKS[net_id]


PUBLIC = _network("public", True, False, "127.0.100.0/24",
                  ["127.0.100.%d" % n for n in range(2, 255)], True)
PRIVATE = _network("private", False, True, "10.0.0.0/16", [], True)


def _json(start_response, status, body):
    data = json.dumps(body).encode()
    start_response(status, [("Content-Type", "application/json"),
                            ("Content-Length", str(len(data)))])
    return [data]


def _empty(start_response, status):
    start_response(status, [("Content-Length", "0")])
    return [b""]


def _error(start_response, status, kind, message):
    return _json(start_response, status,
                 {"NeutronError": {"type": kind, "message": message, "detail": ""}})


def _caller(environ):
    """(project id, admin?) of the request's token; (None, True) without a token."""
    token = environ.get("HTTP_X_AUTH_TOKEN")
    if not token:
        return None, True
    with LOCK:
        known = TOKENS.get(token)
    if known:
        return known
    keystone = os.environ.get("GATE_STANDIN_KEYSTONE")
    if not keystone:
        return None, True
    request = urllib.request.Request(
        keystone.rstrip("/") + "/auth/tokens",
        headers={"X-Auth-Token": token, "X-Subject-Token": token})
    try:
        with urllib.request.urlopen(request, timeout=30) as answer:
            body = json.load(answer)
    except (urllib.error.URLError, ValueError, OSError) as error:
        print("token validation failed: %s" % error, file=sys.stderr, flush=True)
        return None, False
    project = (body.get("token", {}).get("project") or {}).get("id")
    roles = [r.get("name") for r in body.get("token", {}).get("roles", [])]
    found = (project, "admin" in roles)
    with LOCK:
        TOKENS[token] = found
    return found


def _visible(item, caller):
    project, admin = caller
    return admin or item.get("project_id") == project


def _filtered(items, query, caller):
    """Neutron's list filters: every given attribute must match one of its values."""
    found = []
    for item in items:
        if not _visible(item, caller):
            continue
        keep = True
        for key, values in query.items():
            if key in ("fields", "limit", "marker", "sort_key", "sort_dir", "page_reverse"):
                continue
            if key not in item:
                continue
            value = item[key]
            text = "" if value is None else str(value)
            if isinstance(value, bool):
                text = str(value)
                values = [v.capitalize() for v in values]
            if text not in values:
                keep = False
                break
        if keep:
            found.append(item)
    return found


def _fields(item, query):
    fields = query.get("fields")
    if not fields:
        return item
    return {k: v for k, v in item.items() if k in fields}


def _ports_for_devices(devices, caller):
    """The port of each server of the caller's project (made on first ask)."""
    project, admin = caller
    if admin or not project:
        return
    for device in devices:
        if device in GONE_DEVICES or not re.fullmatch(r"[0-9a-fA-F-]{32,36}", device):
            continue
        if any(p["device_id"] == device for p in PORTS.values()):
            continue
        port_id = str(uuid.uuid4())
        PORT_NUMBER[0] += 1
        n = PORT_NUMBER[0]
        now = _now()
        PORTS[port_id] = {
            "id": port_id, "name": "", "network_id": PRIVATE["id"],
            "device_id": device, "device_owner": "compute:nova",
            "mac_address": "fa:16:3e:%02x:%02x:%02x" % ((n >> 16) & 255, (n >> 8) & 255, n & 255),
            "fixed_ips": [{"subnet_id": PRIVATE["subnets"][0],
                           "ip_address": "10.0.%d.%d" % ((n >> 8) & 255, n & 255)}],
            "status": "ACTIVE", "admin_state_up": True, "security_groups": [],
            "project_id": project, "tenant_id": project, "description": "",
            "binding:vnic_type": "normal", "allowed_address_pairs": [],
            "tags": [], "created_at": now, "updated_at": now, "revision_number": 1,
        }


def _fip_view(fip):
    return dict(fip)


def _used(project, resource):
    if resource == "floatingip":
        return sum(1 for f in FIPS.values() if f["project_id"] == project)
    if resource == "port":
        return sum(1 for p in PORTS.values() if p["project_id"] == project)
    return 0


def _quota(project):
    quota = dict(QUOTA)
    quota.update(QUOTAS.get(project, {}))
    return quota


def _read_body(environ):
    try:
        length = int(environ.get("CONTENT_LENGTH") or 0)
    except ValueError:
        length = 0
    raw = environ["wsgi.input"].read(length) if length else b""
    if not raw:
        return {}
    return json.loads(raw)


def _create_fip(start_response, body, caller):
    project, _admin = caller
    spec = body.get("floatingip")
    if not isinstance(spec, dict):
        return _error(start_response, "400 Bad Request", "HTTPBadRequest",
                      "Resource body required")
    net_id = spec.get("floating_network_id")
    if not net_id:
        return _error(start_response, "400 Bad Request", "HTTPBadRequest",
                      "Failed to parse request. Required attribute 'floating_network_id' "
                      "not specified")
    network = NETWORKS.get(net_id)
    if network is None:
        return _error(start_response, "404 Not Found", "NetworkNotFound",
                      "Network %s could not be found." % net_id)
    if not network["router:external"]:
        return _error(start_response, "400 Bad Request", "BadRequest",
                      "Bad floatingip request: Network %s is not a valid external "
                      "network." % net_id)
    owner = spec.get("project_id") or spec.get("tenant_id") or project or ""
    limit = _quota(owner).get("floatingip", -1)
    if limit >= 0 and _used(owner, "floatingip") >= limit:
        return _error(start_response, "409 Conflict", "OverQuota",
                      "Quota exceeded for resources: ['floatingip'].")
    taken = {f["floating_ip_address"] for f in FIPS.values()}
    free = [a for a in POOLS[net_id]["addresses"] if a not in taken]
    wanted = spec.get("floating_ip_address")
    if wanted:
        if wanted in taken:
            return _error(start_response, "409 Conflict", "IpAddressAlreadyAllocated",
                          "IP address %s already allocated in subnet %s"
                          % (wanted, POOLS[net_id]["subnet"]))
        if wanted not in POOLS[net_id]["addresses"]:
            return _error(start_response, "400 Bad Request", "InvalidIpForNetwork",
                          "IP address %s is not a valid IP for any of the subnets on "
                          "the specified network." % wanted)
        address = wanted
    elif free:
        address = free[0]
    else:
        return _error(start_response, "409 Conflict", "IpAddressGenerationFailure",
                      "No more IP addresses available on network %s." % net_id)
    fip_id = str(uuid.uuid4())
    now = _now()
    fip = {
        "id": fip_id, "floating_ip_address": address, "floating_network_id": net_id,
        "router_id": None, "port_id": None, "fixed_ip_address": None, "status": "DOWN",
        "project_id": owner, "tenant_id": owner,
        "description": spec.get("description") or "", "tags": [],
        "port_details": None, "qos_policy_id": None, "port_forwardings": [],
        "dns_domain": "", "dns_name": "",
        "created_at": now, "updated_at": now, "revision_number": 0,
    }
    FIPS[fip_id] = fip
    if spec.get("port_id"):
        problem = _associate(fip, spec["port_id"], spec.get("fixed_ip_address"), caller)
        if problem:
            del FIPS[fip_id]
            return problem(start_response)
    return _json(start_response, "201 Created", {"floatingip": _fip_view(fip)})


def _associate(fip, port_id, fixed_ip, caller):
    """Associates `fip` with `port_id` (None: disassociates); a problem as a callable."""
    if port_id is None:
        fip.update({"port_id": None, "fixed_ip_address": None, "router_id": None,
                    "port_details": None, "status": "DOWN"})
        return None
    port = PORTS.get(port_id)
    if port is None or not _visible(port, caller):
        return lambda sr: _error(sr, "404 Not Found", "PortNotFound",
                                 "Port %s could not be found." % port_id)
    address = fixed_ip or (port["fixed_ips"][0]["ip_address"] if port["fixed_ips"] else None)
    for other in FIPS.values():
        if other["id"] != fip["id"] and other["port_id"] == port_id \
                and other["fixed_ip_address"] == address:
            return lambda sr: _error(
                sr, "409 Conflict", "FloatingIPPortAlreadyAssociated",
                "Cannot associate floating IP %s (%s) with port %s using fixed IP %s, "
                "as that fixed IP already has a floating IP on external network %s."
                % (fip["floating_ip_address"], fip["id"], port_id, address,
                   other["floating_network_id"]))
    auto = POOLS[fip["floating_network_id"]]["auto_active"]
    fip.update({
        "port_id": port_id, "fixed_ip_address": address, "router_id": None,
        "port_details": {"name": port["name"], "network_id": port["network_id"],
                         "mac_address": port["mac_address"],
                         "admin_state_up": True, "status": port["status"],
                         "device_id": port["device_id"],
                         "device_owner": port["device_owner"]},
        "status": "ACTIVE" if auto else "DOWN",
    })
    return None


def _floatingips(start_response, method, parts, query, environ, caller):
    if not parts:
        if method == "GET":
            items = [_fields(f, query) for f in _filtered(FIPS.values(), query, caller)]
            return _json(start_response, "200 OK", {"floatingips": items})
        if method == "POST":
            return _create_fip(start_response, _read_body(environ), caller)
        return _error(start_response, "405 Method Not Allowed", "HTTPMethodNotAllowed",
                      "Method %s not allowed." % method)
    fip = FIPS.get(parts[0])
    if fip is None or not _visible(fip, caller) or len(parts) > 1:
        return _error(start_response, "404 Not Found", "FloatingIPNotFound",
                      "Floating IP %s could not be found" % parts[0])
    if method == "GET":
        return _json(start_response, "200 OK", {"floatingip": _fields(fip, query)})
    if method == "DELETE":
        del FIPS[fip["id"]]
        return _empty(start_response, "204 No Content")
    if method == "PUT":
        spec = _read_body(environ).get("floatingip")
        if not isinstance(spec, dict):
            return _error(start_response, "400 Bad Request", "HTTPBadRequest",
                          "Resource body required")
        for key in spec:
            if key not in ("port_id", "fixed_ip_address", "description", "qos_policy_id"):
                return _error(start_response, "400 Bad Request", "HTTPBadRequest",
                              "Cannot update read-only attribute %s" % key)
        if "port_id" in spec:
            problem = _associate(fip, spec["port_id"], spec.get("fixed_ip_address"), caller)
            if problem:
                return problem(start_response)
        if "description" in spec:
            fip["description"] = spec["description"] or ""
        fip["updated_at"] = _now()
        fip["revision_number"] += 1
        return _json(start_response, "200 OK", {"floatingip": _fip_view(fip)})
    return _error(start_response, "405 Method Not Allowed", "HTTPMethodNotAllowed",
                  "Method %s not allowed." % method)


def _ports(start_response, method, parts, query, environ, caller):
    if not parts:
        if method == "GET":
            if "device_id" in query:
                _ports_for_devices(query["device_id"], caller)
            items = [_fields(p, query) for p in _filtered(PORTS.values(), query, caller)]
            return _json(start_response, "200 OK", {"ports": items})
        return _error(start_response, "501 Not Implemented", "NotImplemented",
                      "gate's test Neutron stand-in makes ports itself, one per server")
    port = PORTS.get(parts[0])
    if port is None or not _visible(port, caller) or len(parts) > 1:
        return _error(start_response, "404 Not Found", "PortNotFound",
                      "Port %s could not be found." % parts[0])
    if method == "GET":
        return _json(start_response, "200 OK", {"port": _fields(port, query)})
    if method == "DELETE":
        del PORTS[port["id"]]
        GONE_DEVICES.add(port["device_id"])
        for fip in FIPS.values():
            if fip["port_id"] == port["id"]:
                _associate(fip, None, None, caller)
        return _empty(start_response, "204 No Content")
    if method == "PUT":
        spec = _read_body(environ).get("port") or {}
        for key in ("device_id", "device_owner", "name", "description",
                    "binding:host_id", "binding:profile"):
            if key in spec and key in port:
                port[key] = spec[key]
        port["updated_at"] = _now()
        return _json(start_response, "200 OK", {"port": port})
    return _error(start_response, "405 Method Not Allowed", "HTTPMethodNotAllowed",
                  "Method %s not allowed." % method)


def _harness(start_response, method, rest, environ):
    """The harness's own calls (not Neutron's API): external networks, the L3 agent."""
    body = _read_body(environ) if method in ("POST", "PUT") else {}
    if rest == "external-networks" and method == "POST":
        addresses = body.get("addresses") or []
        if not body.get("name") or not addresses:
            return _error(start_response, "400 Bad Request", "HTTPBadRequest",
                          "name and addresses are required")
        network = _network(body["name"], True, False, body.get("cidr", "127.0.0.0/8"),
                           addresses, bool(body.get("auto_active", False)))
        return _json(start_response, "201 Created", {"network": network})
    match = re.fullmatch(r"external-networks/([^/]+)", rest)
    if match and method == "DELETE":
        net_id = match.group(1)
        for fip in [f for f in FIPS.values() if f["floating_network_id"] == net_id]:
            del FIPS[fip["id"]]
        NETWORKS.pop(net_id, None)
        pool = POOLS.pop(net_id, None)
        if pool:
            SUBNETS.pop(pool["subnet"], None)
        return _empty(start_response, "204 No Content")
    match = re.fullmatch(r"floatingips/([^/]+)/status", rest)
    if match and method == "POST":
        fip = FIPS.get(match.group(1))
        if fip is None:
            return _error(start_response, "404 Not Found", "FloatingIPNotFound",
                          "Floating IP %s could not be found" % match.group(1))
        fip["status"] = body.get("status", "ACTIVE")
        return _json(start_response, "200 OK", {"floatingip": fip})
    return _error(start_response, "404 Not Found", "HTTPNotFound",
                  "The resource could not be found.")


def application(environ, start_response):
    method = environ.get("REQUEST_METHOD", "GET")
    path = environ.get("PATH_INFO", "/")
    raw_query = environ.get("QUERY_STRING", "")
    print("%s %s?%s" % (method, path, raw_query), file=sys.stderr, flush=True)
    path = re.sub(r"\.json$", "", path.rstrip("/")) or "/"
    query = urllib.parse.parse_qs(raw_query, keep_blank_values=True)
    base = "http://%s" % environ.get("HTTP_HOST", "127.0.0.1")
    if path == "/":
        return _json(start_response, "200 OK", {"versions": [{
            "id": "v2.0", "status": "CURRENT",
            "links": [{"href": base + "/v2.0/", "rel": "self"}]}]})
    if path.startswith("/_harness/"):
        with LOCK:
            return _harness(start_response, method, path[len("/_harness/"):], environ)
    if not path.startswith("/v2.0"):
        return _error(start_response, "404 Not Found", "HTTPNotFound", "Not found")
    rest = path[len("/v2.0"):].strip("/")
    if rest == "":
        return _json(start_response, "200 OK", {"resources": [
            {"name": c.rstrip("s"), "collection": c,
             "links": [{"href": base + "/v2.0/" + c, "rel": "self"}]} for c in COLLECTIONS]})
    parts = rest.split("/")
    if parts[0] in ("floatingips", "ports", "quotas"):
        caller = _caller(environ)
        with LOCK:
            if parts[0] == "floatingips":
                return _floatingips(start_response, method, parts[1:], query, environ, caller)
            if parts[0] == "ports":
                return _ports(start_response, method, parts[1:], query, environ, caller)
            if method == "PUT" and len(parts) == 2:
                spec = _read_body(environ).get("quota") or {}
                QUOTAS.setdefault(parts[1], {}).update(
                    {k: int(v) for k, v in spec.items() if k in QUOTA})
                return _json(start_response, "200 OK", {"quota": _quota(parts[1])})
    if method != "GET":
        return _error(start_response, "501 Not Implemented", "NotImplemented",
                      "gate's test Neutron stand-in only answers reads here: "
                      "boot servers with networks 'none'")
    if rest == "extensions":
        return _json(start_response, "200 OK", {"extensions": []})
    match = re.fullmatch(r"quotas/([^/]+)(/details|/default)?", rest)
    if match:
        with LOCK:
            project = match.group(1)
            if match.group(2) == "/details":
                quota = {k: {"limit": v, "used": _used(project, k), "reserved": 0}
                         for k, v in _quota(project).items()}
            elif match.group(2) == "/default":
                quota = dict(QUOTA)
            else:
                quota = _quota(project)
        return _json(start_response, "200 OK", {"quota": quota})
    if rest == "quotas":
        return _json(start_response, "200 OK", {"quotas": []})
    with LOCK:
        held = {"networks": NETWORKS, "subnets": SUBNETS}.get(parts[0])
        if held is not None:
            if len(parts) == 1:
                everyone = (None, True)
                items = [_fields(i, query) for i in _filtered(held.values(), query, everyone)]
                return _json(start_response, "200 OK", {parts[0]: items})
            item = held.get(parts[1])
            if item is not None and len(parts) == 2:
                return _json(start_response, "200 OK",
                             {parts[0].rstrip("s"): _fields(item, query)})
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
