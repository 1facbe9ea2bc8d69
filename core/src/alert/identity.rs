//! Which model produced an alert: its name and a version that changes when
//! the file changes, so an alert can always be traced to the exact weights.

use std::io::Read;
use std::path::Path;

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ModelIdentity {
    /// The model file's name without extension (`smoke_flood`).
    pub name: String,
    /// The configured `model_version`, else the first 12 hex digits of the
    /// file's SHA-256.
    pub version: String,
    /// The file's full SHA-256, hex.
    pub sha256: String,
}

impl ModelIdentity {
    pub fn of_file(
        path: &Path,
        configured_version: Option<&str>,
    ) -> std::io::Result<ModelIdentity> {
        let mut file = std::fs::File::open(path)?;
        let mut hasher = Sha256::new();
        let mut buf = vec![0u8; 1 << 16];
        loop {
            let n = file.read(&mut buf)?;
            if n == 0 {
                break;
            }
            hasher.update(&buf[..n]);
        }
        let sha256: String = hasher
            .finalize()
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect();
        let name = path
            .file_stem()
            .map(|s| s.to_string_lossy().into_owned())
            .unwrap_or_else(|| "model".to_string());
        let version = configured_version
            .map(str::to_string)
            .unwrap_or_else(|| sha256[..12].to_string());
        Ok(ModelIdentity {
            name,
            version,
            sha256,
        })
    }
}
