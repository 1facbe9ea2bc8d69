//! The API token rules the configuration check applies (`api_token_file`,
//! `http_listen`), shared by the gateway's and the center's configs and by the
//! HTTP guard (`auth.rs`). Only the standard library, so the config fuzz
//! target can compile these files on their own.

use std::net::SocketAddr;
use std::path::Path;

/// Shortest token accepted: long enough that guessing is hopeless.
pub const MIN_TOKEN_LEN: usize = 16;

/// Reads a token file: one line, at least [`MIN_TOKEN_LEN`] printable
/// characters, readable by its owner only. Errors name the file.
pub fn read_token(path: &Path) -> Result<String, String> {
    read_secret_file(path, "API token file", "token", MIN_TOKEN_LEN)
}

/// Reads a one-line secret of at least `min_len` characters from `path`, refusing a
/// file others can read; `what` names the file and `noun` the secret in messages.
pub fn read_secret_file(
    path: &Path,
    what: &str,
    noun: &str,
    min_len: usize,
) -> Result<String, String> {
    let meta = std::fs::metadata(path).map_err(|e| format!("{what} {}: {e}", path.display()))?;
    if let Some(problem) = exposed_file(path, &meta, what) {
        return Err(problem);
    }
    let text =
        std::fs::read_to_string(path).map_err(|e| format!("{what} {}: {e}", path.display()))?;
    let secret = text.trim();
    if secret.len() < min_len {
        return Err(format!(
            "{what} {}: the {noun} must be at least {min_len} characters",
            path.display()
        ));
    }
    if secret.chars().any(|c| c.is_whitespace() || c.is_control()) {
        return Err(format!(
            "{what} {}: the {noun} must be one line without spaces",
            path.display()
        ));
    }
    Ok(secret.to_string())
}

/// Why a token file must not be used as it is: other users of the machine
/// can read it (any group or other permission bit), and with it every
/// right the token gives. A secret that is not one is refused rather than
/// warned about: a warning scrolls by, the attacker on the same machine
/// stays.
#[cfg(unix)]
fn exposed_file(path: &Path, meta: &std::fs::Metadata, what: &str) -> Option<String> {
    use std::os::unix::fs::PermissionsExt;
    let mode = meta.permissions().mode() & 0o777;
    (mode & 0o077 != 0).then(|| {
        format!(
            "{what} {} can be read by other users (mode {mode:04o}): make it the \
             owner's alone with `chmod 600 {}`",
            path.display(),
            path.display()
        )
    })
}

#[cfg(not(unix))]
fn exposed_file(_path: &Path, _meta: &std::fs::Metadata, _what: &str) -> Option<String> {
    None
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
