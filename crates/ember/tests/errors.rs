//! Every error case of the core API: status code and Cinder's body shape.

mod common;

use common::{OTHER_PROJECT, PROJECT, Server};
use serde_json::{Value, json};

fn assert_error(status: u16, body: &Value, want_status: u16, kind: &str, needle: &str) {
    assert_eq!(status, want_status, "{body}");
    let e = &body[kind];
    assert_eq!(e["code"], want_status, "{body}");
    let message = e["message"]
        .as_str()
        .unwrap_or_else(|| panic!("no {kind}.message in {body}"));
    assert!(
        message.contains(needle),
        "message {message:?} should contain {needle:?}"
    );
}

#[test]
fn quotas_are_exact_even_under_parallel_requests() {
    let s = Server::start();
    let vol = s.create_volume(1);
    let (status, body) = s.admin(
        "PUT",
        &format!("/os-quota-sets/{PROJECT}"),
        Some(json!({"quota_set": {"snapshots": 5}})),
    );
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["quota_set"]["snapshots"], 5);
    let results: Vec<(u16, Value)> = std::thread::scope(|scope| {
        let handles: Vec<_> = (0..20)
            .map(|_| {
                scope.spawn(|| {
                    s.admin(
                        "POST",
                        "/snapshots",
                        Some(json!({"snapshot": {"volume_id": vol}})),
                    )
                })
            })
            .collect();
        handles.into_iter().map(|h| h.join().unwrap()).collect()
    });
    let accepted = results.iter().filter(|(st, _)| *st == 202).count();
    assert_eq!(accepted, 5, "exactly the quota is accepted");
    for (st, body) in results.iter().filter(|(st, _)| *st != 202) {
        assert_error(
            *st,
            body,
            413,
            "overLimit",
            "Maximum number of snapshots allowed (5) exceeded",
        );
    }
    let (_, q) = s.admin("GET", &format!("/os-quota-sets/{PROJECT}?usage=true"), None);
    assert_eq!(q["quota_set"]["snapshots"]["in_use"], 5);
    assert_eq!(q["quota_set"]["gigabytes"]["in_use"], 6);
    // A limit below usage is refused.
    let (status, body) = s.admin(
        "PUT",
        &format!("/os-quota-sets/{PROJECT}"),
        Some(json!({"quota_set": {"snapshots": 2}})),
    );
    assert_error(
        status,
        &body,
        400,
        "badRequest",
        "must be greater than or equal to already used",
    );
    // Gigabytes: a 2000 GiB volume exceeds the default 1000.
    let (status, body) = s.admin("POST", "/volumes", Some(json!({"volume": {"size": 2000}})));
    assert_error(
        status,
        &body,
        413,
        "overLimit",
        "exceeds allowed gigabytes quota",
    );
    // Members cannot change quotas.
    let (status, body) = s.call(
        "PUT",
        &s.v3(&format!("/os-quota-sets/{PROJECT}")),
        &format!("bob:{PROJECT}"),
        None,
        Some(json!({"quota_set": {"snapshots": 50}})),
    );
    assert_error(status, &body, 403, "forbidden", "quotas:update");
}

#[test]
fn authentication_roles_and_tenant_isolation() {
    let s = Server::start();
    let vol = s.create_volume(1);
    // No token: 401.
    let resp = s.http.get(s.v3("/snapshots")).send().unwrap();
    assert_eq!(resp.status().as_u16(), 401);
    // A reader may list but not create.
    let reader = format!("rita:{PROJECT}:reader");
    let (status, _) = s.call("GET", &s.v3("/snapshots"), &reader, None, None);
    assert_eq!(status, 200);
    let (status, body) = s.call(
        "POST",
        &s.v3("/snapshots"),
        &reader,
        None,
        Some(json!({"snapshot": {"volume_id": vol}})),
    );
    assert_error(status, &body, 403, "forbidden", "volume:create_snapshot");
    // Another project's member sees the volume exactly as a missing one.
    let other = format!("mallory:{OTHER_PROJECT}");
    let url = s.url(&format!("/v3/{OTHER_PROJECT}/volumes/{vol}"));
    let (status, body) = s.call("GET", &url, &other, None, None);
    assert_error(
        status,
        &body,
        404,
        "itemNotFound",
        &format!("Volume {vol} could not be found."),
    );
    let (status, body) = s.call(
        "POST",
        &s.url(&format!("/v3/{OTHER_PROJECT}/snapshots")),
        &other,
        None,
        Some(json!({"snapshot": {"volume_id": vol}})),
    );
    assert_error(
        status,
        &body,
        404,
        "itemNotFound",
        &format!("Volume {vol} could not be found."),
    );
    let (status, list) = s.call(
        "GET",
        &s.url(&format!("/v3/{OTHER_PROJECT}/volumes/detail?all_tenants=1")),
        &other,
        None,
        None,
    );
    assert_eq!(status, 200);
    assert_eq!(list["volumes"], json!([]));
    // A member cannot use another project's id in the URL.
    let (status, body) = s.call("GET", &s.v3("/snapshots"), &other, None, None);
    assert_error(
        status,
        &body,
        400,
        "badRequest",
        "doesn't match Context's project_id",
    );
    // Admin actions are admin-only.
    let member = format!("bob:{PROJECT}");
    let (status, body) = s.call(
        "POST",
        &s.v3(&format!("/volumes/{vol}/action")),
        &member,
        None,
        Some(json!({"os-reset_status": {"status": "error"}})),
    );
    assert_error(status, &body, 403, "forbidden", "reset_status");
}

