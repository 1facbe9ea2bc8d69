//! The ledger file's schema: the `application_id` that marks a file as a ledger, the
//! version 1 tables every file is created with, and the migrations that bring it to the
//! version this build writes (`lookout_core::durable` applies them).

/// `PRAGMA application_id` of a ledger ("LKLG"), so that another SQLite file (a
/// gateway's outbox, say) given as the ledger path is refused rather than written to.
pub(super) const APPLICATION_ID: i64 = 0x4c4b_4c47;

/// Version 1, as lookout wrote it until alert ids became per gateway: keyed by alert id
/// alone, so a second gateway's alert with an id already taken was dropped (and, worse,
/// acknowledged). Every file is created like this and then migrated ([`MIGRATIONS`]).
pub(super) const SCHEMA_V1: &str = "
CREATE TABLE alerts (
    id TEXT PRIMARY KEY,
    gateway TEXT NOT NULL,
    revision INTEGER NOT NULL,
    camera TEXT,
    label TEXT,
    severity TEXT,
    state TEXT,
    payload TEXT NOT NULL,
    received_unix_ms INTEGER NOT NULL,
    updated_unix_ms INTEGER NOT NULL,
    deliveries INTEGER NOT NULL,
    acked_by TEXT,
    acked_unix_ms INTEGER,
    ack_note TEXT
);
CREATE INDEX alerts_by_received ON alerts (received_unix_ms);
CREATE TABLE snapshots (
    alert_id TEXT PRIMARY KEY,
    gateway TEXT NOT NULL,
    received_unix_ms INTEGER NOT NULL,
    jpeg BLOB NOT NULL
);
";

/// Version 1 → 2: alerts and snapshots keyed by (gateway, id). Version 1 ids were
/// unique across gateways, so each record keeps its id as its `upward_id` (what a
/// cascade has been forwarding it as) and its rowid (the listing's tie-break order).
/// `revisions` keeps a digest of every revision's payload from now on, so a reused id
/// is told from a re-send (center rule 2) even after a higher revision replaced it.
/// Snapshots still live in their own table, so listings never touch the JPEGs; one that
/// arrives before its alert waits there and is attached (by the join) once the alert is
/// stored.
pub(super) const MIGRATE_V2: &str = "
CREATE TABLE alerts_v2 (
    gateway TEXT NOT NULL,
    id TEXT NOT NULL,
    upward_id TEXT NOT NULL UNIQUE,
    revision INTEGER NOT NULL,
    camera TEXT,
    label TEXT,
    severity TEXT,
    state TEXT,
    payload TEXT NOT NULL,
    received_unix_ms INTEGER NOT NULL,
    updated_unix_ms INTEGER NOT NULL,
    deliveries INTEGER NOT NULL,
    acked_by TEXT,
    acked_unix_ms INTEGER,
    ack_note TEXT,
    PRIMARY KEY (gateway, id)
);
INSERT INTO alerts_v2 (rowid, gateway, id, upward_id, revision, camera, label, severity,
    state, payload, received_unix_ms, updated_unix_ms, deliveries, acked_by,
    acked_unix_ms, ack_note)
SELECT rowid, gateway, id, id, revision, camera, label, severity, state, payload,
    received_unix_ms, updated_unix_ms, deliveries, acked_by, acked_unix_ms, ack_note
FROM alerts;
DROP TABLE alerts;
ALTER TABLE alerts_v2 RENAME TO alerts;
CREATE INDEX alerts_by_received ON alerts (received_unix_ms);
CREATE INDEX alerts_by_id ON alerts (id);
CREATE TABLE snapshots_v2 (
    gateway TEXT NOT NULL,
    alert_id TEXT NOT NULL,
    received_unix_ms INTEGER NOT NULL,
    jpeg BLOB NOT NULL,
    PRIMARY KEY (gateway, alert_id)
);
INSERT INTO snapshots_v2 (gateway, alert_id, received_unix_ms, jpeg)
SELECT gateway, alert_id, received_unix_ms, jpeg FROM snapshots;
DROP TABLE snapshots;
ALTER TABLE snapshots_v2 RENAME TO snapshots;
CREATE TABLE revisions (
    gateway TEXT NOT NULL,
    alert_id TEXT NOT NULL,
    revision INTEGER NOT NULL,
    payload_sha256 BLOB NOT NULL,
    PRIMARY KEY (gateway, alert_id, revision)
) WITHOUT ROWID;
";

/// Version 2 → 3: the exports' durable event log. Each alert revision the ledger stores
/// while exports are configured is appended to `export_events` in the same transaction;
/// each export's cursor (`export_cursors`) is the last event it delivered. Events every
/// cursor has passed are deleted.
pub(super) const MIGRATE_V3: &str = lookout_core::export::log::TABLES;

/// Every migration, oldest first: the schema this build writes is version
/// `1 + MIGRATIONS.len()`.
pub(super) const MIGRATIONS: &[&str] = &[MIGRATE_V2, MIGRATE_V3];
