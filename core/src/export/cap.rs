//! OASIS CAP 1.2 (also ITU-T X.1303; China's GB/T 35965.1-2018 early-warning
//! exchange is modelled on it): each alert event as a CAP `alert`, and an
//! Atom feed of the latest ones. docs/EXPORTS.md maps every field, and how
//! it maps to GB/T 35965.1.
//!
//! - one alert's revisions are one CAP message each: the first (revision 0)
//!   is `msgType` Alert; later ones are Update, with `references` to the first
//!   (sender, identifier and sent, as CAP wants them); a cleared alert is an
//!   Update with `responseType` AllClear and `urgency` Past;
//! - `identifier` is `lookout.ORIGIN.GATEWAY.ID.REVISION`, `sender`
//!   `lookout@ORIGIN`, `sent` the event's own time (raised, updated or
//!   cleared), so the same event always renders the same document;
//! - `category` Fire for smoke and fire labels, Met for flood (CAP's Met
//!   includes flood), Env for anything else; `severity` from lookout's
//!   (critical Extreme, high Severe, warning Moderate, info Minor);
//!   `certainty` Likely for a model's detection, Observed for an alert posted
//!   from outside the video path (a gauge, an operator);
//! - `area` is a circle of `cap_radius_km` around the camera where its
//!   location is configured (`areaDesc` always: the camera's name and group);
//! - `resource`s link to the snapshot where the side's `public_url` is set.

/// Appends a formatted line to a `String` (which cannot fail).
macro_rules! w {
    ($x:expr, $($arg:tt)*) => {{
        $x.push_str(&format!($($arg)*));
        $x.push('\n');
    }};
}

use serde_json::Value;

use super::ExportEvent;
use super::run::Origin;
use crate::alert::machine::AlertEventKind;

/// XML text with `& < > " '` escaped.
fn esc(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&apos;"),
            // XML 1.0 cannot carry most control characters at all.
            c if (c as u32) < 0x20 && !matches!(c, '\t' | '\n' | '\r') => out.push(' '),
            c => out.push(c),
        }
    }
    out
}

/// A CAP identifier or sender part: no spaces, commas, `<` or `&` (CAP 1.2
/// §3.2.1), nor anything else outside printable ASCII.
fn token(s: &str) -> String {
    s.chars()
        .map(|c| {
            if c.is_ascii_graphic() && !matches!(c, ',' | '<' | '&' | '>' | '"' | '\'') {
                c
            } else {
                '_'
            }
        })
        .collect()
}

/// CAP's dateTime: `YYYY-MM-DDThh:mm:ss+00:00`, whole seconds, UTC.
pub fn cap_time(unix_ns: u64) -> String {
    let secs = (unix_ns / 1_000_000_000) as i64;
    match time::OffsetDateTime::from_unix_timestamp(secs) {
        Ok(t) => format!(
            "{:04}-{:02}-{:02}T{:02}:{:02}:{:02}+00:00",
            t.year(),
            u8::from(t.month()),
            t.day(),
            t.hour(),
            t.minute(),
            t.second()
        ),
        Err(_) => "1970-01-01T00:00:00+00:00".to_string(),
    }
}

fn ns(v: &Value, key: &str) -> Option<u64> {
    v.get(key).and_then(Value::as_u64)
}

/// The sender every message of this side carries.
pub fn sender(origin: &Origin) -> String {
    format!("lookout@{}", token(&origin.id))
}

/// The identifier of `revision` of an alert.
pub fn identifier(origin: &Origin, gateway: &str, alert_id: &str, revision: u32) -> String {
    format!(
        "lookout.{}.{}.{}.{revision}",
        token(&origin.id),
        token(gateway),
        token(alert_id)
    )
}

/// When the event happened: cleared, updated or raised time, Unix ns.
fn event_time(e: &ExportEvent) -> u64 {
    let a = &e.alert;
    let t = match e.kind() {
        AlertEventKind::Cleared => ns(a, "cleared_unix_ns"),
        AlertEventKind::Updated => ns(a, "updated_unix_ns"),
        AlertEventKind::Raised | AlertEventKind::Snapshot => None,
    };
    t.or_else(|| ns(a, "raised_unix_ns"))
        .unwrap_or(e.stored_unix_ms.saturating_mul(1_000_000))
}