#[test]
fn state_rules() {
    let s = Server::start();
    let vol = s.create_volume(1);
    let snap = s.create_snapshot(&vol);
    // A volume with snapshots cannot be deleted without cascade.
    let (status, body) = s.admin("DELETE", &format!("/volumes/{vol}"), None);
    assert_error(
        status,
        &body,
        400,
        "badRequest",
        "Invalid volume: Volume status must be available or error",
    );
    // Revert only to the latest snapshot.
    let newer = s.create_snapshot(&vol);
    let (status, body) = s.admin(
        "POST",
        &format!("/volumes/{vol}/action"),
        Some(json!({"revert": {"snapshot_id": snap}})),
    );
    assert_error(status, &body, 400, "badRequest", "latest snapshot");
    // Below 3.40 revert is not an action.
    let (status, body) = s.call(
        "POST",
        &s.v3(&format!("/volumes/{vol}/action")),
        &format!("admin:{PROJECT}"),
        Some("3.39"),
        Some(json!({"revert": {"snapshot_id": newer}})),
    );
    assert_error(status, &body, 400, "badRequest", "not supported");
    // A volume in error cannot be snapshotted.
    let (status, _) = s.admin(
        "POST",
        &format!("/volumes/{vol}/action"),
        Some(json!({"os-reset_status": {"status": "error"}})),
    );
    assert_eq!(status, 202);
    let (status, body) = s.admin(
        "POST",
        "/snapshots",
        Some(json!({"snapshot": {"volume_id": vol}})),
    );
    assert_error(
        status,
        &body,
        400,
        "badRequest",
        "status must be available, but current status is: error",
    );
    // As in Cinder, an admin may set any status by hand, even a
    // transitional one, and it stays as set (no workflow moves it).
    let (status, _) = s.admin(
        "POST",
        &format!("/snapshots/{snap}/action"),
        Some(json!({"os-reset_status": {"status": "creating"}})),
    );
    assert_eq!(status, 202);
    let (_, body) = s.admin("GET", &format!("/snapshots/{snap}"), None);
    assert_eq!(body["snapshot"]["status"], "creating");
    let (status, body) = s.admin(
        "POST",
        &format!("/snapshots/{snap}/action"),
        Some(json!({"os-reset_status": {"status": "bogus"}})),
    );
    assert_eq!(status, 400, "{body}");
    // A snapshot that is not available or error cannot be deleted.
    let (status, _) = s.admin(
        "POST",
        &format!("/snapshots/{snap}/action"),
        Some(json!({"os-reset_status": {"status": "error_deleting"}})),
    );
    assert_eq!(status, 202);
    let (status, body) = s.admin("DELETE", &format!("/snapshots/{snap}"), None);
    assert_error(
        status,
        &body,
        400,
        "badRequest",
        "Snapshot status must be available or error",
    );
    // ... unless an admin forces it.
    let (status, _) = s.admin(
        "POST",
        &format!("/snapshots/{snap}/action"),
        Some(json!({"os-force_delete": {}})),
    );
    assert_eq!(status, 202);
    s.wait_gone("snapshots", &snap);
    // Cascade deletes the volume with its snapshots and frees the quota.
    let (status, _) = s.admin(
        "POST",
        &format!("/volumes/{vol}/action"),
        Some(json!({"os-reset_status": {"status": "available"}})),
    );
    assert_eq!(status, 202);
    let (status, body) = s.admin("DELETE", &format!("/volumes/{vol}?cascade=true"), None);
    assert_eq!(status, 202, "{body}");
    s.wait_gone("volumes", &vol);
    s.wait_gone("snapshots", &newer);
    let (_, q) = s.admin("GET", &format!("/os-quota-sets/{PROJECT}?usage=true"), None);
    for key in ["volumes", "snapshots", "gigabytes"] {
        assert_eq!(q["quota_set"][key]["in_use"], 0, "{key}: {q}");
    }
    // Extend must grow.
    let vol = s.create_volume(2);
    let (status, body) = s.admin(
        "POST",
        &format!("/volumes/{vol}/action"),
        Some(json!({"os-extend": {"new_size": 1}})),
    );
    assert_error(
        status,
        &body,
        400,
        "badRequest",
        "must be greater than current size",
    );
    // A clone smaller than its source is refused.
    let (status, body) = s.admin(
        "POST",
        "/volumes",
        Some(json!({"volume": {"size": 1, "source_volid": vol}})),
    );
    assert_error(status, &body, 400, "badRequest", "cannot be smaller");
}

