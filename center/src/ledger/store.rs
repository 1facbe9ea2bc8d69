//! [`Ledger::store`]: a batch of one gateway's alert-stream messages in one transaction,
//! with PROTOCOL.md §9's center rules 1–3 (insert, replace by a higher revision, count a
//! re-send, refuse a reused id as a conflict, keep the first snapshot), the payload
//! digests that tell a re-send from a reused id, the fields pulled out for filtering, and
//! each new record's `upward_id`; with exports on, each revision stored goes to their event
//! log in the same transaction.

use lookout_codecs::relay::{Alert, MAX_ID_LEN, Snapshot};
use rusqlite::{OptionalExtension, Transaction, TransactionBehavior, params};
use serde_json::Value;
use sha2::{Digest, Sha256};

use super::{Incoming, Ledger, LedgerError, StoreOutcome, Stored, ms_to_sql};

impl Ledger {
    /// Stores a batch of alert-stream messages from one gateway in one transaction and
    /// returns, in order, what happened to each. When this returns `Ok` the batch is
    /// committed and fsynced, and every message in it may be acknowledged (§9 center
    /// rule 3); on `Err` nothing of the batch is stored and nothing may be acknowledged.
    ///
    /// Records are keyed by (`gateway`, id): the same id from two gateways is two
    /// alerts. An id unknown so far for this gateway is inserted; a higher revision
    /// replaces the record's payload, revision and extracted fields, keeping its
    /// first-received time and its operator acknowledgement; an equal or lower revision
    /// with the payload the ledger holds for that revision changes nothing but the
    /// delivery count, and one with another payload is a [`StoreOutcome::Conflict`]
    /// that changes nothing at all. A snapshot (in `Alert::snapshot_jpeg` or a
    /// `Snapshot` message) is stored only if the alert has none yet, even if it arrives
    /// before its alert.
    pub fn store(
        &self,
        gateway: &str,
        messages: &[Incoming],
        now_unix_ms: u64,
    ) -> Result<Vec<Stored>, LedgerError> {
        let now = ms_to_sql(now_unix_ms);
        let mut conn = self.lock();
        let tx = conn
            .transaction_with_behavior(TransactionBehavior::Immediate)
            .map_err(|cause| {
                self.sqlite(
                    format!("starting to store a batch from gateway {gateway}"),
                    cause,
                )
            })?;
        let export = self.exporting.load(std::sync::atomic::Ordering::Relaxed);
        let mut results = Vec::with_capacity(messages.len());
        for message in messages {
            let stored = match message {
                Incoming::Alert(alert) => {
                    store_alert(&tx, gateway, alert, now, export).map_err(|cause| {
                        self.sqlite(
                            format!(
                                "storing alert {} revision {} from gateway {gateway}",
                                alert.id, alert.revision
                            ),
                            cause,
                        )
                    })?
                }
                Incoming::Snapshot(snapshot) => store_snapshot(&tx, gateway, snapshot, now)
                    .map_err(|cause| {
                        self.sqlite(
                            format!(
                                "storing the snapshot of alert {} from gateway {gateway}",
                                snapshot.alert_id
                            ),
                            cause,
                        )
                    })?,
            };
            results.push(stored);
        }
        tx.commit().map_err(|cause| {
            self.sqlite(
                format!(
                    "committing a batch of {} messages from gateway {gateway}",
                    messages.len()
                ),
                cause,
            )
        })?;
        Ok(results)
    }
}

