//! Embedded identity end to end: Keystone-shaped errors for bad credentials,
//! malformed bodies, expired and revoked tokens; and the isolation matrix —
//! for every Cinder endpoint, another project's member gets exactly what a
//! missing id gets (404), a reader gets 403 on writes, no token gets 401.
//! Real tokens from the embedded Keystone API, users made through it.

mod common;

use common::Server;
use serde_json::{Value, json};

const ADMIN_PASSWORD: &str = "matrix-admin";

fn start(ttl: &str) -> Server {
    Server::start_with(&[
        "--auth",
        "embedded",
        "--admin-password",
        ADMIN_PASSWORD,
        "--token-ttl-secs",
        ttl,
    ])
}

fn raw(
    s: &Server,
    method: &str,
    url: &str,
    token: Option<&str>,
    body: Option<&str>,
) -> (u16, Value, Option<String>) {
    let http = reqwest::blocking::Client::new();
    let mut rb = http
        .request(method.parse().unwrap(), url)
        .header("Content-Type", "application/json")
        .header("OpenStack-API-Version", "volume 3.71");
    if let Some(t) = token {
        rb = rb.header("X-Auth-Token", t);
    }
    if let Some(b) = body {
        rb = rb.body(b.to_string());
    }
    let _ = s;
    let resp = rb.send().unwrap();
    let status = resp.status().as_u16();
    let subject = resp
        .headers()
        .get("x-subject-token")
        .map(|v| v.to_str().unwrap().to_string());
    let text = resp.text().unwrap_or_default();
    (
        status,
        serde_json::from_str(&text).unwrap_or(Value::Null),
        subject,
    )
}

/// A project-scoped token and its project id.
fn login(s: &Server, user: &str, password: &str, project: &str) -> (String, String) {
    let body = json!({"auth": {"identity": {"methods": ["password"], "password": {"user": {
        "name": user, "domain": {"id": "default"}, "password": password}}},
        "scope": {"project": {"name": project, "domain": {"id": "default"}}}}});
    let (status, body, subject) = raw(
        s,
        "POST",
        &s.url("/identity/v3/auth/tokens"),
        None,
        Some(&body.to_string()),
    );
    assert_eq!(status, 201, "{body}");
    (
        subject.unwrap(),
        body["token"]["project"]["id"].as_str().unwrap().to_string(),
    )
}

fn assert_keystone_error(status: u16, body: &Value, want: u16) {
    assert_eq!(status, want, "{body}");
    assert_eq!(body["error"]["code"], want, "{body}");
    assert!(
        body["error"]["title"].is_string() && body["error"]["message"].is_string(),
        "{body}"
    );
}

