//! The API token rules the configuration check applies (`api_token_file`,
//! `http_listen`), shared by the gateway's and the center's configs and by the
//! HTTP guard (`auth.rs`). Only the standard library, so the config fuzz
//! target can compile these files on their own.

use std::net::SocketAddr;
use std::path::Path;

/// Shortest token accepted: long enough that guessing is hopeless.
pub const MIN_TOKEN_LEN: usize = 16;

/// Reads a token file: one line, at least [`MIN_TOKEN_LEN`] printable
/// characters. Errors name the file.
pub fn read_token(path: &Path) -> Result<String, String> {
    let text = std::fs::read_to_string(path)
        .map_err(|e| format!("API token file {}: {e}", path.display()))?;
    let token = text.trim();
    if token.len() < MIN_TOKEN_LEN {
        return Err(format!(
            "API token file {}: the token must be at least {MIN_TOKEN_LEN} characters",
            path.display()
        ));
    }
    if token.chars().any(|c| c.is_whitespace() || c.is_control()) {
        return Err(format!(
            "API token file {}: the token must be one line without spaces",
            path.display()
        ));
    }
    Ok(token.to_string())
}

/// The configuration rule: an API off loopback needs a token.
pub fn exposure_problem(listen: SocketAddr, has_token: bool) -> Option<String> {
    if listen.ip().is_loopback() || has_token {
        None
    } else {
        Some(format!(
            "listens on {listen}, which is not loopback: set `api_token_file` so that the API \
             requires a token there (or listen on 127.0.0.1)"
        ))
    }
}
