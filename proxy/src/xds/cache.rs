//! `--config-cache PATH`: the last configuration this proxy ACKed, on disk, so a proxy can start and
//! serve while the control plane is unreachable (scale-out during an outage).
//!
//! The file is one `serval.discovery.v1.DeltaConfigResponse` (protobuf): `system_version_info` and
//! every held resource with its version and payload; `nonce` empty. It is written by a background
//! task after each ACK — latest wins, never on the request path — to a temporary file in the same
//! folder, synced, then renamed over the old one, so a crash leaves the old or the new file, never
//! a torn one. On start, [`load`] reads it; the caller applies it like a response.

use crate::config::Config;
use prost::Message;
use serval_common::proto::discovery::v1::{DeltaConfigResponse, Resource};
use std::{
    io::Write,
    path::{Path, PathBuf},
    sync::Arc,
};
use tokio::sync::watch;

/// Why the cache could not be read.
#[derive(Debug, thiserror::Error)]
pub enum CacheError {
    /// The file could not be read.
    #[error("config cache {path}: {source}")]
    Read {
        /// The file.
        path: PathBuf,
        /// The error.
        #[source]
        source: std::io::Error,
    },
    /// The file is not a cached configuration.
    #[error("config cache {path}: not a configuration: {source}")]
    Decode {
        /// The file.
        path: PathBuf,
        /// The error.
        #[source]
        source: prost::DecodeError,
    },
}

/// Reads the cached configuration; `Ok(None)` when there is no file yet.
pub fn load(path: &Path) -> Result<Option<DeltaConfigResponse>, CacheError> {
    let bytes = match std::fs::read(path) {
        Ok(b) => b,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(source) => {
            return Err(CacheError::Read {
                path: path.to_owned(),
                source,
            });
        }
    };
    DeltaConfigResponse::decode(bytes.as_slice())
        .map(Some)
        .map_err(|source| CacheError::Decode {
            path: path.to_owned(),
            source,
        })
}

/// The cached form of an applied configuration.
pub fn encode(config: &Config) -> Vec<u8> {
    DeltaConfigResponse {
        system_version_info: config.version.clone(),
        resources: config
            .resources
            .iter()
            .map(|(name, resource)| Resource {
                name: name.clone(),
                version: config.versions.get(name).cloned().unwrap_or_default(),
                resource: Some(resource.to_any()),
            })
            .collect(),
        ..Default::default()
    }
    .encode_to_vec()
}

/// Writes `bytes` to `path` atomically: a temporary file beside it (mode 0600), synced, renamed
/// over it, and the folder synced.
pub fn write_atomically(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    let dir = path
        .parent()
        .filter(|d| !d.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    let name = path.file_name().and_then(|n| n.to_str()).unwrap_or("cache");
    let tmp = dir.join(format!(".{name}.{}.tmp", std::process::id()));
    let result = (|| {
        // It holds the private keys of HTTPS listeners: readable by the proxy's user only. A
        // leftover temporary file (a crash) is removed first, so the mode applies.
        let _ = std::fs::remove_file(&tmp);
        let mut options = std::fs::OpenOptions::new();
        options.write(true).create_new(true);
        #[cfg(unix)]
        std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
        let mut file = options.open(&tmp)?;
        file.write_all(bytes)?;
        file.sync_all()?;
        std::fs::rename(&tmp, path)?;
        std::fs::File::open(dir)?.sync_all()
    })();
    if result.is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
    result
}

/// Writes every configuration published on `configs` to `path`, the latest only when several
/// arrive during one write. Runs until the sender is dropped.
pub async fn run_writer(path: PathBuf, mut configs: watch::Receiver<Option<Arc<Config>>>) {
    while configs.changed().await.is_ok() {
        let Some(config) = configs.borrow_and_update().clone() else {
            continue;
        };
        let path = path.clone();
        let version = config.version.clone();
        let written =
            tokio::task::spawn_blocking(move || write_atomically(&path, &encode(&config))).await;
        match written {
            Ok(Ok(())) => tracing::debug!(%version, "configuration cached"),
            Ok(Err(error)) => tracing::warn!(%error, "could not write the config cache"),
            Err(error) => tracing::warn!(%error, "config cache writer failed"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_written_cache_reads_back_and_a_missing_one_is_none() {
        let dir = std::env::temp_dir().join(format!("serval-cache-{}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("dir");
        let path = dir.join("config.pb");
        assert!(load(&path).expect("no file is fine").is_none());
        let response = DeltaConfigResponse {
            system_version_info: "v1".into(),
            ..Default::default()
        };
        write_atomically(&path, &response.encode_to_vec()).expect("write");
        assert_eq!(load(&path).expect("reads").expect("some"), response);
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = std::fs::metadata(&path).expect("stat").permissions().mode();
            assert_eq!(mode & 0o777, 0o600, "private keys: owner only");
        }
        std::fs::write(&path, b"\xff\xff\xff").expect("corrupt");
        let err = load(&path).expect_err("garbage is refused");
        assert!(err.to_string().contains("not a configuration"), "{err}");
        let leftovers: Vec<_> = std::fs::read_dir(&dir)
            .expect("list")
            .flatten()
            .filter(|e| e.file_name().to_string_lossy().ends_with(".tmp"))
            .collect();
        assert!(leftovers.is_empty(), "no temporary file is left behind");
        let _ = std::fs::remove_dir_all(&dir);
    }
}
