//! Server-side sign-in sessions for a browser: the center's video wall
//! (the center's `http.rs` signs in and out, `auth.rs` checks each request).
//!
//! A browser that signs in with the API token gets a cookie holding a
//! random session id, never the token: a cookie can leak (a shared
//! machine's profile, a proxy's log, a backup) and must then be worth
//! little. The id comes from the operating system's CSPRNG (`ring`'s
//! `SystemRandom`, already in the tree for TLS), 256 bits, and is mapped
//! here to the rights the token gives. A session ends when it has not been
//! used for the idle limit, at its absolute limit however busy, or when
//! the operator signs out; the server forgets it then, so a copied cookie
//! stops working too. Sessions live in memory: a restarted center asks
//! every wall to sign in again, which is the safe way round.
//!
//! Time is the caller's (`Instant`s passed in), so expiry is tested without
//! waiting.

use crate::sync::Locked;
use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use axum::http::{HeaderMap, header};
use ring::rand::SecureRandom;

/// The cookie the wall's browser carries.
pub const COOKIE: &str = "lookout_session";

/// Most sessions kept at once: signing in needs the token, so only an
/// operator (or a script holding the token) creates them; the cap keeps a
/// script signing in in a loop from growing the center's memory. The
/// oldest session goes first.
const MAX_SESSIONS: usize = 1024;

/// How long a session lives, and how its cookie is marked.
#[derive(Debug, Clone, Copy)]
pub struct SessionPolicy {
    /// Ends after this long without a request.
    pub idle: Duration,
    /// Ends this long after sign-in, used or not.
    pub max_age: Duration,
    /// The wall is served over TLS (a reverse proxy in front): the cookie
    /// is marked `Secure`, so the browser never sends it in clear.
    pub secure: bool,
}

struct Session {
    started: Instant,
    last_used: Instant,
}

/// The sessions one center holds.
pub struct Sessions {
    policy: SessionPolicy,
    rng: ring::rand::SystemRandom,
    live: Mutex<HashMap<String, Session>>,
}

/// The operating system's random source failed; no session is made
/// rather than a guessable one.
#[derive(Debug, thiserror::Error)]
#[error("the system's random number generator failed; no session id can be made")]
pub struct NoRandom;

impl Sessions {
    pub fn new(policy: SessionPolicy) -> Sessions {
        Sessions {
            policy,
            rng: ring::rand::SystemRandom::new(),
            live: Mutex::new(HashMap::new()),
        }
    }

    pub fn policy(&self) -> SessionPolicy {
        self.policy
    }

    /// A new session (after a sign-in with the token): its id.
    pub fn start(&self, now: Instant) -> Result<String, NoRandom> {
        let mut bytes = [0u8; 32];
        self.rng.fill(&mut bytes).map_err(|_| NoRandom)?;
        let id: String = bytes.iter().map(|b| format!("{b:02x}")).collect();
        let mut live = self.lock();
        live.retain(|_, s| self.alive(s, now));
        while live.len() >= MAX_SESSIONS {
            let oldest = live
                .iter()
                .min_by_key(|(_, s)| s.started)
                .map(|(k, _)| k.clone());
            match oldest {
                Some(k) => live.remove(&k),
                None => break,
            };
        }
        live.insert(
            id.clone(),
            Session {
                started: now,
                last_used: now,
            },
        );
        Ok(id)
    }

    /// Whether `id` is a live session; using it restarts its idle time. An
    /// expired one is forgotten.
    pub fn check(&self, id: &str, now: Instant) -> bool {
        let mut live = self.lock();
        let Some(s) = live.get_mut(id) else {
            return false;
        };
        if self.alive(s, now) {
            s.last_used = now;
            true
        } else {
            live.remove(id);
            false
        }
    }

    /// Signs out: the session is forgotten. Whether there was one.
    pub fn end(&self, id: &str) -> bool {
        self.lock().remove(id).is_some()
    }