#[test]
fn bad_credentials_and_malformed_bodies_get_keystone_errors() {
    let s = start("3600");
    let url = s.url("/identity/v3/auth/tokens");
    let auth = |user: Value| {
        json!({"auth": {"identity": {"methods": ["password"], "password": {"user": user}}}})
            .to_string()
    };
    let cases: Vec<(String, u16)> = vec![
        (auth(json!({"name": "admin", "domain": {"id": "default"}, "password": "wrong"})), 401),
        (auth(json!({"name": "nobody", "domain": {"id": "default"}, "password": "x"})), 401),
        (auth(json!({"name": "admin", "domain": {"id": "elsewhere"}, "password": ADMIN_PASSWORD})), 401),
        (auth(json!({"id": "0000", "password": "x"})), 401),
        (auth(json!({"name": "admin", "domain": {"id": "default"}})), 400),
        (auth(json!({"name": "admin", "domain": {"id": "default"}, "password": 7})), 400),
        (auth(json!("admin")), 400),
        ("not json".into(), 400),
        ("{}".into(), 400),
        (json!({"auth": 1}).to_string(), 400),
        (json!({"auth": {"identity": {}}}).to_string(), 400),
        (json!({"auth": {"identity": {"methods": "password"}}}).to_string(), 400),
        (json!({"auth": {"identity": {"methods": ["totp"]}}}).to_string(), 401),
        (json!({"auth": {"identity": {"methods": ["token"], "token": {}}}}).to_string(), 400),
        (json!({"auth": {"identity": {"methods": ["token"], "token": {"id": "forged.sig"}}}}).to_string(), 401),
        (json!({"auth": {"identity": {"methods": ["password"], "password": {"user": {"name": "admin", "domain": {"id": "default"}, "password": ADMIN_PASSWORD}}},
                "scope": {"project": {"name": "no-such-project", "domain": {"id": "default"}}}}}).to_string(), 401),
        (json!({"auth": {"identity": {"methods": ["password"], "password": {"user": {"name": "admin", "domain": {"id": "default"}, "password": ADMIN_PASSWORD}}},
                "scope": {"domain": {"id": "default"}}}}).to_string(), 401),
    ];
    for (body, want) in cases {
        let (status, reply, subject) = raw(&s, "POST", &url, None, Some(&body));
        assert_keystone_error(status, &reply, want);
        assert!(subject.is_none(), "no token for {body}");
    }
    let (status, reply, _) = raw(
        &s,
        "POST",
        &url,
        None,
        Some(&auth(
            json!({"name": "admin", "domain": {"id": "default"}, "password": "wrong"}),
        )),
    );
    assert_eq!(
        (status, reply["error"]["message"].as_str().unwrap()),
        (401, "The request you have made requires authentication.")
    );
}

#[test]
fn expired_and_revoked_tokens_stop_working_everywhere() {
    let s = start("2");
    let (token, project) = login(&s, "admin", ADMIN_PASSWORD, "admin");
    let (other, _) = login(&s, "admin", ADMIN_PASSWORD, "admin");
    let volumes = s.url(&format!("/v3/{project}/volumes"));
    assert_eq!(raw(&s, "GET", &volumes, Some(&token), None).0, 200);

    // Revoked: the Cinder API and the identity API both refuse it at once.
    let revoke = reqwest::blocking::Client::new()
        .delete(s.url("/identity/v3/auth/tokens"))
        .header("X-Auth-Token", &other)
        .header("X-Subject-Token", &token)
        .send()
        .unwrap();
    assert_eq!(revoke.status().as_u16(), 204);
    let (status, body, _) = raw(&s, "GET", &volumes, Some(&token), None);
    assert_keystone_error(status, &body, 401);
    let (status, body, _) = raw(&s, "GET", &s.url("/identity/v3/users"), Some(&token), None);
    assert_keystone_error(status, &body, 401);
    // Still revoked after a restart.
    let mut s = s;
    s.restart();
    assert_eq!(raw(&s, "GET", &volumes, Some(&token), None).0, 401);

    // Expired: the other token dies by itself after its 2 s.
    assert_eq!(raw(&s, "GET", &volumes, Some(&other), None).0, 200);
    std::thread::sleep(std::time::Duration::from_millis(2500));
    let (status, body, _) = raw(&s, "GET", &volumes, Some(&other), None);
    assert_keystone_error(status, &body, 401);
    let rescope =
        json!({"auth": {"identity": {"methods": ["token"], "token": {"id": other}}}}).to_string();
    let (status, body, _) = raw(
        &s,
        "POST",
        &s.url("/identity/v3/auth/tokens"),
        None,
        Some(&rescope),
    );
    assert_keystone_error(status, &body, 401);
}

