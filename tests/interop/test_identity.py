"""The embedded Keystone v3 subset: tokens, catalog, revocation, errors."""
import json
import os
import stat
import urllib.error
import urllib.request

from conftest import ADMIN_PASSWORD


def call(method, url, body=None, headers=None):
    data = json.dumps(body).encode() if body is not None else None
    req = urllib.request.Request(url, data=data, method=method,
                                 headers={"Content-Type": "application/json", **(headers or {})})
    try:
        with urllib.request.urlopen(req, timeout=10) as r:
            raw = r.read()
            return r.status, {k.lower(): v for k, v in r.headers.items()}, json.loads(raw) if raw else None
    except urllib.error.HTTPError as e:
        raw = e.read()
        return e.code, {k.lower(): v for k, v in e.headers.items()}, json.loads(raw) if raw else None


def password_auth(user, password, project):
    return {"auth": {"identity": {"methods": ["password"], "password": {"user": {
        "name": user, "domain": {"name": "Default"}, "password": password}}},
        "scope": {"project": {"name": project, "domain": {"name": "Default"}}}}}


def test_openrc_is_private_and_sourceable(ember):
    path = os.path.join(ember.data_dir, "openrc")
    assert stat.S_IMODE(os.stat(path).st_mode) == 0o600
    env = ember.openrc_env()
    assert env["OS_AUTH_URL"] == ember.auth_url and env["OS_PASSWORD"] == ADMIN_PASSWORD


def test_token_issue_validate_revoke(ember):
    status, headers, body = call("POST", f"{ember.auth_url}/auth/tokens", password_auth("admin", ADMIN_PASSWORD, "admin"))
    assert status == 201
    token = headers["x-subject-token"]
    t = body["token"]
    assert t["project"]["name"] == "admin" and t["user"]["name"] == "admin"
    assert {"admin", "member", "reader"} <= {r["name"] for r in t["roles"]}
    assert t["expires_at"].endswith("Z") and t["methods"] == ["password"]
    types = {s["type"]: s for s in t["catalog"]}
    assert {"block-storage", "volumev3", "volumev2", "identity"} <= set(types)
    urls = {e["url"] for e in types["block-storage"]["endpoints"]}
    assert urls == {f"{ember.base}/v3/{t['project']['id']}"}

    auth = {"X-Auth-Token": token}
    status, headers, body = call("GET", f"{ember.auth_url}/auth/tokens", headers={**auth, "X-Subject-Token": token})
    assert status == 200 and headers["x-subject-token"] == token and body["token"]["user"]["id"] == t["user"]["id"]
    status, _, _ = call("HEAD", f"{ember.auth_url}/auth/tokens", headers={**auth, "X-Subject-Token": token})
    assert status == 200

    # The token method rescopes; the new token is independent of the old.
    status, headers, _ = call("POST", f"{ember.auth_url}/auth/tokens", {"auth": {"identity": {
        "methods": ["token"], "token": {"id": token}}, "scope": {"project": {"name": "admin", "domain": {"id": "default"}}}}})
    assert status == 201
    second = headers["x-subject-token"]

    volumes = f"{ember.base}/v3/{t['project']['id']}/volumes"
    assert call("GET", volumes, headers=auth)[0] == 200
    assert call("DELETE", f"{ember.auth_url}/auth/tokens", headers={**auth, "X-Subject-Token": token})[0] == 204
    status, _, body = call("GET", volumes, headers=auth)
    assert status == 401 and body["error"]["code"] == 401
    assert call("GET", f"{ember.auth_url}/auth/tokens", headers={"X-Auth-Token": second, "X-Subject-Token": token})[0] == 404
    assert call("GET", volumes, headers={"X-Auth-Token": second})[0] == 200


def test_bad_credentials_get_keystone_errors(ember):
    status, _, body = call("POST", f"{ember.auth_url}/auth/tokens", password_auth("admin", "nope", "admin"))
    assert status == 401
    assert body == {"error": {"code": 401, "title": "Unauthorized",
                              "message": "The request you have made requires authentication."}}
    status, _, body = call("POST", f"{ember.auth_url}/auth/tokens", password_auth("nobody", "x", "admin"))
    assert status == 401
    status, _, body = call("POST", f"{ember.auth_url}/auth/tokens", {"auth": {}})
    assert status == 400 and body["error"]["code"] == 400


def test_cinder_requires_a_token(ember):
    status, _, body = call("GET", f"{ember.base}/v3/0123456789abcdef0123456789abcdef/volumes")
    assert status == 401 and body["error"]["code"] == 401
    status, _, _ = call("GET", f"{ember.base}/v3/0123456789abcdef0123456789abcdef/volumes", headers={"X-Auth-Token": "forged.token"})
    assert status == 401


def test_version_documents_need_a_valid_token(ember):
    for root in ("/v3/", "/v2/"):
        status, _, body = call("GET", f"{ember.base}{root}")
        assert status == 401 and body["error"]["code"] == 401, root
        status, _, body = call("GET", f"{ember.base}{root}", headers={"X-Auth-Token": "forged.token"})
        assert status == 401 and body["error"]["code"] == 401, root
    status, headers, _ = call("POST", f"{ember.base}/identity/v3/auth/tokens", password_auth("admin", ADMIN_PASSWORD, "admin"))
    assert status == 201
    status, _, body = call("GET", f"{ember.base}/v3/", headers={"X-Auth-Token": headers["x-subject-token"]})
    assert status == 200 and body["versions"][0]["id"] == "v3.0"


def test_identity_bodies_are_validated(ember):
    status, headers, _ = call("POST", f"{ember.base}/identity/v3/auth/tokens", password_auth("admin", ADMIN_PASSWORD, "admin"))
    token = {"X-Auth-Token": headers["x-subject-token"]}
    status, _, body = call("POST", f"{ember.base}/identity/v3/projects", {"project": {"name": "validated", "enabled": "yes"}}, token)
    assert status == 400 and body["error"]["message"] == "Invalid input for field 'enabled'."
    status, _, body = call("POST", f"{ember.base}/identity/v3/projects", {"project": {"name": "validated"}}, token)
    assert status == 201
    project = body["project"]["id"]
    status, _, body = call("PATCH", f"{ember.base}/identity/v3/projects/{project}", {"name": "renamed"}, token)
    assert status == 400 and body["error"]["message"] == "'project' is a required property"
    status, _, body = call("PATCH", f"{ember.base}/identity/v3/projects/{project}", {"project": {"name": 7}}, token)
    assert status == 400
    status, _, body = call("GET", f"{ember.base}/identity/v3/projects/{project}", headers=token)
    assert status == 200 and body["project"]["name"] == "validated" and body["project"]["enabled"] is True
    call("DELETE", f"{ember.base}/identity/v3/projects/{project}", headers=token)


def test_tokens_survive_a_restart(ember):
    _, headers, body = call("POST", f"{ember.auth_url}/auth/tokens", password_auth("admin", ADMIN_PASSWORD, "admin"))
    token, project = headers["x-subject-token"], body["token"]["project"]["id"]
    ember.stop()
    ember.start()
    assert call("GET", f"{ember.base}/v3/{project}/snapshots", headers={"X-Auth-Token": token})[0] == 200


def test_non_admin_cannot_use_the_identity_admin_api(ember, tenants):
    _, headers, _ = call("POST", f"{ember.auth_url}/auth/tokens", password_auth("user-alpha", "pw-alpha", "proj-alpha"))
    status, _, body = call("GET", f"{ember.auth_url}/users", headers={"X-Auth-Token": headers["x-subject-token"]})
    assert status == 403 and body["error"]["code"] == 403