fn category(label: &str) -> &'static str {
    let l = label.to_ascii_lowercase();
    if ["smoke", "fire", "flame", "hotspot", "wildfire"]
        .iter()
        .any(|k| l.contains(k))
    {
        "Fire"
    } else if ["flood", "water", "inundation"]
        .iter()
        .any(|k| l.contains(k))
    {
        "Met"
    } else {
        "Env"
    }
}

fn severity(s: Option<&str>) -> &'static str {
    match s {
        Some("critical") => "Extreme",
        Some("high") => "Severe",
        Some("warning") => "Moderate",
        Some("info") => "Minor",
        _ => "Unknown",
    }
}

/// The CAP 1.2 document of one event.
pub fn alert_xml(e: &ExportEvent, origin: &Origin, radius_km: f64) -> String {
    let a = &e.alert;
    let kind = e.kind();
    let label = e.field("label").unwrap_or("unknown");
    let camera = a.get("camera").cloned().unwrap_or(Value::Null);
    let camera_id = e.camera();
    let camera_name = camera
        .get("name")
        .and_then(Value::as_str)
        .unwrap_or(camera_id);
    let group = camera.get("group").and_then(Value::as_str);
    let external = e.field("detector") == Some(crate::alert::hub::EXTERNAL_DETECTOR);
    let sender = sender(origin);
    let mut x = String::with_capacity(2048);
    x.push_str("<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n");
    x.push_str("<alert xmlns=\"urn:oasis:names:tc:emergency:cap:1.2\">\n");
    w!(
        x,
        "  <identifier>{}</identifier>",
        esc(&identifier(origin, &e.gateway, &e.alert_id, e.revision))
    );
    w!(x, "  <sender>{}</sender>", esc(&sender));
    w!(x, "  <sent>{}</sent>", cap_time(event_time(e)));
    x.push_str("  <status>Actual</status>\n");
    let msg_type = if kind == AlertEventKind::Raised {
        "Alert"
    } else {
        "Update"
    };
    w!(x, "  <msgType>{msg_type}</msgType>");
    x.push_str("  <scope>Public</scope>\n");
    if kind != AlertEventKind::Raised {
        let first_sent = ns(a, "raised_unix_ns").unwrap_or(0);
        w!(
            x,
            "  <references>{},{},{}</references>",
            esc(&sender),
            esc(&identifier(origin, &e.gateway, &e.alert_id, 0)),
            cap_time(first_sent)
        );
    }
    x.push_str("  <info>\n    <language>en-US</language>\n");
    w!(x, "    <category>{}</category>", category(label));
    let mut chars = label.chars();
    let event_name: String = match chars.next() {
        Some(first) => first.to_uppercase().chain(chars).collect(),
        None => "Unknown".to_string(),
    };
    w!(x, "    <event>{}</event>", esc(&event_name));
    let response = if kind == AlertEventKind::Cleared {
        "AllClear"
    } else {
        "Monitor"
    };
    w!(x, "    <responseType>{response}</responseType>");
    let urgency = if kind == AlertEventKind::Cleared {
        "Past"
    } else {
        "Immediate"
    };
    w!(x, "    <urgency>{urgency}</urgency>");
    w!(
        x,
        "    <severity>{}</severity>",
        severity(e.field("severity"))
    );
    let certainty = if external { "Observed" } else { "Likely" };
    w!(x, "    <certainty>{certainty}</certainty>");
    w!(
        x,
        "    <senderName>{}</senderName>",
        esc(&format!("lookout {}", origin.id))
    );
    let headline = match kind {
        AlertEventKind::Cleared => format!("{event_name} cleared at {camera_name}"),
        _ => format!("{event_name} at {camera_name}"),
    };
    w!(x, "    <headline>{}</headline>", esc(&headline));
    let score = a.get("peak_score").and_then(Value::as_f64).unwrap_or(0.0);
    let description = if external {
        format!(
            "{event_name} reported to gateway {} for {camera_name}.",
            e.gateway
        )
    } else {
        format!(
            "{event_name} detected by model {} on camera {camera_name} ({camera_id}) of gateway {}, peak score {score:.2}.",
            a.get("model")
                .and_then(|m| m.get("name"))
                .and_then(Value::as_str)
                .unwrap_or("unknown"),
            e.gateway
        )
    };
    w!(x, "    <description>{}</description>", esc(&description));
    for (name, value) in [
        ("lookout:gateway", e.gateway.clone()),
        ("lookout:alert", e.alert_id.clone()),
        ("lookout:revision", e.revision.to_string()),
        ("lookout:camera", camera_id.to_string()),
        ("lookout:score", format!("{score:.3}")),
    ] {
        w!(
            x,
            "    <parameter>\n      <valueName>{}</valueName>\n      <value>{}</value>\n    </parameter>",
            esc(name),
            esc(&value)
        );
    }
    if let Some(base) = &origin.public_url
        && a.get("snapshot").is_some()
    {
        let uri = format!(
            "{}/api/gateways/{}/alerts/{}/snapshot.jpg",
            base.trim_end_matches('/'),
            percent(&e.gateway),
            percent(&e.alert_id)
        );
        w!(
            x,
            "    <resource>\n      <resourceDesc>Snapshot of the frame that raised the alert</resourceDesc>\n      <mimeType>image/jpeg</mimeType>\n      <uri>{}</uri>\n    </resource>",
            esc(&uri)
        );
    }
    x.push_str("    <area>\n");
    let area = match group {
        Some(g) => format!("{camera_name}, {g}"),
        None => camera_name.to_string(),
    };
    w!(x, "      <areaDesc>{}</areaDesc>", esc(&area));
    let location = camera.get("location");
    let lat = location.and_then(|l| l.get("lat")).and_then(Value::as_f64);
    let lon = location.and_then(|l| l.get("lon")).and_then(Value::as_f64);
    if let (Some(lat), Some(lon)) = (lat, lon)
        && (-90.0..=90.0).contains(&lat)
        && (-180.0..=180.0).contains(&lon)
    {
        w!(x, "      <circle>{lat:.5},{lon:.5} {radius_km}</circle>");
    }
    x.push_str("    </area>\n  </info>\n</alert>\n");
    x
}