/// Creates project `name` and a user in it with `role`; returns the user's
/// password.
fn provision(s: &Server, admin: &str, project: &str, user: &str, role: &str) -> String {
    let api = |method: &str, path: &str, body: Option<Value>| {
        let (status, body, _) = raw(
            s,
            method,
            &s.url(&format!("/identity/v3{path}")),
            Some(admin),
            body.map(|b| b.to_string()).as_deref(),
        );
        assert!(status < 300, "{method} {path}: {status} {body}");
        body
    };
    let projects = api("GET", &format!("/projects?name={project}"), None);
    let project_id = match projects["projects"].as_array().unwrap().first() {
        Some(p) => p["id"].as_str().unwrap().to_string(),
        None => api(
            "POST",
            "/projects",
            Some(json!({"project": {"name": project}})),
        )["project"]["id"]
            .as_str()
            .unwrap()
            .to_string(),
    };
    let password = format!("{user}-secret");
    let user_id = api(
        "POST",
        "/users",
        Some(json!({"user": {"name": user, "password": password}})),
    )["user"]["id"]
        .as_str()
        .unwrap()
        .to_string();
    let role_id = api("GET", &format!("/roles?name={role}"), None)["roles"][0]["id"]
        .as_str()
        .unwrap()
        .to_string();
    api(
        "PUT",
        &format!("/projects/{project_id}/users/{user_id}/roles/{role_id}"),
        None,
    );
    password
}

