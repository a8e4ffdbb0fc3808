//! The PostgreSQL schema: the same versions as SQLite's migrations
//! (`sqlite::MIGRATIONS`), one for one, in PostgreSQL's dialect, so a
//! version number means the same tables on both engines. Integers are
//! BIGINT (an overflow is an error, never a REAL), record bodies are JSON
//! text as on SQLite, and text that lists sort by is compared bytewise
//! (`COLLATE "C"`, SQLite's BINARY), whatever the database's locale.

pub(super) const MIGRATIONS: &[&str] = &[
    r#"
CREATE TABLE volumes (
    id TEXT PRIMARY KEY, project_id TEXT NOT NULL, user_id TEXT NOT NULL,
    status TEXT NOT NULL, name TEXT, description TEXT, size BIGINT NOT NULL,
    created_at BIGINT NOT NULL, updated_at BIGINT, body TEXT NOT NULL);
CREATE INDEX volumes_by_project ON volumes (project_id, created_at);
CREATE TABLE snapshots (
    id TEXT PRIMARY KEY, project_id TEXT NOT NULL, user_id TEXT NOT NULL,
    volume_id TEXT NOT NULL, status TEXT NOT NULL, name TEXT, description TEXT,
    size BIGINT NOT NULL, created_at BIGINT NOT NULL, updated_at BIGINT,
    body TEXT NOT NULL);
CREATE INDEX snapshots_by_project ON snapshots (project_id, created_at);
CREATE INDEX snapshots_by_created ON snapshots (created_at);
CREATE INDEX snapshots_by_volume ON snapshots (volume_id);
CREATE TABLE images (id TEXT PRIMARY KEY, parent TEXT, body TEXT NOT NULL);
CREATE INDEX images_by_parent ON images (parent);
CREATE TABLE quota_limits (
    project_id TEXT NOT NULL, resource TEXT NOT NULL, hard_limit BIGINT NOT NULL,
    PRIMARY KEY (project_id, resource));
CREATE TABLE quota_usage (
    project_id TEXT NOT NULL, resource TEXT NOT NULL, in_use BIGINT NOT NULL,
    PRIMARY KEY (project_id, resource));
CREATE TABLE workflows (id TEXT PRIMARY KEY, created_at BIGINT NOT NULL, body TEXT NOT NULL);
"#,
    r#"
CREATE TABLE identity (kind TEXT NOT NULL, id TEXT NOT NULL, name TEXT NOT NULL, body TEXT NOT NULL,
    PRIMARY KEY (kind, id));
CREATE TABLE role_assignments (user_id TEXT NOT NULL, project_id TEXT NOT NULL, role_id TEXT NOT NULL,
    PRIMARY KEY (user_id, project_id, role_id));
CREATE TABLE revoked_tokens (audit_id TEXT PRIMARY KEY, expires_at BIGINT NOT NULL);
"#,
    r#"
CREATE TABLE volume_types (id TEXT PRIMARY KEY, name TEXT NOT NULL UNIQUE, body TEXT NOT NULL);
"#,
    r#"
CREATE TABLE transfers (id TEXT PRIMARY KEY, volume_id TEXT NOT NULL, created_at BIGINT NOT NULL, body TEXT NOT NULL);
"#,
    r#"
CREATE TABLE service_switches (id TEXT PRIMARY KEY, body TEXT NOT NULL);
"#,
    r#"
CREATE TABLE qos_specs (id TEXT PRIMARY KEY, name TEXT NOT NULL UNIQUE, body TEXT NOT NULL);
"#,
    r#"
CREATE TABLE messages (id TEXT PRIMARY KEY, project_id TEXT NOT NULL, created_at BIGINT NOT NULL, body TEXT NOT NULL);
CREATE INDEX messages_by_project ON messages (project_id, created_at);
"#,
    r#"
CREATE TABLE group_types (id TEXT PRIMARY KEY, name TEXT NOT NULL UNIQUE, body TEXT NOT NULL);
"#,
    r#"
CREATE TABLE groups (id TEXT PRIMARY KEY, created_at BIGINT NOT NULL, body TEXT NOT NULL);
CREATE TABLE group_snapshots (id TEXT PRIMARY KEY, created_at BIGINT NOT NULL, body TEXT NOT NULL);
"#,
    r#"
DROP INDEX snapshots_by_volume;
CREATE INDEX snapshots_by_volume ON snapshots (volume_id, created_at);
CREATE INDEX snapshots_by_project_status ON snapshots (project_id, status, created_at);
CREATE INDEX snapshots_by_project_name ON snapshots (project_id, (COALESCE(name, '') COLLATE "C"), (id COLLATE "C"));
CREATE INDEX volumes_by_project_status ON volumes (project_id, status, created_at);
CREATE INDEX volumes_by_project_name ON volumes (project_id, (COALESCE(name, '') COLLATE "C"), (id COLLATE "C"));
"#,
    r#"
CREATE INDEX images_unowned ON images (id) WHERE (body::jsonb ->> 'owner') = 'None';
"#,
    r#"
CREATE TABLE revoked_subjects (subject TEXT PRIMARY KEY, before_ms BIGINT NOT NULL, expires_at BIGINT NOT NULL);
"#,
    // SQLite's repair of usage that overflowed into a REAL: BIGINT
    // arithmetic raises an error instead, so there is nothing to repair.
    "SELECT 1;",
    r#"
CREATE TABLE nodes (id TEXT PRIMARY KEY, body TEXT NOT NULL);
CREATE TABLE secrets (name TEXT PRIMARY KEY, value TEXT NOT NULL);
"#,
    r#"
CREATE TABLE backups (id TEXT PRIMARY KEY, project_id TEXT NOT NULL, volume_id TEXT NOT NULL,
    created_at BIGINT NOT NULL, body TEXT NOT NULL);
CREATE INDEX backups_by_project ON backups (project_id, created_at);
CREATE TABLE backup_refs (backup_id TEXT NOT NULL, idx BIGINT NOT NULL, project_id TEXT NOT NULL,
    hash TEXT NOT NULL, PRIMARY KEY (backup_id, idx));
CREATE INDEX backup_refs_by_chunk ON backup_refs (project_id, hash);
CREATE TABLE backup_chunks (project_id TEXT NOT NULL, hash TEXT NOT NULL, state BIGINT NOT NULL,
    PRIMARY KEY (project_id, hash));
"#,
    r#"
CREATE TABLE policies (id TEXT PRIMARY KEY, project_id TEXT NOT NULL, created_at BIGINT NOT NULL,
    body TEXT NOT NULL);
"#,
];
