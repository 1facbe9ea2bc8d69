//! Alert ids at the command center, end to end with real processes (`lookout
//! center`, `lookout run` ×2, certificates from `lookout certs`) over QUIC on
//! loopback, alerts raised the way an API client raises them: `POST
//! /api/alerts` with an id the client chose (issue 19).
//!
//! 1. Two gateways post the same id: the center stores both alerts, each
//!    intact under its own gateway, and both outboxes empty.
//! 2. A gateway that lost its files reuses one of its own ids for another
//!    alert: the center refuses it (`AlertRefused`, `ALERT_ID_CONFLICT`) and
//!    acknowledges nothing; the gateway keeps the alert in its outbox, shows
//!    and counts the refusal, and offers it again on its next connection.
//! 3. A center whose ledger cannot store (a full disk, simulated by an SQLite
//!    trigger) acknowledges nothing; the gateway keeps the alert and delivers
//!    it once the ledger can store again.

mod procs;

use std::path::PathBuf;
use std::time::Duration;

use procs::{Proc, certs, free_udp_port, http, refused_tcp_port, wait};
use serde_json::Value;

/// Bound on any single wait.
const WAIT: Duration = Duration::from_secs(20);

/// The id of issue 19, which a river gauge's client chose.
const ID: &str = "gauge17-2026-12-07T0815";

struct Site {
    dir: tempfile::TempDir,
    pki: PathBuf,
    quic: String,
}

impl Site {
    /// Certificates for a center and `gateways`, and a free QUIC port.
    fn new(gateways: &[&str]) -> Site {
        let dir = tempfile::tempdir().expect("tempdir");
        let pki = dir.path().join("pki");
        let mut args = vec!["--center", "center,127.0.0.1"];
        for g in gateways {
            args.extend(["--gateway", g]);
        }
        certs(&pki, &args);
        let quic = format!("127.0.0.1:{}", free_udp_port());
        Site { dir, pki, quic }
    }

    fn center(&self) -> Proc {
        let config = self.dir.path().join("center.toml");
        procs::center_config(&config, &self.quic, &self.center_data(), &self.pki);
        Proc::start(&["center", "--config"], &config, "lookout center running")
    }

    fn center_data(&self) -> PathBuf {
        self.dir.path().join("center-data")
    }

    fn gateway_data(&self, id: &str) -> PathBuf {
        self.dir.path().join(format!("{id}-data"))
    }

    /// `lookout run` as gateway `id`, with one camera (`gauge-17`) that alerts
    /// can name: nothing listens at its address.
    fn gateway(&self, id: &str) -> Proc {
        let config = self.dir.path().join(format!("{id}.toml"));
        std::fs::write(
            &config,
            format!(
                "[gateway]\nid = \"{id}\"\nhttp_listen = \"127.0.0.1:0\"\nstorage = \"{}\"\n\n\
                 [[camera]]\nid = \"gauge-17\"\nkind = \"fixed\"\nurl = \"rtsp://127.0.0.1:{}/x\"\n\n\
                 [[upstream]]\nid = \"center\"\naddress = \"{}\"\nserver_name = \"center\"\n\
                 ca = \"{}\"\ncert = \"{}\"\nkey = \"{}\"\n",
                self.gateway_data(id).display(),
                refused_tcp_port(),
                self.quic,
                self.pki.join("ca.pem").display(),
                self.pki.join(format!("{id}.pem")).display(),
                self.pki.join(format!("{id}.key")).display(),
            ),
        )
        .expect("write gateway config");
        Proc::start(&["run", "--config"], &config, "lookout gateway running")
    }
}

/// `POST /api/alerts` on a gateway, which must confirm it (`201`).
fn post(gateway: &Proc, label: &str, severity: &str) {
    let body = format!(
        r#"{{"id":"{ID}","camera":"gauge-17","label":"{label}","source":"gauge-17","severity":"{severity}"}}"#
    );
    let (status, reply) =
        http(&gateway.http, "POST", "/api/alerts", Some(&body), &[]).expect("gateway answers");
    assert_eq!(status, 201, "POST /api/alerts: {reply}");
}