#[test]
fn isolation_matrix_over_every_endpoint() {
    let s = start("3600");
    let (admin, _) = login(&s, "admin", ADMIN_PASSWORD, "admin");
    let pw_owner = provision(&s, &admin, "alpha", "owner", "member");
    let pw_reader = provision(&s, &admin, "alpha", "reader", "reader");
    let pw_stranger = provision(&s, &admin, "beta", "stranger", "member");
    let (owner, alpha) = login(&s, "owner", &pw_owner, "alpha");
    let (reader, _) = login(&s, "reader", &pw_reader, "alpha");
    let (stranger, beta) = login(&s, "stranger", &pw_stranger, "beta");

    // The owner's volume (with metadata) and snapshot (with metadata).
    let call =
        |token: Option<&str>, project: &str, method: &str, path: &str, body: Option<Value>| {
            raw(
                &s,
                method,
                &s.url(&format!("/v3/{project}{path}")),
                token,
                body.map(|b| b.to_string()).as_deref(),
            )
        };
    let (st, body, _) = call(
        Some(&owner),
        &alpha,
        "POST",
        "/volumes",
        Some(json!({"volume": {"size": 1, "metadata": {"k": "v"}}})),
    );
    assert_eq!(st, 202, "{body}");
    let vol = body["volume"]["id"].as_str().unwrap().to_string();
    s.wait_status_as(&owner, &alpha, "volumes", &vol, "available");
    let (st, body, _) = call(
        Some(&owner),
        &alpha,
        "POST",
        "/snapshots",
        Some(json!({"snapshot": {"volume_id": vol, "metadata": {"k": "v"}}})),
    );
    assert_eq!(st, 202, "{body}");
    let snap = body["snapshot"]["id"].as_str().unwrap().to_string();
    s.wait_status_as(&owner, &alpha, "snapshots", &snap, "available");

    // (method, path with {v}/{s}, body, is a write)
    let endpoints: Vec<(&str, String, Option<Value>, bool)> = {
        let mut e = vec![];
        for (kind, id) in [("volumes", "{v}"), ("snapshots", "{s}")] {
            e.push(("GET", format!("/{kind}/{id}"), None, false));
            e.push((
                "PUT",
                format!("/{kind}/{id}"),
                Some(json!({kind.trim_end_matches('s'): {"name": "x"}})),
                true,
            ));
            e.push(("GET", format!("/{kind}/{id}/metadata"), None, false));
            e.push((
                "POST",
                format!("/{kind}/{id}/metadata"),
                Some(json!({"metadata": {"a": "b"}})),
                true,
            ));
            e.push((
                "PUT",
                format!("/{kind}/{id}/metadata"),
                Some(json!({"metadata": {"k": "v"}})),
                true,
            ));
            e.push(("GET", format!("/{kind}/{id}/metadata/k"), None, false));
            e.push((
                "PUT",
                format!("/{kind}/{id}/metadata/k"),
                Some(json!({"meta": {"k": "w"}})),
                true,
            ));
            e.push(("DELETE", format!("/{kind}/{id}/metadata/zz"), None, true));
            e.push((
                "GET",
                format!("/{kind}/{id}/data?offset=0&length=512"),
                None,
                false,
            ));
        }
        e.push((
            "PUT",
            "/volumes/{v}/data?offset=0".into(),
            Some(json!("bytes")),
            true,
        ));
        e.push((
            "POST",
            "/volumes/{v}/action".into(),
            Some(json!({"os-extend": {"new_size": 2}})),
            true,
        ));
        e.push((
            "POST",
            "/volumes/{v}/action".into(),
            Some(json!({"revert": {"snapshot_id": "{s}"}})),
            true,
        ));
        e.push((
            "POST",
            "/snapshots/{s}/action".into(),
            Some(json!({"os-update_snapshot_status": {"status": "error"}})),
            true,
        ));
        e.push((
            "POST",
            "/volumes".into(),
            Some(json!({"volume": {"size": 1, "snapshot_id": "{s}"}})),
            true,
        ));
        e.push((
            "POST",
            "/volumes".into(),
            Some(json!({"volume": {"size": 1, "source_volid": "{v}"}})),
            true,
        ));
        e.push((
            "POST",
            "/snapshots".into(),
            Some(json!({"snapshot": {"volume_id": "{v}"}})),
            true,
        ));
        e.push(("DELETE", "/snapshots/{s}".into(), None, true));
        e.push(("DELETE", "/volumes/{v}".into(), None, true));
        e
    };
    let missing_vol = "00000000-0000-4000-8000-00000000000a";
    let missing_snap = "00000000-0000-4000-8000-00000000000b";
    let fill = |t: &str, v: &str, s: &str| t.replace("{v}", v).replace("{s}", s);
    let fill_body = |b: &Option<Value>, v: &str, s: &str| {
        b.as_ref()
            .map(|b| serde_json::from_str::<Value>(&fill(&b.to_string(), v, s)).unwrap())
    };
    let mv = |r: (u16, Value, Option<String>)| (r.0, r.1);

    for (method, path, body, write) in &endpoints {
        let what = format!("{method} {path}");
        // No token: 401 in Keystone's shape.
        let (st, b) = mv(call(
            None,
            &alpha,
            method,
            &fill(path, &vol, &snap),
            fill_body(body, &vol, &snap),
        ));
        assert_eq!(st, 401, "{what} without a token: {b}");
        assert_eq!(b["error"]["code"], 401, "{what}: {b}");

        // Another project's member: exactly what a missing id gets.
        let (st_foreign, b_foreign) = mv(call(
            Some(&stranger),
            &beta,
            method,
            &fill(path, &vol, &snap),
            fill_body(body, &vol, &snap),
        ));
        let (st_missing, b_missing) = mv(call(
            Some(&stranger),
            &beta,
            method,
            &fill(path, missing_vol, missing_snap),
            fill_body(body, missing_vol, missing_snap),
        ));
        assert_eq!(st_foreign, 404, "{what} by another project: {b_foreign}");
        assert_eq!(
            b_foreign
                .to_string()
                .replace(&vol, "ID")
                .replace(&snap, "ID"),
            b_missing
                .to_string()
                .replace(missing_vol, "ID")
                .replace(missing_snap, "ID"),
            "{what}: a foreign id must answer as a missing one (status {st_missing})"
        );

        // A reader of the owning project: reads work, writes are 403.
        if *write {
            let (st, b) = mv(call(
                Some(&reader),
                &alpha,
                method,
                &fill(path, &vol, &snap),
                fill_body(body, &vol, &snap),
            ));
            assert_eq!(st, 403, "{what} by a reader: {b}");
            assert_eq!(b["forbidden"]["code"], 403, "{what}: {b}");
        } else {
            let (st, b) = mv(call(
                Some(&reader),
                &alpha,
                method,
                &fill(path, &vol, &snap),
                None,
            ));
            assert_eq!(st, 200, "{what} by a reader: {b}");
        }
    }

    // Listings: the stranger sees none of it, even asking for all tenants.
    for path in [
        "/volumes",
        "/volumes/detail",
        "/snapshots",
        "/snapshots/detail",
        "/volumes/detail?all_tenants=1",
        "/snapshots/detail?all_tenants=1",
    ] {
        let (st, b) = mv(call(Some(&stranger), &beta, "GET", path, None));
        assert_eq!(st, 200, "{path}: {b}");
        assert!(
            !b.to_string().contains(&vol) && !b.to_string().contains(&snap),
            "{path} leaks: {b}"
        );
    }
    // Another project's quotas and admin actions: 403 for members.
    for (method, path, body) in [
        ("GET", format!("/os-quota-sets/{alpha}"), None),
        (
            "PUT",
            format!("/os-quota-sets/{beta}"),
            Some(json!({"quota_set": {"volumes": 50}})),
        ),
        ("DELETE", format!("/os-quota-sets/{beta}"), None),
    ] {
        let (st, b) = mv(call(Some(&stranger), &beta, method, &path, body));
        assert_eq!(st, 403, "{method} {path}: {b}");
    }
    for action in [
        json!({"os-reset_status": {"status": "error"}}),
        json!({"os-force_delete": {}}),
    ] {
        for (kind, id) in [("volumes", &vol), ("snapshots", &snap)] {
            let (st, b) = mv(call(
                Some(&owner),
                &alpha,
                "POST",
                &format!("/{kind}/{id}/action"),
                Some(action.clone()),
            ));
            assert_eq!(st, 403, "{kind} {action} by a member: {b}");
        }
    }
    // The owner still has everything, untouched by all of the above.
    let (st, b) = mv(call(
        Some(&owner),
        &alpha,
        "GET",
        &format!("/snapshots/{snap}"),
        None,
    ));
    assert_eq!(
        (st, b["snapshot"]["status"].as_str()),
        (200, Some("available")),
        "{b}"
    );
    assert_eq!(b["snapshot"]["metadata"], json!({"k": "v"}));
    let (st, b) = mv(call(
        Some(&owner),
        &alpha,
        "GET",
        &format!("/volumes/{vol}"),
        None,
    ));
    assert_eq!((st, b["volume"]["size"].as_u64()), (200, Some(1)), "{b}");
}