#[test]
fn bad_requests_are_4xx_in_cinder_shape_never_5xx() {
    let s = Server::start();
    let token = format!("admin:{PROJECT}");
    let post = |path: &str, ct: Option<&str>, body: Vec<u8>| {
        let mut rb = s
            .http
            .post(s.v3(path))
            .header("X-Auth-Token", token.as_str())
            .body(body);
        if let Some(ct) = ct {
            rb = rb.header("Content-Type", ct);
        }
        let resp = rb.send().unwrap();
        let status = resp.status().as_u16();
        (status, resp.json::<Value>().unwrap_or(Value::Null))
    };
    let (st, b) = post(
        "/snapshots",
        Some("application/json"),
        b"{not json".to_vec(),
    );
    assert_error(st, &b, 400, "badRequest", "Malformed request body");
    let (st, b) = post("/snapshots", Some("application/json"), vec![]);
    assert_error(st, &b, 400, "badRequest", "body");
    let (st, b) = post("/snapshots", Some("application/json"), vec![b' '; 200_000]);
    assert_error(st, &b, 413, "overLimit", "too large");
    let (st, b) = post("/snapshots", Some("application/xml"), b"<a/>".to_vec());
    assert_error(st, &b, 415, "badMediaType", "Unsupported Content-Type");
    let (st, b) = post("/snapshots", Some("application/json"), b"\xff\xfe".to_vec());
    assert_error(st, &b, 400, "badRequest", "Malformed");
    let deep = format!("{}{}", "[".repeat(10_000), "]".repeat(10_000));
    let (st, b) = post("/snapshots", Some("application/json"), deep.into_bytes());
    assert_eq!(st, 400, "{b}");
    let (st, b) = post(
        "/snapshots",
        Some("application/json"),
        br#"{"snapshot": {"volume_id": "not-a-uuid"}}"#.to_vec(),
    );
    assert_error(
        st,
        &b,
        400,
        "badRequest",
        "is not valid under any of the given schemas",
    );
    let (st, b) = post(
        "/volumes",
        Some("application/json"),
        br#"{"volume": {"size": 0}}"#.to_vec(),
    );
    assert_error(st, &b, 400, "badRequest", "less than the minimum of 1");
    let (st, b) = post(
        "/volumes",
        Some("application/json"),
        br#"{"volume": {"size": "ten"}}"#.to_vec(),
    );
    assert_error(st, &b, 400, "badRequest", "does not match");
    let (st, b) = post(
        "/volumes",
        Some("application/json"),
        br#"{"volume": {"size": 1, "availability_zone": "mars"}}"#.to_vec(),
    );
    assert_error(
        st,
        &b,
        400,
        "badRequest",
        "Availability zone 'mars' is invalid",
    );
    let (st, b) = post(
        "/volumes",
        Some("application/json"),
        br#"{"volume": {"size": 1, "metadata": {"bad/key": "v"}}}"#.to_vec(),
    );
    assert_error(
        st,
        &b,
        400,
        "badRequest",
        "Additional properties are not allowed",
    );
    let (st, b) = post(
        "/volumes/not-a-uuid/action",
        Some("application/json"),
        br#"{"os-extend": {"new_size": 2}}"#.to_vec(),
    );
    assert_error(
        st,
        &b,
        404,
        "itemNotFound",
        "Volume not-a-uuid could not be found.",
    );
    let (st, b) = s.admin("GET", "/snapshots/detail?limit=abc", None);
    assert_error(st, &b, 400, "badRequest", "limit param must be an integer");
    let (st, b) = s.admin("GET", "/snapshots/detail?offset=-3", None);
    assert_error(st, &b, 400, "badRequest", "offset param must be positive");
    let (st, b) = s.admin("GET", "/snapshots/detail?sort=created_at:sideways", None);
    assert_error(st, &b, 400, "badRequest", "Unknown sort direction");
    let (st, b) = s.admin("GET", "/volumes/detail?limit=99999999999999999999999", None);
    assert_error(st, &b, 400, "badRequest", "limit param must be an integer");
    // Unicode names at the length limit are fine, one more is not.
    let vol = s.create_volume(1);
    let name = "é".repeat(255);
    let (st, b) = s.admin(
        "POST",
        "/snapshots",
        Some(json!({"snapshot": {"volume_id": vol, "name": name}})),
    );
    assert_eq!(st, 202, "{b}");
    assert_eq!(b["snapshot"]["name"].as_str().unwrap().chars().count(), 255);
    let (st, b) = s.admin(
        "POST",
        "/snapshots",
        Some(json!({"snapshot": {"volume_id": vol, "name": "é".repeat(256)}})),
    );
    assert_error(st, &b, 400, "badRequest", "is too long");
    // Microversions.
    let (st, b) = s.call("GET", &s.v3("/snapshots"), &token, Some("3.99"), None);
    assert_error(
        st,
        &b,
        406,
        "computeFault",
        "Version 3.99 is not supported by the API",
    );
    let (st, b) = s.call("GET", &s.v3("/snapshots"), &token, Some("three"), None);
    assert_error(st, &b, 400, "badRequest", "invalid format");
    // Unknown routes answer Cinder's plain 404.
    let (st, b) = s.call("GET", &s.v3("/nothing-here"), &token, None, None);
    assert_eq!(st, 404);
    assert_eq!(b["code"], "404 Not Found");
}