/// Center rules 1 and 2 for one `Alert` of `gateway`.
fn store_alert(
    tx: &Transaction<'_>,
    gateway: &str,
    alert: &Alert,
    now: i64,
    export: bool,
) -> rusqlite::Result<Stored> {
    let revision = i64::from(alert.revision);
    let existing: Option<(i64, String)> = tx
        .query_row(
            "SELECT revision, payload FROM alerts WHERE gateway = ?1 AND id = ?2",
            [gateway, &alert.id],
            |row| Ok((row.get(0)?, row.get(1)?)),
        )
        .optional()?;
    let digest = payload_digest(&alert.payload_json);
    let fields = Extracted::from_payload(&alert.payload_json);
    let outcome = match existing {
        None => {
            let upward_id = choose_upward_id(tx, gateway, &alert.id)?;
            tx.execute(
                "INSERT INTO alerts (gateway, id, upward_id, revision, camera, label, \
                 severity, state, payload, received_unix_ms, updated_unix_ms, deliveries) \
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?10, 1)",
                params![
                    gateway,
                    alert.id,
                    upward_id,
                    revision,
                    fields.camera,
                    fields.label,
                    fields.severity,
                    fields.state,
                    alert.payload_json,
                    now
                ],
            )?;
            remember_revision(tx, gateway, &alert.id, revision, &digest)?;
            StoreOutcome::Inserted
        }
        Some((stored, stored_payload)) if revision > stored => {
            // The record being replaced may predate `revisions` (a migrated ledger).
            remember_revision(
                tx,
                gateway,
                &alert.id,
                stored,
                &payload_digest(&stored_payload),
            )?;
            tx.execute(
                "UPDATE alerts SET revision = ?3, camera = ?4, label = ?5, severity = ?6, \
                 state = ?7, payload = ?8, updated_unix_ms = ?9, deliveries = deliveries + 1 \
                 WHERE gateway = ?1 AND id = ?2",
                params![
                    gateway,
                    alert.id,
                    revision,
                    fields.camera,
                    fields.label,
                    fields.severity,
                    fields.state,
                    alert.payload_json,
                    now
                ],
            )?;
            remember_revision(tx, gateway, &alert.id, revision, &digest)?;
            StoreOutcome::Updated
        }
        Some((stored, stored_payload)) => {
            let held = if revision == stored {
                Some(payload_digest(&stored_payload).to_vec())
            } else {
                tx.query_row(
                    "SELECT payload_sha256 FROM revisions \
                     WHERE gateway = ?1 AND alert_id = ?2 AND revision = ?3",
                    params![gateway, alert.id, revision],
                    |row| row.get::<_, Vec<u8>>(0),
                )
                .optional()?
            };
            // A lower revision the ledger never saw (superseded before it arrived, or
            // older than the ledger's `revisions`) cannot be checked: the protocol's
            // own rule, that a higher revision carries the whole record, holds.
            if held.is_some_and(|held| held != digest) {
                return Ok(Stored::Alert {
                    id: alert.id.clone(),
                    revision: alert.revision,
                    outcome: StoreOutcome::Conflict {
                        why: format!(
                            "gateway {gateway}'s alert {} already holds a different record \
                             at revision {}; an alert id must not be reused for another alert",
                            alert.id, alert.revision
                        ),
                    },
                });
            }
            tx.execute(
                "UPDATE alerts SET deliveries = deliveries + 1 WHERE gateway = ?1 AND id = ?2",
                [gateway, &alert.id],
            )?;
            StoreOutcome::Duplicate
        }
    };
    if export && matches!(outcome, StoreOutcome::Inserted | StoreOutcome::Updated) {
        super::export::append(
            tx,
            gateway,
            &alert.id,
            alert.revision,
            &alert.payload_json,
            now,
        )?;
    }
    if let Some(jpeg) = &alert.snapshot_jpeg {
        insert_snapshot(tx, gateway, &alert.id, jpeg, now)?;
    }
    Ok(Stored::Alert {
        id: alert.id.clone(),
        revision: alert.revision,
        outcome,
    })
}

/// Center rule 3 for one `Snapshot` of `gateway`.
fn store_snapshot(
    tx: &Transaction<'_>,
    gateway: &str,
    snapshot: &Snapshot,
    now: i64,
) -> rusqlite::Result<Stored> {
    let stored = insert_snapshot(tx, gateway, &snapshot.alert_id, &snapshot.jpeg, now)?;
    Ok(Stored::Snapshot {
        alert_id: snapshot.alert_id.clone(),
        stored,
    })
}