#[test]
fn first_start_without_a_password_writes_a_working_openrc() {
    let s = Server::start_with(&["--auth", "embedded"]);
    let openrc = std::fs::read_to_string(s.data_dir().join("openrc")).unwrap();
    use std::os::unix::fs::PermissionsExt;
    assert_eq!(
        std::fs::metadata(s.data_dir().join("openrc"))
            .unwrap()
            .permissions()
            .mode()
            & 0o777,
        0o600
    );
    let get = |key: &str| {
        openrc
            .lines()
            .find_map(|l| l.strip_prefix(&format!("export {key}=")))
            .unwrap_or_else(|| panic!("{key} missing from openrc:\n{openrc}"))
            .trim_matches('\'')
            .to_string()
    };
    assert_eq!(get("OS_AUTH_URL"), s.url("/identity/v3"));
    let password = get("OS_PASSWORD");
    assert!(password.len() >= 16, "a generated password");
    let (token, project) = login(&s, &get("OS_USERNAME"), &password, &get("OS_PROJECT_NAME"));
    assert_eq!(
        raw(
            &s,
            "GET",
            &s.url(&format!("/v3/{project}/volumes")),
            Some(&token),
            None
        )
        .0,
        200
    );
    // A restart keeps the password (and does not rewrite it).
    let mut s = s;
    s.restart();
    assert_eq!(
        std::fs::read_to_string(s.data_dir().join("openrc")).unwrap(),
        openrc
    );
    login(&s, "admin", &password, "admin");
}

