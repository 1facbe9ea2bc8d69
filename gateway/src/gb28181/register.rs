//! Registration and the device's messages: `REGISTER` with digest authentication
//! (401 challenge, 200, 403; expiry; re-registration from a new address; `Expires: 0`
//! unregisters), keepalive and catalog `MESSAGE`s, and the catalog query lookout sends
//! after each registration.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::Ordering::Relaxed;
use std::time::{Duration, Instant};

use lookout_codecs::sip::Message;
use lookout_core::sync::Locked;

use super::digest::Refusal;
use super::{
    Channel, DEFAULT_EXPIRES_S, Device, MAX_CHANNELS, Origin, SipServer, device_id, from_domain,
    manscdp, rand_u32, sip_date, user_agent, valid_id,
};

impl SipServer {
    pub(super) fn register(self: &Arc<Self>, m: &Message, from: &Origin) -> Option<Message> {
        let Some(id) = device_id(m).filter(|id| valid_id(id)) else {
            return Some(self.refuse(
                m,
                400,
                "Bad Request",
                "bad_id",
                "the From user is not a 20-digit GB/T 28181 id",
            ));
        };
        let checked = self
            .verifier
            .locked()
            .verify(&id, "REGISTER", m.header("Authorization"));
        match checked {
            Ok(()) => {}
            Err(Refusal::Missing) => {
                let challenges = self.verifier.locked().challenge(&id);
                let mut r = self.response(m, 401, "Unauthorized");
                for c in challenges {
                    r = r.with("WWW-Authenticate", c);
                }
                return Some(r);
            }
            Err(Refusal::StaleNonce) => {
                // A device answering an old challenge gets a fresh one (RFC 2617 stale).
                self.metrics.refuse("stale_nonce");
                let challenges = self.verifier.locked().challenge(&id);
                let mut r = self.response(m, 401, "Unauthorized");
                for c in challenges {
                    r = r.with("WWW-Authenticate", format!("{c}, stale=true"));
                }
                return Some(r);
            }
            Err(Refusal::WrongPassword) => {
                return Some(self.refuse(m, 403, "Forbidden", "wrong_password", "wrong password"));
            }
            Err(e) => {
                let why = e.to_string();
                return Some(self.refuse(m, 403, "Forbidden", "bad_credentials", &why));
            }
        }
        let expires = m
            .header("Expires")
            .and_then(|v| v.trim().parse::<u64>().ok())
            .unwrap_or(DEFAULT_EXPIRES_S)
            .min(86_400);
        if expires == 0 {
            if let Some(mut d) = self.devices.get_mut(&id) {
                d.online = false;
            }
            tracing::info!(device = %id, "GB/T 28181 device unregistered");
            self.update_gauges();
            return Some(self.response(m, 200, "OK").with("Expires", "0"));
        }
        if !self.devices.contains_key(&id) && self.devices.len() >= self.settings.max_devices {
            return Some(self.refuse(
                m,
                503,
                "Service Unavailable",
                "too_many_devices",
                "the gateway knows its maximum number of devices",
            ));
        }
        let now = Instant::now();
        let domain = from_domain(m).unwrap_or_else(|| self.settings.domain.clone());
        let mut entry = self.devices.entry(id.clone()).or_insert_with(|| Device {
            address: from.peer,
            path: from.path.clone(),
            domain: domain.clone(),
            user_agent: None,
            registered_unix_ms: 0,
            expires_s: expires,
            expires_at: now,
            last_keepalive: now,
            last_keepalive_unix_ms: None,
            online: false,
            channels: BTreeMap::new(),
            catalog_total: None,
        });
        let d = entry.value_mut();
        if d.address != from.peer && d.registered_unix_ms != 0 {
            tracing::info!(device = %id, from = %d.address, to = %from.peer, "GB/T 28181 device registers from a new address");
        }
        let was_online = d.online;
        d.address = from.peer;
        d.path = from.path.clone();
        d.domain = domain;
        d.user_agent = m
            .header("User-Agent")
            .map(|u| u.chars().take(128).collect());
        d.registered_unix_ms = lookout_core::clock::unix_ms();
        d.expires_s = expires;
        d.expires_at = now + Duration::from_secs(expires);
        d.last_keepalive = now;
        d.online = true;
        drop(entry);
        if !was_online {
            tracing::info!(device = %id, address = %from.peer, expires, "GB/T 28181 device registered");
        }
        self.update_gauges();
        Some(
            self.response(m, 200, "OK")
                .with("Expires", expires.to_string())
                .with("Date", sip_date()),
        )
    }

