//! Which `Host` header values an HTTP API answers (the gateway's and the
//! center's, through `auth.rs`), and the check of the `allowed_hosts` keys
//! that extend them. Only the standard library, like `token.rs`, so the
//! config fuzz target can compile it.
//!
//! This is the defence against DNS rebinding: a page from
//! `rebind.evil.example`, whose name the attacker then points at
//! 127.0.0.1, is same-origin with the API in the browser's eyes, so the
//! `Origin` check alone lets it write and read. Its requests still carry
//! `Host: rebind.evil.example`, which no operator configured; refusing
//! every request whose host is not one we expect closes the hole. An IP
//! literal cannot be rebound (a browser sends `Host: 10.0.0.5` only to a
//! page served by 10.0.0.5 itself), which is why loopback addresses, the
//! listen address and, for an API listening on every address, any IP
//! literal are accepted without configuration, and names need
//! `allowed_hosts`.

use std::net::{IpAddr, SocketAddr};

/// The `Host` values one API answers.
#[derive(Debug, Clone)]
pub struct AllowedHosts {
    /// The address the API listens on: its IP is always accepted, and when
    /// it is unspecified (`0.0.0.0`, `::`) every IP literal is.
    listen: IpAddr,
    /// `allowed_hosts` from the configuration, lower-case, without a
    /// trailing dot (names the API is reached by: a reverse proxy's
    /// public name, the machine's name).
    names: Vec<String>,
}

impl AllowedHosts {
    pub fn new(listen: SocketAddr, names: &[String]) -> AllowedHosts {
        AllowedHosts {
            listen: listen.ip(),
            names: names.iter().map(|n| normalise(n)).collect(),
        }
    }

    /// Whether a request with this `Host` header (`name`, `name:port`,
    /// `[v6]:port`; any port) is for this API.
    pub fn allows(&self, host_header: &str) -> bool {
        let Some(host) = host_of(host_header) else {
            return false;
        };
        let host = normalise(host);
        if host == "localhost" || self.names.contains(&host) {
            return true;
        }
        match host.parse::<IpAddr>() {
            Ok(ip) => ip.is_loopback() || ip == self.listen || self.listen.is_unspecified(),
            Err(_) => false,
        }
    }
}

fn normalise(name: &str) -> String {
    let name = name.trim();
    let name = name
        .strip_prefix('[')
        .and_then(|n| n.strip_suffix(']'))
        .unwrap_or(name);
    name.strip_suffix('.').unwrap_or(name).to_ascii_lowercase()
}

/// The host of a `Host` header: without its port, an IPv6 address
/// without its brackets. `None` for what is not a host (an empty value, a
/// port that is not a number).
fn host_of(header: &str) -> Option<&str> {
    let header = header.trim();
    let (host, port) = if let Some(rest) = header.strip_prefix('[') {
        let (v6, after) = rest.split_once(']')?;
        (v6, after.strip_prefix(':'))
    } else {
        match header.rsplit_once(':') {
            Some((h, p)) => (h, Some(p)),
            None => (header, None),
        }
    };
    if host.is_empty()
        || port.is_some_and(|p| p.is_empty() || !p.bytes().all(|b| b.is_ascii_digit()))
    {
        return None;
    }
    Some(host)
}

/// What is wrong with an `allowed_hosts` entry, if anything: it must be a
/// host name or an IP address, without a scheme, a port or a wildcard
/// (each name is a promise that it resolves to this machine).
pub fn host_name_problem(name: &str) -> Option<String> {
    let bare = normalise(name);
    let ok = bare.parse::<IpAddr>().is_ok()
        || (!bare.is_empty()
            && bare.len() <= 253
            && bare.split('.').all(|label| {
                !label.is_empty()
                    && label.len() <= 63
                    && !label.starts_with('-')
                    && !label.ends_with('-')
                    && label
                        .bytes()
                        .all(|b| b.is_ascii_alphanumeric() || b == b'-')
            }));
    (!ok).then(|| {
        format!(
            "`{name}`: expected a host name such as \"wall.county.example\" or an IP address, \
             without scheme, port or wildcard"
        )
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hosts(listen: &str, names: &[&str]) -> AllowedHosts {
        let names: Vec<String> = names.iter().map(|n| n.to_string()).collect();
        AllowedHosts::new(listen.parse().expect("address"), &names)
    }

    #[test]
    fn loopback_api_answers_loopback_names_only() {
        let h = hosts("127.0.0.1:8090", &[]);
        for ok in [
            "127.0.0.1:8090",
            "127.0.0.1",
            "localhost:8090",
            "LOCALHOST",
            "localhost.:1",
            "[::1]:8090",
            "[::1]",
            "127.0.0.2:80",
        ] {
            assert!(h.allows(ok), "{ok}");
        }
        for refused in [
            "rebind.example",
            "rebind.example:8090",
            "127.0.0.1.nip.io:8090",
            "localhost.evil.example",
            "10.0.0.5:8090",
            "",
            "127.0.0.1:http",
            "[::1",
        ] {
            assert!(!h.allows(refused), "{refused}");
        }
    }

    #[test]
    fn configured_names_and_the_listen_address() {
        let h = hosts("10.0.0.5:8090", &["Wall.County.Example", "gw-7"]);
        assert!(h.allows("wall.county.example"));
        assert!(h.allows("wall.county.example.:443"));
        assert!(h.allows("GW-7:8090"));
        assert!(h.allows("10.0.0.5:8090"));
        assert!(
            !h.allows("10.0.0.6:8090"),
            "another IP of a specific listener"
        );
        assert!(!h.allows("county.example"));
        // Listening on every address: any IP literal is the machine itself.
        let any = hosts("0.0.0.0:8090", &[]);
        assert!(any.allows("10.0.0.6:8090") && any.allows("[fe80::1]:8090"));
        assert!(!any.allows("rebind.example:8090"));
    }

    #[test]
    fn configured_names_are_checked() {
        for ok in [
            "wall.county.example",
            "gw-7",
            "10.0.0.5",
            "[fd00::5]",
            "fd00::5",
        ] {
            assert_eq!(host_name_problem(ok), None, "{ok}");
        }
        for bad in [
            "https://wall.example",
            "wall.example:443",
            "*.example",
            "",
            "-x.example",
            "a..b",
        ] {
            assert!(host_name_problem(bad).is_some(), "{bad}");
        }
    }
}