/// Ids of a user, a project and a role, by name (as the admin).
fn ids(s: &Server, admin: &str, kind: &str, name: &str) -> String {
    let (status, body, _) = raw(
        s,
        "GET",
        &s.url(&format!("/identity/v3/{kind}?name={name}")),
        Some(admin),
        None,
    );
    assert_eq!(status, 200, "{body}");
    body[kind][0]["id"].as_str().unwrap().to_string()
}

/// The class of defect: a credential that outlives the identity behind
/// it. Deleting or disabling a user, changing its password, disabling or
/// deleting a project, taking a role away and deleting a role each end
/// every token they cover, at once, on every API (Cinder, Nova, EVS and
/// identity's own admin calls), and after a restart; tokens issued
/// afterwards work. (AK/SK of a deleted user: `tests/interop`.)
#[test]
fn removing_what_a_token_names_revokes_it_everywhere() {
    let evs_port = common::free_port();
    let s = Server::start_with(&[
        "--auth",
        "embedded",
        "--admin-password",
        ADMIN_PASSWORD,
        "--evs-listen",
        &format!("127.0.0.1:{evs_port}"),
    ]);
    let (root, _) = login(&s, "admin", ADMIN_PASSWORD, "admin");
    let pw_admin2 = provision(&s, &root, "admin", "admin2", "admin");
    let pw_user = provision(&s, &root, "ops", "user1", "member");
    let pw_user2 = provision(&s, &root, "ops", "user2", "member");
    let pw_user3 = provision(&s, &root, "ops", "user3", "member");
    let pw_user4 = provision(&s, &root, "lab", "user4", "member");
    let lab = ids(&s, &root, "projects", "lab");
    // Every API a token opens, with what a valid token gets.
    let works = |token: &str, project: &str| -> Vec<(String, u16)> {
        [
            (s.url(&format!("/v3/{project}/volumes")), 200),
            (s.url(&format!("/v2.1/{project}/os-snapshots")), 200),
            (
                format!("http://127.0.0.1:{evs_port}/v2/{project}/cloudsnapshots"),
                200,
            ),
        ]
        .into_iter()
        .map(|(url, _)| {
            let (status, _, _) = raw(&s, "GET", &url, Some(token), None);
            (url, status)
        })
        .collect()
    };
    let all = |token: &str, project: &str, want: u16| {
        for (url, status) in works(token, project) {
            assert_eq!(status, want, "{url}");
        }
    };

    // A deleted admin: no admin call, no tenant's volumes, no validation.
    let (admin2, admin_project) = login(&s, "admin2", &pw_admin2, "admin");
    all(&admin2, &admin_project, 200);
    let admin2_id = ids(&s, &root, "users", "admin2");
    let (status, body, _) = raw(
        &s,
        "DELETE",
        &s.url(&format!("/identity/v3/users/{admin2_id}")),
        Some(&root),
        None,
    );
    assert_eq!(status, 204, "{body}");
    all(&admin2, &admin_project, 401);
    let (status, body, _) = raw(
        &s,
        "POST",
        &s.url("/identity/v3/users"),
        Some(&admin2),
        Some(&json!({"user": {"name": "mallory", "password": "x"}}).to_string()),
    );
    assert_keystone_error(status, &body, 401);
    let (status, _, _) = raw(
        &s,
        "GET",
        &s.url(&format!("/v3/{admin_project}/volumes?all_tenants=1")),
        Some(&admin2),
        None,
    );
    assert_eq!(status, 401);

    // A disabled user; enabled again, only new tokens work.
    let (user1, ops) = login(&s, "user1", &pw_user, "ops");
    all(&user1, &ops, 200);
    let user1_id = ids(&s, &root, "users", "user1");
    let patch = |id: &str, body: Value| {
        let (status, reply, _) = raw(
            &s,
            "PATCH",
            &s.url(&format!("/identity/v3/users/{id}")),
            Some(&root),
            Some(&body.to_string()),
        );
        assert_eq!(status, 200, "{reply}");
    };
    patch(&user1_id, json!({"user": {"enabled": false}}));
    all(&user1, &ops, 401);
    patch(&user1_id, json!({"user": {"enabled": true}}));
    all(&user1, &ops, 401);
    let (user1_again, _) = login(&s, "user1", &pw_user, "ops");
    all(&user1_again, &ops, 200);

    // A new password ends the old tokens; a token from it works at once.
    let (user2, _) = login(&s, "user2", &pw_user2, "ops");
    let user2_id = ids(&s, &root, "users", "user2");
    patch(&user2_id, json!({"user": {"password": "changed-1"}}));
    all(&user2, &ops, 401);
    let (user2_new, _) = login(&s, "user2", "changed-1", "ops");
    all(&user2_new, &ops, 200);

    // A role taken away on the project.
    let (user3, _) = login(&s, "user3", &pw_user3, "ops");
    let user3_id = ids(&s, &root, "users", "user3");
    let member = ids(&s, &root, "roles", "member");
    let (status, _, _) = raw(
        &s,
        "DELETE",
        &s.url(&format!(
            "/identity/v3/projects/{ops}/users/{user3_id}/roles/{member}"
        )),
        Some(&root),
        None,
    );
    assert_eq!(status, 204);
    all(&user3, &ops, 401);

    // A disabled project, then a deleted one.
    let (user4, _) = login(&s, "user4", &pw_user4, "lab");
    all(&user4, &lab, 200);
    let (status, body, _) = raw(
        &s,
        "PATCH",
        &s.url(&format!("/identity/v3/projects/{lab}")),
        Some(&root),
        Some(&json!({"project": {"enabled": false}}).to_string()),
    );
    assert_eq!(status, 200, "{body}");
    all(&user4, &lab, 401);

    // A deleted role: every token carrying it.
    let pw_user5 = provision(&s, &root, "ops", "user5", "reader");
    let (user5, _) = login(&s, "user5", &pw_user5, "ops");
    all(&user5, &ops, 200);
    let reader = ids(&s, &root, "roles", "reader");
    let (status, _, _) = raw(
        &s,
        "DELETE",
        &s.url(&format!("/identity/v3/roles/{reader}")),
        Some(&root),
        None,
    );
    assert_eq!(status, 204);
    all(&user5, &ops, 401);

    // Revocations survive a restart; what was not revoked still works.
    let mut s = s;
    s.restart();
    let (status, _, _) = raw(
        &s,
        "GET",
        &s.url(&format!("/v3/{ops}/volumes")),
        Some(&user1),
        None,
    );
    assert_eq!(status, 401);
    let (status, _, _) = raw(
        &s,
        "GET",
        &s.url(&format!("/v3/{ops}/volumes")),
        Some(&user2),
        None,
    );
    assert_eq!(status, 401);
    // Deleting `reader` ended every token that carried it (roles imply
    // `reader`), the admin's too: tokens issued since work.
    let (status, _, _) = raw(
        &s,
        "GET",
        &s.url(&format!("/v3/{ops}/volumes")),
        Some(&user2_new),
        None,
    );
    assert_eq!(status, 401);
    let (root, admin_project) = login(&s, "admin", ADMIN_PASSWORD, "admin");
    let (status, _, _) = raw(
        &s,
        "GET",
        &s.url(&format!("/v3/{admin_project}/volumes")),
        Some(&root),
        None,
    );
    assert_eq!(status, 200);
    let (user2_newest, _) = login(&s, "user2", "changed-1", "ops");
    let (status, _, _) = raw(
        &s,
        "GET",
        &s.url(&format!("/v3/{ops}/volumes")),
        Some(&user2_newest),
        None,
    );
    assert_eq!(status, 200);
}