    /// Sessions held now (expired ones included until they are next seen).
    pub fn len(&self) -> usize {
        self.lock().len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    fn alive(&self, s: &Session, now: Instant) -> bool {
        now.saturating_duration_since(s.last_used) < self.policy.idle
            && now.saturating_duration_since(s.started) < self.policy.max_age
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, Session>> {
        // A panic while holding the map leaves it consistent (every change
        // is one insert or remove), so a poisoned lock is still usable.
        self.live.locked()
    }

    /// `Set-Cookie` for a new session: HttpOnly (no script reads it),
    /// SameSite=Strict (no other site's page sends it), the whole site,
    /// gone from the browser at the absolute limit, `Secure` behind TLS.
    pub fn cookie(&self, id: &str) -> String {
        format!(
            "{COOKIE}={id}; HttpOnly; SameSite=Strict; Path=/; Max-Age={}{}",
            self.policy.max_age.as_secs(),
            if self.policy.secure { "; Secure" } else { "" }
        )
    }

    /// `Set-Cookie` that removes the cookie (signing out).
    pub fn clearing_cookie(&self) -> String {
        format!(
            "{COOKIE}=; HttpOnly; SameSite=Strict; Path=/; Max-Age=0{}",
            if self.policy.secure { "; Secure" } else { "" }
        )
    }
}

/// The session id a request's cookies carry, if any.
pub fn session_id(headers: &HeaderMap) -> Option<&str> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|c| c.trim().split_once('='))
        .find(|(k, _)| *k == COOKIE)
        .map(|(_, v)| v.trim())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sessions(secure: bool) -> Sessions {
        Sessions::new(SessionPolicy {
            idle: Duration::from_secs(60),
            max_age: Duration::from_secs(600),
            secure,
        })
    }

    #[test]
    fn ids_are_random_and_long() {
        let s = sessions(false);
        let now = Instant::now();
        let a = s.start(now).expect("id");
        let b = s.start(now).expect("id");
        assert_ne!(a, b);
        assert_eq!(a.len(), 64);
        assert!(a.bytes().all(|c| c.is_ascii_hexdigit()));
        assert!(s.check(&a, now) && s.check(&b, now));
        assert!(!s.check("0123", now));
    }

    #[test]
    fn idle_and_absolute_expiry_and_sign_out() {
        let s = sessions(false);
        let t0 = Instant::now();
        let id = s.start(t0).expect("id");
        // Used every 50 s: alive past the idle limit…
        let mut t = t0;
        for _ in 0..11 {
            t += Duration::from_secs(50);
            assert!(s.check(&id, t), "{:?}", t - t0);
        }
        // …but not past the absolute one.
        t += Duration::from_secs(50);
        assert!(!s.check(&id, t), "600 s after sign-in");
        assert!(s.is_empty(), "an expired session is forgotten");

        let id = s.start(t).expect("id");
        assert!(!s.check(&id, t + Duration::from_secs(61)), "idle 61 s");

        let id = s.start(t).expect("id");
        assert!(s.end(&id));
        assert!(!s.check(&id, t), "signed out");
        assert!(!s.end(&id));
    }

    #[test]
    fn cookies_carry_the_id_and_the_flags() {
        let s = sessions(false);
        let c = s.cookie("abc");
        assert!(c.starts_with("lookout_session=abc;"), "{c}");
        for flag in ["HttpOnly", "SameSite=Strict", "Path=/", "Max-Age=600"] {
            assert!(c.contains(flag), "{c}");
        }
        assert!(!c.contains("Secure"));
        assert!(sessions(true).cookie("abc").ends_with("; Secure"));
        assert!(s.clearing_cookie().contains("Max-Age=0"));

        let mut h = HeaderMap::new();
        h.append(
            header::COOKIE,
            "a=b; lookout_session=abc".parse().expect("value"),
        );
        assert_eq!(session_id(&h), Some("abc"));
        assert_eq!(session_id(&HeaderMap::new()), None);
    }

    #[test]
    fn the_oldest_session_makes_room() {
        let s = sessions(false);
        let t0 = Instant::now();
        let first = s.start(t0).expect("id");
        for i in 1..=MAX_SESSIONS {
            s.start(t0 + Duration::from_millis(i as u64)).expect("id");
        }
        assert_eq!(s.len(), MAX_SESSIONS);
        assert!(!s.check(&first, t0 + Duration::from_secs(2)));
    }
}