/// The center's records with alert id `ID`, whichever gateway sent them.
fn records(center: &Proc) -> Vec<Value> {
    center.get("/api/alerts?limit=1000")["alerts"]
        .as_array()
        .map(|a| a.iter().filter(|a| a["id"] == ID).cloned().collect())
        .unwrap_or_default()
}

/// The gateway's one upstream as `/api/upstreams` shows it.
fn upstream(gateway: &Proc) -> Value {
    gateway.get("/api/upstreams")["upstreams"][0].clone()
}

/// Waits for `check`, or fails showing both logs.
fn expect(what: &str, center: &Proc, gateway: &Proc, check: impl FnMut() -> bool) {
    assert!(
        wait(WAIT, check),
        "timed out waiting for {what}\n--- center ---\n{}\n--- gateway ---\n{}",
        center.log(),
        gateway.log()
    );
}

#[test]
fn the_same_id_from_two_gateways_is_two_alerts_in_the_ledger() {
    let site = Site::new(&["gw1", "gw2"]);
    let center = site.center();
    let gw1 = site.gateway("gw1");
    post(&gw1, "gauge", "info");
    expect("gw1's alert in the ledger", &center, &gw1, || {
        records(&center).len() == 1
    });

    let gw2 = site.gateway("gw2");
    post(&gw2, "flood", "critical");
    expect("gw2's outbox to empty", &center, &gw2, || {
        upstream(&gw2)["outbox_pending"] == 0 && upstream(&gw2)["alerts_acknowledged"] == 1
    });

    // Acknowledged means stored: both are there, each as its gateway sent it.
    let mut found: Vec<(String, String, String, String)> = records(&center)
        .iter()
        .map(|a| {
            (
                a["gateway"].as_str().unwrap_or_default().to_string(),
                a["severity"].as_str().unwrap_or_default().to_string(),
                a["label"].as_str().unwrap_or_default().to_string(),
                a["alert"]["gateway"]
                    .as_str()
                    .unwrap_or_default()
                    .to_string(),
            )
        })
        .collect();
    found.sort();
    assert_eq!(
        found,
        [
            ("gw1".into(), "info".into(), "gauge".into(), "gw1".into()),
            (
                "gw2".into(),
                "critical".into(),
                "flood".into(),
                "gw2".into()
            ),
        ],
        "{}",
        center.log()
    );
    assert_eq!(upstream(&gw1)["outbox_pending"], 0);
    assert_eq!(
        center.metric("lookout_center_alerts_refused_total{gateway=\"gw2\",reason=\"conflict\"}"),
        0.0
    );

    // Each is reachable by gateway and id; the id alone is ambiguous and says so.
    let gw2_alert = center.get(&format!("/api/gateways/gw2/alerts/{ID}"));
    assert_eq!(gw2_alert["severity"], "critical");
    assert_eq!(gw2_alert["upward_id"], format!("gw2/{ID}"));
    let (status, body) = center
        .request("GET", &format!("/api/alerts/{ID}"), None, &[])
        .expect("center answers");
    assert_eq!(status, 409, "{body}");
    assert_eq!(body["gateways"], serde_json::json!(["gw1", "gw2"]));

    // An operator's acknowledgement goes to the one alert named.
    let (status, body) = center
        .request(
            "POST",
            &format!("/api/gateways/gw2/alerts/{ID}/ack"),
            Some(r#"{"operator":"op-1"}"#),
            &[],
        )
        .expect("center answers");
    assert_eq!(status, 200, "{body}");
    assert_eq!(
        center.get(&format!("/api/gateways/gw2/alerts/{ID}"))["acked_by"],
        "op-1"
    );
    assert_eq!(
        center.get(&format!("/api/gateways/gw1/alerts/{ID}"))["acked_by"],
        Value::Null
    );
}

#[test]
fn an_alert_the_center_refuses_stays_in_the_gateways_outbox() {
    let site = Site::new(&["gw1"]);
    let center = site.center();
    let gw1 = site.gateway("gw1");
    post(&gw1, "gauge", "info");
    expect("the first alert acknowledged", &center, &gw1, || {
        upstream(&gw1)["alerts_acknowledged"] == 1 && upstream(&gw1)["outbox_pending"] == 0
    });
    let first = records(&center).pop().expect("the first alert");

    // The gateway loses its files (reinstalled) and a client reuses the id for
    // another alert: to the gateway it is new, revision 0.
    gw1.kill();
    std::fs::remove_dir_all(site.gateway_data("gw1")).expect("remove gateway data");
    let gw1 = site.gateway("gw1");
    post(&gw1, "flood", "critical");
    expect("the center's answer", &center, &gw1, || {
        let up = upstream(&gw1);
        up["outbox_refused"] == 1 || up["alerts_acknowledged"] != 0
    });
    let up = upstream(&gw1);
    assert_eq!(
        up["alerts_acknowledged"], 0,
        "the center acknowledged an alert it did not store: {up}"
    );
    assert_eq!(up["outbox_pending"], 1, "the refused alert stays: {up}");
    assert_eq!(up["state"], "connected", "{up}");
    let refused = &up["refused"][0];
    assert_eq!(refused["alert_id"], ID, "{up}");
    assert_eq!(refused["revision"], 0, "{up}");
    assert_eq!(refused["code"], "ALERT_ID_CONFLICT", "{up}");
    assert!(
        refused["reason"]
            .as_str()
            .is_some_and(|r| r.contains("different record")),
        "{up}"
    );
    assert_eq!(
        gw1.metric(
            "lookout_relay_alerts_refused_total{upstream=\"center\",code=\"ALERT_ID_CONFLICT\"}"
        ),
        1.0
    );
    assert_eq!(
        gw1.metric("lookout_relay_outbox_refused_entries{upstream=\"center\"}"),
        1.0
    );
    assert!(
        gw1.logged("refused to store this alert"),
        "the gateway logs why:\n{}",
        gw1.log()
    );
    assert_eq!(
        center.metric("lookout_center_alerts_refused_total{gateway=\"gw1\",reason=\"conflict\"}"),
        1.0
    );
    // The center's record is untouched.
    let now = records(&center).pop().expect("the first alert");
    assert_eq!(now["severity"], "info");
    assert_eq!(now["alert"], first["alert"]);
    assert_eq!(now["deliveries"], 1);

    // Never dropped: after a restart it goes out again, and is refused again.
    gw1.kill();
    let gw1 = site.gateway("gw1");
    expect("the second refusal", &center, &gw1, || {
        upstream(&gw1)["refused"][0]["refusals"] == 2
    });
    assert_eq!(upstream(&gw1)["outbox_pending"], 1);
    assert_eq!(records(&center).len(), 1);
}

#[test]
fn a_center_that_cannot_store_acknowledges_nothing() {
    let site = Site::new(&["gw1"]);
    let center = site.center();
    // What a full disk does to the ledger's inserts, from another connection.
    let ledger = site.center_data().join("ledger.sqlite3");
    let sql = rusqlite::Connection::open(&ledger).expect("ledger opens");
    sql.execute_batch(
        "CREATE TRIGGER full BEFORE INSERT ON alerts \
         BEGIN SELECT RAISE(ABORT, 'database or disk is full'); END;",
    )
    .expect("trigger");

    let gw1 = site.gateway("gw1");
    post(&gw1, "flood", "critical");
    let storage = "lookout_center_alerts_refused_total{gateway=\"gw1\",reason=\"storage\"}";
    expect("the center to fail storing", &center, &gw1, || {
        center.metric(storage) >= 1.0
    });
    expect("the gateway to hear why", &center, &gw1, || {
        gw1.logged("database or disk is full")
    });
    let up = upstream(&gw1);
    assert_eq!(up["outbox_pending"], 1, "{up}");
    assert_eq!(up["alerts_acknowledged"], 0, "{up}");
    assert!(records(&center).is_empty());

    // Space again: the next connection delivers it, once.
    sql.execute_batch("DROP TRIGGER full")
        .expect("drop trigger");
    expect("the alert delivered", &center, &gw1, || {
        upstream(&gw1)["outbox_pending"] == 0
    });
    let stored = records(&center);
    assert_eq!(stored.len(), 1);
    assert_eq!(stored[0]["severity"], "critical");
    assert_eq!(stored[0]["gateway"], "gw1");
}
