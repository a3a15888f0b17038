//! The Kubernetes client: `--kubeconfig PATH` when given, else the in-cluster ServiceAccount (its
//! token and CA under `/var/run/secrets/kubernetes.io/serviceaccount/`), else the usual kubeconfig
//! environment (`KUBECONFIG`, `~/.kube/config`).
//!
//! The API server's certificate is always verified (against the cluster CA in-cluster, the
//! kubeconfig's CA outside). In-cluster, kube-rs re-reads the projected token file before it
//! expires, so token rotation is picked up without a restart.

use kube::{
    Client, Config,
    config::{KubeConfigOptions, Kubeconfig},
};
use std::path::{Path, PathBuf};

/// Why no client could be built.
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    /// `--kubeconfig` could not be read or used.
    #[error("--kubeconfig {path}: {message}")]
    Kubeconfig {
        /// The file.
        path: PathBuf,
        /// What failed.
        message: String,
    },
    /// Neither in-cluster nor a kubeconfig is available.
    #[error(
        "no Kubernetes configuration: not in a cluster ({incluster}) and no kubeconfig ({kubeconfig})"
    )]
    NoConfig {
        /// Why in-cluster configuration failed.
        incluster: String,
        /// Why the kubeconfig failed.
        kubeconfig: String,
    },
    /// The configuration is unusable (bad TLS material, bad URL).
    #[error("Kubernetes client: {0}")]
    Client(#[source] kube::Error),
}

/// Builds the client; every request says `User-Agent: serval-control-plane/VERSION (IDENTITY)`, so
/// audit logs tell replicas apart. No request is made: an unreachable API server is retried by
/// the watchers.
pub async fn build(kubeconfig: Option<&Path>, identity: &str) -> Result<Client, ClientError> {
    let mut config = match kubeconfig {
        Some(path) => {
            let failed = |message: String| ClientError::Kubeconfig {
                path: path.to_owned(),
                message,
            };
            let file = Kubeconfig::read_from(path).map_err(|e| failed(e.to_string()))?;
            Config::from_custom_kubeconfig(file, &KubeConfigOptions::default())
                .await
                .map_err(|e| failed(e.to_string()))?
        }
        None => match Config::incluster() {
            Ok(config) => config,
            Err(incluster) => Config::from_kubeconfig(&KubeConfigOptions::default())
                .await
                .map_err(|kubeconfig| ClientError::NoConfig {
                    incluster: incluster.to_string(),
                    kubeconfig: kubeconfig.to_string(),
                })?,
        },
    };
    let agent = format!(
        "serval-control-plane/{} ({identity})",
        serval_common::BUILD_VERSION
    );
    if let Ok(value) = http::HeaderValue::from_str(&agent) {
        config.headers.push((http::header::USER_AGENT, value));
    }
    tracing::info!(cluster_url = %config.cluster_url, "Kubernetes API server");
    Client::try_from(config).map_err(ClientError::Client)
}
