//! The embedded identity service's routes (a subset of Keystone v3, served
//! with `--auth embedded`) as OpenAPI operations.

use crate::fields;
use ember_api_common::openapi::shapes::*;
use ember_api_common::openapi::{Content, Operation};
use serde_json::{Value, json};

/// `{"error": {"code", "message", "title"}}`, as Keystone answers.
fn error_body() -> Value {
    wrapped(
        "error",
        object(&[
            ("code", integer()),
            ("message", string()),
            ("title", string()),
        ]),
    )
}

const ERRORS: &[u16] = &[400, 401, 403, 404, 409, 415];

pub fn operations() -> Vec<Operation> {
    let p = |s: &str| format!("/identity/v3{s}");
    let ok = |body: Value| Content::Json(body);
    let subject = json!({"type": "string", "minLength": 1});
    let named = |key: &str| wrapped(key, any_object());
    let ops = vec![
        Operation::new("GET", "/identity", "List the identity API versions")
            .public()
            .responds(300, ok(any_object())),
        Operation::new("GET", p(""), "Show the identity v3 version")
            .public()
            .responds(200, ok(wrapped("version", any_object()))),
        Operation::new(
            "POST",
            p("/auth/tokens"),
            "Issue a token (password or token method)",
        )
        .public()
        .query("nocatalog", json!({"type": "string"}))
        .json_body(wrapped("auth", any_object()))
        .responds(201, ok(named("token"))),
        Operation::new(
            "GET",
            p("/auth/tokens"),
            "Validate a token (X-Subject-Token)",
        )
        .header("X-Subject-Token", true, subject.clone())
        .query("nocatalog", json!({"type": "string"}))
        .responds(200, ok(named("token"))),
        Operation::new(
            "DELETE",
            p("/auth/tokens"),
            "Revoke a token (X-Subject-Token)",
        )
        .header("X-Subject-Token", true, subject)
        .responds(204, Content::Empty),
        Operation::new("GET", p("/auth/catalog"), "Show the service catalog")
            .responds(200, ok(list("catalog", any_object()))),
        Operation::new("GET", p("/domains"), "List domains")
            .responds(200, ok(list("domains", any_object()))),
        Operation::new("GET", p("/domains/{domain_id}"), "Show the default domain")
            .responds(200, ok(named("domain"))),
        Operation::new("GET", p("/projects"), "List projects")
            .query("name", json!({"type": "string"}))
            .responds(200, ok(list("projects", any_object()))),
        Operation::new("POST", p("/projects"), "Create a project")
            .json_body(fields::PROJECT_CREATE.json_schema())
            .responds(201, ok(named("project"))),
        Operation::new("GET", p("/projects/{target_project_id}"), "Show a project")
            .responds(200, ok(named("project"))),
        Operation::new(
            "PATCH",
            p("/projects/{target_project_id}"),
            "Update a project",
        )
        .json_body(fields::PROJECT_UPDATE.json_schema())
        .responds(200, ok(named("project"))),
        Operation::new(
            "DELETE",
            p("/projects/{target_project_id}"),
            "Delete a project",
        )
        .responds(204, Content::Empty),
        Operation::new("GET", p("/users"), "List users")
            .query("name", json!({"type": "string"}))
            .responds(200, ok(list("users", any_object()))),
        Operation::new("POST", p("/users"), "Create a user")
            .json_body(fields::USER_CREATE.json_schema())
            .responds(201, ok(named("user"))),
        Operation::new("GET", p("/users/{user_id}"), "Show a user")
            .responds(200, ok(named("user"))),
        Operation::new("PATCH", p("/users/{user_id}"), "Update a user")
            .json_body(fields::USER_UPDATE.json_schema())
            .responds(200, ok(named("user"))),
        Operation::new("DELETE", p("/users/{user_id}"), "Delete a user")
            .responds(204, Content::Empty),
        Operation::new(
            "POST",
            p("/users/{user_id}/credentials/OS-EC2"),
            "Create EC2 credentials (access keys for signed EVS requests)",
        )
        .json_body(object(&[("tenant_id", string())]))
        .responds(201, ok(named("credential"))),
        Operation::new(
            "GET",
            p("/users/{user_id}/credentials/OS-EC2"),
            "List EC2 credentials",
        )
        .responds(200, ok(list("credentials", any_object()))),
        Operation::new(
            "GET",
            p("/users/{user_id}/credentials/OS-EC2/{access}"),
            "Show EC2 credentials",
        )
        .responds(200, ok(named("credential"))),
        Operation::new(
            "DELETE",
            p("/users/{user_id}/credentials/OS-EC2/{access}"),
            "Delete EC2 credentials",
        )
        .responds(204, Content::Empty),
        Operation::new("GET", p("/roles"), "List roles")
            .query("name", json!({"type": "string"}))
            .responds(200, ok(list("roles", any_object()))),
        Operation::new("POST", p("/roles"), "Create a role")
            .json_body(fields::ROLE_CREATE.json_schema())
            .responds(201, ok(named("role"))),
        Operation::new("GET", p("/roles/{role_id}"), "Show a role")
            .responds(200, ok(named("role"))),
        Operation::new("DELETE", p("/roles/{role_id}"), "Delete a role")
            .responds(204, Content::Empty),
        Operation::new(
            "GET",
            p("/projects/{target_project_id}/users/{user_id}/roles"),
            "List a user's roles on a project",
        )
        .responds(200, ok(list("roles", any_object()))),
        Operation::new(
            "PUT",
            p("/projects/{target_project_id}/users/{user_id}/roles/{role_id}"),
            "Grant a role",
        )
        .responds(204, Content::Empty),
        Operation::new(
            "HEAD",
            p("/projects/{target_project_id}/users/{user_id}/roles/{role_id}"),
            "Check a role grant",
        )
        .responds(204, Content::Empty),
        Operation::new(
            "DELETE",
            p("/projects/{target_project_id}/users/{user_id}/roles/{role_id}"),
            "Revoke a role",
        )
        .responds(204, Content::Empty),
        Operation::new("GET", p("/role_assignments"), "List role assignments")
            .query("user.id", json!({"type": "string"}))
            .query("scope.project.id", json!({"type": "string"}))
            .responds(200, ok(list("role_assignments", any_object()))),
    ];
    let error = error_body();
    ops.into_iter()
        .map(|op| op.tag("identity").errors(ERRORS, &error))
        .collect()
}
