//! SIP digest authentication (RFC 2617 / RFC 3261 §22.4) as GB/T 28181 uses it for
//! `REGISTER`: the platform answers an unauthenticated request with `401` and a
//! `WWW-Authenticate: Digest realm, nonce, algorithm=MD5` challenge; the device sends
//! the request again with `Authorization: Digest … response`, the MD5 of what only a
//! holder of the password can compute. Nonces are random (ring's system RNG), single
//! use and short-lived, and at most [`MAX_NONCES`] are outstanding, so a flood of
//! unauthenticated requests cannot grow memory. Neither the password nor a nonce is
//! ever logged.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use ring::rand::SecureRandom;

pub use lookout_codecs::sip::{
    DigestAlgorithm, digest_response as response, digest_response_with, md5_hex,
};

/// Challenges outstanding at most; the oldest is forgotten first.
pub const MAX_NONCES: usize = 4096;

/// How long a challenge may be answered.
pub const NONCE_LIFETIME: Duration = Duration::from_secs(120);

/// Why credentials were not accepted.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Refusal {
    /// No `Authorization` header: challenge the request.
    #[error("no credentials")]
    Missing,
    /// Not a `Digest` header, or a parameter missing.
    #[error("credentials not in Digest form ({0})")]
    Malformed(&'static str),
    /// A nonce this platform did not give, gave to someone else, or that expired.
    #[error("unknown or expired nonce")]
    StaleNonce,
    /// Another realm, or a username that is not the device's id.
    #[error("{0}")]
    Identity(&'static str),
    /// An algorithm other than MD5.
    #[error("algorithm {0:?} is not one this platform accepts")]
    Algorithm(String),
    /// The response does not match: the wrong password.
    #[error("wrong password")]
    WrongPassword,
}

/// The platform's side: issues challenges and checks answers.
pub struct Verifier {
    realm: String,
    password: String,
    /// Offered in this order, one challenge each; accepted alone.
    algorithms: Vec<DigestAlgorithm>,
    rng: ring::rand::SystemRandom,
    /// Nonce → when it was issued, and to which device.
    nonces: HashMap<String, (Instant, String)>,
}

impl Verifier {
    /// Checks credentials against `password` in `realm` (the platform's domain).
    /// A verifier offering and accepting `algorithms` (MD5 alone when empty).
    pub fn new(realm: &str, password: &str, algorithms: &[DigestAlgorithm]) -> Verifier {
        Verifier {
            realm: realm.to_string(),
            password: password.to_string(),
            algorithms: if algorithms.is_empty() {
                vec![DigestAlgorithm::Md5]
            } else {
                algorithms.to_vec()
            },
            rng: ring::rand::SystemRandom::new(),
            nonces: HashMap::new(),
        }
    }

    /// A `WWW-Authenticate` value challenging `device`.
    /// One `WWW-Authenticate` value per algorithm, in the order of preference (RFC
    /// 8760: a device answers the first it supports), all with one fresh nonce.
    pub fn challenge(&mut self, device: &str) -> Vec<String> {
        let now = Instant::now();
        self.nonces
            .retain(|_, (at, _)| now.duration_since(*at) < NONCE_LIFETIME);
        if self.nonces.len() >= MAX_NONCES
            && let Some(oldest) = self
                .nonces
                .iter()
                .min_by_key(|(_, (at, _))| *at)
                .map(|(n, _)| n.clone())
        {
            self.nonces.remove(&oldest);
        }
        let mut raw = [0u8; 16];
        // The system RNG does not fail on Linux; if it did, a nonce of the clock's
        // nanoseconds would still be unique and is only good for one answer.
        if self.rng.fill(&mut raw).is_err() {
            let t = std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(0, |d| d.as_nanos());
            raw = t.to_le_bytes();
        }
        let nonce: String = raw.iter().map(|b| format!("{b:02x}")).collect();
        self.nonces.insert(nonce.clone(), (now, device.to_string()));
        self.algorithms
            .iter()
            .map(|a| {
                format!(
                    "Digest realm=\"{}\", nonce=\"{nonce}\", algorithm={}",
                    self.realm,
                    a.name()
                )
            })
            .collect()
    }

    /// Checks `authorization` (the header's value) for `method` from `device`; a
    /// nonce is used up by a correct answer.
    pub fn verify(
        &mut self,
        device: &str,
        method: &str,
        authorization: Option<&str>,
    ) -> Result<(), Refusal> {
        let value = authorization.ok_or(Refusal::Missing)?;
        let params =
            lookout_codecs::sip::digest_params(value).ok_or(Refusal::Malformed("not Digest"))?;
        let get = |k: &str| params.iter().find(|(n, _)| n == k).map(|(_, v)| v.as_str());
        let username = get("username").ok_or(Refusal::Malformed("username"))?;
        let realm = get("realm").ok_or(Refusal::Malformed("realm"))?;
        let nonce = get("nonce").ok_or(Refusal::Malformed("nonce"))?;
        let uri = get("uri").ok_or(Refusal::Malformed("uri"))?;
        let answer = get("response").ok_or(Refusal::Malformed("response"))?;
        // No `algorithm`: MD5 (RFC 2617).
        let algorithm = match get("algorithm") {
            None => DigestAlgorithm::Md5,
            Some(name) => {
                DigestAlgorithm::parse(name).ok_or_else(|| Refusal::Algorithm(name.to_string()))?
            }
        };
        if !self.algorithms.contains(&algorithm) {
            return Err(Refusal::Algorithm(algorithm.name().to_string()));
        }
        if realm != self.realm {
            return Err(Refusal::Identity("realm is not this platform's domain"));
        }
        if username != device {
            return Err(Refusal::Identity("username is not the device id"));
        }
        match self.nonces.get(nonce) {
            Some((at, to)) if to == device && at.elapsed() < NONCE_LIFETIME => {}
            _ => return Err(Refusal::StaleNonce),
        }
        let qop = match get("qop") {
            Some(q) => Some((
                get("nc").ok_or(Refusal::Malformed("nc"))?,
                get("cnonce").ok_or(Refusal::Malformed("cnonce"))?,
                q,
            )),
            None => None,
        };
        let expected = digest_response_with(
            algorithm,
            username,
            realm,
            &self.password,
            method,
            uri,
            nonce,
            qop,
        );
        // Both are 32 hex digits; the comparison does not stop at the first difference.
        let same = expected.len() == answer.len()
            && expected
                .bytes()
                .zip(answer.to_ascii_lowercase().bytes())
                .fold(0u8, |acc, (a, b)| acc | (a ^ b))
                == 0;
        if !same {
            return Err(Refusal::WrongPassword);
        }
        self.nonces.remove(nonce);
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rfc_2617_example() {
        // RFC 2617 §3.5, with qop=auth.
        let r = response(
            "Mufasa",
            "testrealm@host.com",
            "Circle Of Life",
            "GET",
            "/dir/index.html",
            "dcd98b7102dd2f0e8b11d0f600bfb0c093",
            Some(("00000001", "0a4f113b", "auth")),
        );
        assert_eq!(r, "6629fae49393a05397450978507c4ef1");
    }

    fn answer(v: &mut Verifier, device: &str, password: &str) -> String {
        answer_with(v, device, password, DigestAlgorithm::Md5)
    }

    /// Answers the challenge of `algorithm` among those offered.
    fn answer_with(
        v: &mut Verifier,
        device: &str,
        password: &str,
        algorithm: DigestAlgorithm,
    ) -> String {
        let challenges = v.challenge(device);
        let ch = challenges
            .iter()
            .find(|c| c.ends_with(&format!("algorithm={}", algorithm.name())))
            .cloned()
            .unwrap_or_else(|| challenges[0].clone());
        let p = lookout_codecs::sip::digest_params(&ch).expect("challenge");
        let nonce = &p.iter().find(|(n, _)| n == "nonce").expect("nonce").1;
        let uri = "sip:34020000002000000001@3402000000";
        let r = digest_response_with(
            algorithm,
            device,
            "3402000000",
            password,
            "REGISTER",
            uri,
            nonce,
            None,
        );
        format!(
            "Digest username=\"{device}\", realm=\"3402000000\", nonce=\"{nonce}\", uri=\"{uri}\", response=\"{r}\", algorithm={}",
            algorithm.name()
        )
    }

    #[test]
    fn sha_256_when_offered_md5_only_when_allowed() {
        let dev = "34020000001320000001";
        let both = [DigestAlgorithm::Sha256, DigestAlgorithm::Md5];
        let mut v = Verifier::new("3402000000", "12345678", &both);
        let offered = v.challenge(dev);
        assert_eq!(offered.len(), 2);
        assert!(offered[0].ends_with("algorithm=SHA-256"), "{offered:?}");
        assert!(offered[1].ends_with("algorithm=MD5"), "{offered:?}");
        for alg in both {
            let good = answer_with(&mut v, dev, "12345678", alg);
            assert_eq!(v.verify(dev, "REGISTER", Some(&good)), Ok(()), "{alg:?}");
            let bad = answer_with(&mut v, dev, "wrong", alg);
            assert_eq!(
                v.verify(dev, "REGISTER", Some(&bad)),
                Err(Refusal::WrongPassword)
            );
        }
        // A platform that requires SHA-256 refuses MD5, also an MD5 answer to a
        // nonce it issued.
        let mut strict = Verifier::new("3402000000", "12345678", &[DigestAlgorithm::Sha256]);
        assert_eq!(strict.challenge(dev).len(), 1);
        let md5 = answer_with(&mut strict, dev, "12345678", DigestAlgorithm::Md5);
        assert_eq!(
            strict.verify(dev, "REGISTER", Some(&md5)),
            Err(Refusal::Algorithm("MD5".into()))
        );
        let no_algorithm = md5.replace(", algorithm=MD5", "");
        assert_eq!(
            strict.verify(dev, "REGISTER", Some(&no_algorithm)),
            Err(Refusal::Algorithm("MD5".into()))
        );
    }

    #[test]
    fn the_right_password_once_the_wrong_one_never() {
        let dev = "34020000001320000001";
        let mut v = Verifier::new("3402000000", "12345678", &[]);
        assert_eq!(v.verify(dev, "REGISTER", None), Err(Refusal::Missing));
        let good = answer(&mut v, dev, "12345678");
        assert_eq!(v.verify(dev, "REGISTER", Some(&good)), Ok(()));
        // The nonce is used up.
        assert_eq!(
            v.verify(dev, "REGISTER", Some(&good)),
            Err(Refusal::StaleNonce)
        );
        let bad = answer(&mut v, dev, "wrong");
        assert_eq!(
            v.verify(dev, "REGISTER", Some(&bad)),
            Err(Refusal::WrongPassword)
        );
        // Another device cannot use this device's challenge.
        let other = answer(&mut v, dev, "12345678").replace(dev, "34020000001320000002");
        assert!(
            v.verify("34020000001320000002", "REGISTER", Some(&other))
                .is_err()
        );
    }

    #[test]
    fn outstanding_challenges_are_bounded() {
        let mut v = Verifier::new("3402000000", "pw", &[]);
        for i in 0..MAX_NONCES + 100 {
            v.challenge(&format!("dev{i}"));
        }
        assert!(v.nonces.len() <= MAX_NONCES);
    }
}