/// Stores a snapshot unless the alert has one; returns whether it did.
fn insert_snapshot(
    tx: &Transaction<'_>,
    gateway: &str,
    alert_id: &str,
    jpeg: &[u8],
    now: i64,
) -> rusqlite::Result<bool> {
    let inserted = tx.execute(
        "INSERT INTO snapshots (gateway, alert_id, received_unix_ms, jpeg) \
         VALUES (?1, ?2, ?3, ?4) ON CONFLICT (gateway, alert_id) DO NOTHING",
        params![gateway, alert_id, now, jpeg],
    )?;
    Ok(inserted > 0)
}

/// The SHA-256 of a payload, as `revisions` keeps it: enough to tell a re-send from a
/// reused id without keeping every revision's record.
fn payload_digest(payload_json: &str) -> [u8; 32] {
    Sha256::digest(payload_json.as_bytes()).into()
}

/// Remembers the payload digest of one revision (the first one stays).
fn remember_revision(
    tx: &Transaction<'_>,
    gateway: &str,
    id: &str,
    revision: i64,
    digest: &[u8; 32],
) -> rusqlite::Result<()> {
    tx.execute(
        "INSERT INTO revisions (gateway, alert_id, revision, payload_sha256) \
         VALUES (?1, ?2, ?3, ?4) ON CONFLICT DO NOTHING",
        params![gateway, id, revision, digest.as_slice()],
    )?;
    Ok(())
}

/// The `upward_id` of a new record (PROTOCOL.md §11): the alert's own id while no
/// record goes upward under it, else `GATEWAY/ID` when that fits and is free, else a
/// digest of both, numbered while taken. Chosen once and stored, so what a cascade has
/// forwarded never changes name.
fn choose_upward_id(tx: &Transaction<'_>, gateway: &str, id: &str) -> rusqlite::Result<String> {
    let taken = |candidate: &str| -> rusqlite::Result<bool> {
        tx.query_row(
            "SELECT EXISTS (SELECT 1 FROM alerts WHERE upward_id = ?1)",
            [candidate],
            |row| row.get(0),
        )
    };
    if !taken(id)? {
        return Ok(id.to_string());
    }
    let scoped = format!("{gateway}/{id}");
    if scoped.len() <= MAX_ID_LEN && !taken(&scoped)? {
        return Ok(scoped);
    }
    let digest = Sha256::digest(format!("{gateway}\n{id}").as_bytes());
    let hex: String = digest.iter().take(16).map(|b| format!("{b:02x}")).collect();
    let hashed = format!("~{hex}");
    if !taken(&hashed)? {
        return Ok(hashed);
    }
    // Only a gateway choosing ids to collide gets here; it cannot take them all.
    let mut n = 2u64;
    loop {
        let numbered = format!("{hashed}-{n}");
        if !taken(&numbered)? {
            return Ok(numbered);
        }
        n += 1;
    }
}

/// The payload fields the ledger filters on, pulled out of the hub's alert JSON.
#[derive(Default)]
struct Extracted {
    camera: Option<String>,
    label: Option<String>,
    severity: Option<String>,
    state: Option<String>,
}

impl Extracted {
    /// All `None` when the payload is not a JSON object: it is stored all the same.
    fn from_payload(payload_json: &str) -> Extracted {
        let Ok(value) = serde_json::from_str::<Value>(payload_json) else {
            return Extracted::default();
        };
        let text = |pointer: &str| match value.pointer(pointer)? {
            Value::String(s) => Some(s.clone()),
            v @ (Value::Number(_) | Value::Bool(_)) => Some(v.to_string()),
            _ => None,
        };
        Extracted {
            camera: text("/camera/id"),
            label: text("/label"),
            severity: text("/severity"),
            state: text("/state"),
        }
    }
}
