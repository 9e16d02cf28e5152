"""B1: the reconcile script a competent engineer writes in an afternoon.

Sequential: for every account, one GET of that account (Atlan has no read-one endpoint, so
its users are listed page by page once), then one write where the status differs. One
keep-alive connection per instance (http.client). Reads its input from the JSON file named
on the command line; prints one JSON object of counts and seconds per instance.
"""

import base64
import http.client
import json
import sys
import time
import urllib.parse


def connect(base_url):
    u = urllib.parse.urlsplit(base_url)
    return http.client.HTTPConnection(u.hostname, u.port, timeout=60)


def call(conn, method, path, headers, body=None):
    data = None
    if body is not None:
        data = json.dumps(body) if not isinstance(body, str) else body
    conn.request(method, path, body=data, headers=headers)
    resp = conn.getresponse()
    raw = resp.read()
    if resp.status >= 300:
        raise RuntimeError(f"{method} {path}: HTTP {resp.status}")
    return json.loads(raw) if raw else None


def q(account_id):
    return urllib.parse.quote(account_id, safe="")


def reconcile(inst):
    kind = inst["kind"]
    conn = connect(inst["base_url"])
    headers = {"Accept": "application/json", "Content-Type": "application/json"}
    stats = {"kind": kind, "reads": 0, "read_seconds": 0.0, "writes": 0, "write_seconds": 0.0,
             "listed": False}

    def read(method, path, body=None):
        t = time.perf_counter()
        out = call(conn, method, path, headers, body)
        stats["reads"] += 1
        stats["read_seconds"] += time.perf_counter() - t
        return out

    def write(method, path, body):
        t = time.perf_counter()
        call(conn, method, path, headers, body)
        stats["writes"] += 1
        stats["write_seconds"] += time.perf_counter() - t

    if kind == "acronis":
        basic = base64.b64encode(f"{inst['client_id']}:{inst['token']}".encode()).decode()
        t = time.perf_counter()
        conn.request("POST", "/api/2/idp/token", body="grant_type=client_credentials",
                     headers={"Authorization": "Basic " + basic, "Accept": "application/json",
                              "Content-Type": "application/x-www-form-urlencoded"})
        resp = conn.getresponse()
        token = json.loads(resp.read())["access_token"]
        stats["reads"] += 1
        stats["read_seconds"] += time.perf_counter() - t
        headers["Authorization"] = "Bearer " + token
    else:
        headers["Authorization"] = "Bearer " + inst["token"]
    if kind == "status-api":
        headers["X-API-Version"] = "v1"
    if kind == "suspend-api":
        headers["X-Tenant-ID"] = inst["tenant_id"]

    atlan = {}
    if kind == "atlan":
        stats["listed"] = True
        offset = 0
        while True:
            page = read("GET", f"/api/service/users?limit=100&offset={offset}&sort=username")
            for r in page["records"]:
                atlan[r["id"]] = r["enabled"]
            offset += 100
            if offset >= page["filterRecord"]:
                break

    for account_id, desired in inst["accounts"]:
        want = desired == "active"
        if kind == "status-api":
            user = read("GET", f"/users/{q(account_id)}")
            if user["status"] != desired:
                write("PATCH", f"/users/{q(account_id)}", {"status": desired})
        elif kind == "suspend-api":
            user = read("GET", f"/v1/users/{q(account_id)}")
            if user["active"] != want:
                write("POST", f"/v1/users/{q(account_id)}/suspend", {"active": want})
        elif kind == "atlan":
            if atlan.get(account_id) != want:
                write("POST", f"/api/service/users/{q(account_id)}", {"enabled": want})
        elif kind == "zitadel":
            user = read("GET", f"/resources/v3alpha/users/{q(account_id)}")["user"]
            if (user["state"] == "USER_STATE_ACTIVE") != want:
                action = "_activate" if want else "_deactivate"
                write("POST", f"/resources/v3alpha/users/{q(account_id)}/{action}", {})
        elif kind == "acronis":
            user = read("GET", f"/api/2/users/{q(account_id)}")
            if user["enabled"] != want:
                write("PUT", f"/api/2/users/{q(account_id)}",
                      {"enabled": want, "version": user["version"]})
        else:
            raise RuntimeError(f"unknown kind {kind}")
    conn.close()
    return stats


def main():
    with open(sys.argv[1]) as f:
        instances = json.load(f)
    started = time.perf_counter()
    results = [reconcile(inst) for inst in instances]
    print(json.dumps({"wall_seconds": time.perf_counter() - started, "instances": results}))


main()