    pub(super) fn message(self: &Arc<Self>, m: &Message, from: &Origin) -> Option<Message> {
        let Some(id) = device_id(m) else {
            return Some(self.refuse(m, 400, "Bad Request", "bad_id", "no device id in From"));
        };
        let known_online = self.devices.get(&id).is_some_and(|d| d.online);
        let text = manscdp::decode(&m.body);
        let root = match manscdp::parse(&text) {
            Ok(r) => r,
            Err(e) => {
                let why = format!("MANSCDP body: {e}");
                return Some(self.refuse(m, 400, "Bad Request", "malformed", &why));
            }
        };
        let cmd = root.text_of("CmdType").unwrap_or("").to_ascii_lowercase();
        if !known_online {
            // A device must register first (a keepalive from a device lookout does not
            // know, e.g. after a restart, makes it register again).
            return Some(self.refuse(m, 403, "Forbidden", "unregistered", "not registered"));
        }
        match cmd.as_str() {
            "keepalive" => {
                if let Some(mut d) = self.devices.get_mut(&id) {
                    d.last_keepalive = Instant::now();
                    d.last_keepalive_unix_ms = Some(lookout_core::clock::unix_ms());
                    if d.address != from.peer {
                        d.address = from.peer;
                        d.path = from.path.clone();
                    }
                }
            }
            "catalog" if root.name.eq_ignore_ascii_case("Response") => {
                if let Err(why) = self.catalog(&id, &root) {
                    return Some(self.refuse(m, 400, "Bad Request", "too_many_channels", why));
                }
            }
            _ => {}
        }
        Some(self.response(m, 200, "OK"))
    }

    /// Takes a catalog answer's channels into the device.
    fn catalog(&self, device: &str, root: &manscdp::Element) -> Result<(), &'static str> {
        let total = root.text_of("SumNum").and_then(|s| s.parse::<usize>().ok());
        let Some(mut d) = self.devices.get_mut(device) else {
            return Ok(());
        };
        d.catalog_total = total.or(d.catalog_total);
        let Some(list) = root.child("DeviceList") else {
            return Ok(());
        };
        for item in list
            .children
            .iter()
            .filter(|c| c.name.eq_ignore_ascii_case("Item"))
        {
            let Some(id) = item.text_of("DeviceID") else {
                continue;
            };
            if !d.channels.contains_key(id) && d.channels.len() >= MAX_CHANNELS {
                return Err("more channels than the gateway keeps for one device");
            }
            let field = |n: &str| item.text_of(n).map(|s| s.chars().take(128).collect());
            d.channels.insert(
                id.to_string(),
                Channel {
                    id: id.chars().take(32).collect(),
                    name: field("Name"),
                    status: field("Status"),
                    manufacturer: field("Manufacturer"),
                    model: field("Model"),
                    parent: field("ParentID"),
                },
            );
        }
        Ok(())
    }

    /// Asks a device for its catalog.
    pub(super) async fn query_catalog(&self, device: &str) {
        let Some((address, path, domain)) = self
            .devices
            .get(device)
            .map(|d| (d.address, d.path.clone(), d.domain.clone()))
        else {
            return;
        };
        let n = self.cseq.fetch_add(1, Relaxed);
        let body = manscdp::catalog_query(device, n);
        // The Via names an address the device can answer (not 0.0.0.0).
        let via = self.via(&path, self.media_ip(address));
        let mut m = Message::request("MESSAGE", &format!("sip:{device}@{domain}"))
            .with("Via", via)
            .with(
                "From",
                format!(
                    "<sip:{}@{}>;tag={:08x}",
                    self.settings.id,
                    self.settings.domain,
                    rand_u32()
                ),
            )
            .with("To", format!("<sip:{device}@{domain}>"))
            .with("Call-ID", format!("{:08x}{:08x}@lookout", rand_u32(), n))
            .with("CSeq", format!("{n} MESSAGE"))
            .with("Max-Forwards", "70")
            .with("Content-Type", "Application/MANSCDP+xml")
            .with("User-Agent", user_agent());
        m.body = bytes::Bytes::from(body);
        self.send(address, &path, m.encode()).await;
    }
}