/// A path segment, percent-encoded where it is not unreserved.
fn percent(s: &str) -> String {
    let mut out = String::new();
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~') {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// One entry of the Atom feed: the latest revision of one alert.
pub struct FeedEntry {
    pub event: ExportEvent,
}

/// An Atom feed (RFC 4287) of CAP alerts, newest first: each entry links to
/// its `cap.xml` (`rel="alternate"`, `application/cap+xml`), as public
/// alerting feeds do. `self_url` is the feed's own address.
pub fn atom_feed(entries: &[FeedEntry], origin: &Origin, self_url: &str) -> String {
    let updated = entries
        .iter()
        .map(|en| event_time(&en.event))
        .max()
        .unwrap_or(0);
    let mut x = String::with_capacity(1024 + entries.len() * 512);
    x.push_str("<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n");
    x.push_str("<feed xmlns=\"http://www.w3.org/2005/Atom\">\n");
    w!(x, "  <id>urn:lookout:{}:cap</id>", esc(&token(&origin.id)));
    w!(
        x,
        "  <title>lookout {} alerts (CAP 1.2)</title>",
        esc(&origin.id)
    );
    w!(x, "  <updated>{}</updated>", cap_time(updated));
    w!(
        x,
        "  <author><name>{}</name></author>",
        esc(&sender(origin))
    );
    w!(x, "  <link rel=\"self\" href=\"{}\"/>", esc(self_url));
    let base = origin
        .public_url
        .as_deref()
        .unwrap_or("")
        .trim_end_matches('/');
    for en in entries {
        let e = &en.event;
        let label = e.field("label").unwrap_or("unknown");
        w!(
            x,
            "  <entry>\n    <id>urn:lookout:{}</id>\n    <title>{}</title>\n    <updated>{}</updated>\n    <summary>{} ({}, revision {})</summary>\n    <link rel=\"alternate\" type=\"application/cap+xml\" href=\"{}/api/gateways/{}/alerts/{}/cap.xml\"/>\n  </entry>",
            esc(&identifier(origin, &e.gateway, &e.alert_id, e.revision)),
            esc(&format!("{label} at {}", e.camera())),
            cap_time(event_time(e)),
            esc(e.kind().as_str()),
            esc(e.field("severity").unwrap_or("unknown")),
            e.revision,
            esc(base),
            percent(&e.gateway),
            percent(&e.alert_id),
        );
    }
    x.push_str("</feed>\n");
    x
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn origin() -> Origin {
        Origin {
            id: "county-center".into(),
            public_url: Some("https://center.example".into()),
        }
    }

    fn event(revision: u32, state: &str, label: &str) -> ExportEvent {
        ExportEvent {
            seq: 7,
            gateway: "gw-01".into(),
            alert_id: "0190a1b2-c3d4".into(),
            revision,
            alert: json!({
                "id": "0190a1b2-c3d4",
                "state": state,
                "label": label,
                "severity": "critical",
                "detector": "smoke_flood",
                "model": {"name": "smoke_flood"},
                "peak_score": 0.91,
                "camera": {"id": "tower-01", "name": "North <ridge> & tower", "group": "township-01",
                           "location": {"lat": 29.31, "lon": 110.42}},
                "raised_unix_ns": 1_765_000_000_000_000_000u64,
                "updated_unix_ns": 1_765_000_005_000_000_000u64,
                "cleared_unix_ns": 1_765_000_060_000_000_000u64,
                "snapshot": "/api/alerts/x/snapshot.jpg",
            }),
            stored_unix_ms: 1_765_000_000_100,
        }
    }

    /// Parses with an independent CAP implementation (the `oasiscap` crate),
    /// which checks the CAP 1.2 schema's types and enumerations.
    fn parse(xml: &str) -> oasiscap::v1dot2::Alert {
        let parsed: oasiscap::Alert = xml
            .parse()
            .unwrap_or_else(|e| panic!("not CAP 1.2: {e}\n{xml}"));
        match parsed {
            oasiscap::Alert::V1dot2(a) => a,
            other => panic!("not CAP 1.2: {other:?}"),
        }
    }

    #[test]
    fn each_event_is_a_cap_1_2_alert_an_independent_parser_reads() {
        for (rev, state, label) in [
            (0, "active", "smoke"),
            (1, "active", "smoke"),
            (2, "cleared", "flood"),
        ] {
            let xml = alert_xml(&event(rev, state, label), &origin(), 5.0);
            let a = parse(&xml);
            let text = format!("{a:?}");
            assert!(
                text.contains("lookout.county-center.gw-01.0190a1b2-c3d4"),
                "{text}"
            );
            let want_type = if rev == 0 { "Alert" } else { "Update" };
            assert!(
                xml.contains(&format!("<msgType>{want_type}</msgType>")),
                "{xml}"
            );
            if rev > 0 {
                assert!(
                    xml.contains("<references>lookout@county-center,lookout.county-center.gw-01.0190a1b2-c3d4.0,2025-12-06T05:46:40+00:00</references>"),
                    "{xml}"
                );
            }
            assert!(
                xml.contains("<circle>29.31000,110.42000 5</circle>"),
                "{xml}"
            );
            assert!(xml.contains("North &lt;ridge&gt; &amp; tower"), "{xml}");
        }
        let cleared = alert_xml(&event(2, "cleared", "flood"), &origin(), 5.0);
        assert!(cleared.contains("<category>Met</category>"));
        assert!(cleared.contains("<responseType>AllClear</responseType>"));
        assert!(cleared.contains("<urgency>Past</urgency>"));
        assert!(cleared.contains("<sent>2025-12-06T05:47:40+00:00</sent>"));
    }

    #[test]
    fn the_atom_feed_is_well_formed_xml() {
        let entries = vec![FeedEntry {
            event: event(2, "active", "smoke"),
        }];
        let feed = atom_feed(&entries, &origin(), "https://center.example/api/cap.atom");
        let mut reader = quick_xml::Reader::from_str(&feed);
        let mut depth = 0i32;
        loop {
            match reader.read_event() {
                Ok(quick_xml::events::Event::Start(_)) => depth += 1,
                Ok(quick_xml::events::Event::End(_)) => depth -= 1,
                Ok(quick_xml::events::Event::Eof) => break,
                Ok(_) => {}
                Err(e) => panic!("{e}\n{feed}"),
            }
        }
        assert_eq!(depth, 0);
        assert!(feed.contains("/api/gateways/gw-01/alerts/0190a1b2-c3d4/cap.xml"));
    }
}
