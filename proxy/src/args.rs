//! Command line of `serval-proxy` (DESIGN.md "Command line and admin contract") and its conversion
//! to a validated [`ProxyConfig`]. Defaults live here and nowhere else.

use crate::{ProxyConfig, upstream, xds::tls::Connector};
use clap::Parser;
use serval_common::{proto::discovery::v1::Node, telemetry::LogFormat, tls::TlsFiles};
use std::{
    net::{IpAddr, SocketAddr},
    path::PathBuf,
    time::Duration,
};

/// `serval-proxy`: receives configuration over the delta protocol and routes traffic.
#[derive(Debug, Parser)]
#[command(name = "serval-proxy", version)]
pub struct Args {
    /// Delta server URL: `https://HOST:PORT` (mutual TLS) or, with `--xds-plaintext`,
    /// `http://HOST:PORT`.
    #[arg(long, env = "SERVAL_XDS_SERVER")]
    pub xds_server: String,
    /// Unique id of this proxy (e.g. the pod name).
    #[arg(long, env = "SERVAL_NODE_ID")]
    pub node_id: String,
    /// A Gateway to serve, `NAMESPACE/NAME`; repeat for several. None: every Gateway (of
    /// `--gateway-class` when given).
    #[arg(long = "gateway", value_name = "NAMESPACE/NAME")]
    pub gateways: Vec<String>,
    /// Serve every Gateway of this GatewayClass (when no `--gateway` is given).
    #[arg(long, conflicts_with = "gateways")]
    pub gateway_class: Option<String>,
    /// Admin HTTP address (`/healthz`, `/readyz`, `/metrics`, `/config_dump`).
    #[arg(long, default_value = "127.0.0.1:19001")]
    pub admin_addr: SocketAddr,
    /// Bind every listener on this IP instead of its Gateway's address (ports unchanged).
    #[arg(long)]
    pub bind_address: Option<IpAddr>,
    /// How to reach the control plane.
    #[command(flatten)]
    pub transport: XdsClientArgs,
    /// Keep the last ACKed configuration in this file and, on start, serve it at once while the
    /// control plane is unreachable.
    #[arg(long, env = "SERVAL_CONFIG_CACHE")]
    pub config_cache: Option<PathBuf>,
    /// topology.kubernetes.io/zone of this proxy.
    #[arg(long, default_value = "")]
    pub zone: String,
    /// How long removed listeners and shutdown wait for open requests.
    #[arg(long, default_value = "10", value_name = "SECONDS")]
    pub drain_timeout_secs: u64,
    /// Log format.
    #[arg(long, value_enum, default_value_t)]
    pub log_format: LogFormat,
    /// Threads serving traffic and the delta stream (like Envoy's `--concurrency`); default: one
    /// per CPU. Set it to the CPUs this proxy may use when several proxies share a machine.
    #[arg(long, env = "SERVAL_WORKER_THREADS", value_parser = clap::value_parser!(u16).range(1..))]
    pub worker_threads: Option<u16>,
    /// The access log on stdout: one JSON line per request, or `off`.
    #[arg(long, env = "SERVAL_ACCESS_LOG", value_enum, default_value_t)]
    pub access_log: crate::access_log::Format,
    /// Traces (OTLP export, sampling).
    #[command(flatten)]
    pub traces: serval_common::traces::TraceArgs,
}

/// The transport flags of every delta-protocol client (`serval-proxy`,
/// `serval-control-plane proxy-status`).
#[derive(Clone, Debug, clap::Args)]
pub struct XdsClientArgs {
    /// Speak the delta protocol without TLS (`http://` server URL). Otherwise mutual TLS with
    /// `--xds-cert`, `--xds-key` and `--xds-ca`.
    #[arg(long)]
    pub xds_plaintext: bool,
    /// PEM client certificate presented to the control plane (mutual TLS).
    #[arg(long, env = "SERVAL_XDS_CERT")]
    pub xds_cert: Option<PathBuf>,
    /// PEM private key of `--xds-cert`.
    #[arg(long, env = "SERVAL_XDS_KEY")]
    pub xds_key: Option<PathBuf>,
    /// PEM CA certificate the control plane's certificate must chain to.
    #[arg(long, env = "SERVAL_XDS_CA")]
    pub xds_ca: Option<PathBuf>,
    /// The name the control plane's certificate must carry; default: the host of `--xds-server`.
    #[arg(long)]
    pub xds_server_name: Option<String>,
}

impl XdsClientArgs {
    /// How to reach `server` with these flags.
    pub fn connector(&self, server: &str) -> Result<Connector, ArgsError> {
        connector(
            server,
            self.xds_plaintext,
            (
                self.xds_cert.clone(),
                self.xds_key.clone(),
                self.xds_ca.clone(),
            ),
            self.xds_server_name.clone(),
        )
    }
}

/// A command-line value is invalid.
#[derive(Debug, thiserror::Error)]
pub enum ArgsError {
    /// `--gateway` is not `NAMESPACE/NAME`.
    #[error("--gateway {0:?}: expected NAMESPACE/NAME")]
    Gateway(String),
    /// `--xds-server` does not fit the transport.
    #[error("--xds-server {0:?}: expected {1}")]
    Server(String, &'static str),
    /// Neither plaintext nor the three TLS files.
    #[error(
        "the delta protocol runs over mutual TLS: pass --xds-cert, --xds-key and --xds-ca, or --xds-plaintext"
    )]
    Tls,
    /// `--node-id` is empty.
    #[error("--node-id must not be empty")]
    NodeId,
}

impl TryFrom<Args> for ProxyConfig {
    type Error = ArgsError;

    fn try_from(args: Args) -> Result<Self, ArgsError> {
        for g in &args.gateways {
            let valid = g.split_once('/').is_some_and(|(ns, name)| {
                !ns.is_empty() && !name.is_empty() && !name.contains('/')
            });
            if !valid {
                return Err(ArgsError::Gateway(g.clone()));
            }
        }
        let connector = args.transport.connector(&args.xds_server)?;
        if args.node_id.is_empty() {
            return Err(ArgsError::NodeId);
        }
        let mut gateways = args.gateways;
        gateways.sort();
        gateways.dedup();
        Ok(ProxyConfig {
            connector,
            config_cache: args.config_cache,
            node: Node {
                id: args.node_id,
                gateways,
                gateway_class: args.gateway_class.unwrap_or_default(),
                build_version: serval_common::BUILD_VERSION.to_owned(),
                zone: args.zone,
            },
            admin_addr: Some(args.admin_addr),
            bind_ip: args.bind_address,
            drain_timeout: Duration::from_secs(args.drain_timeout_secs),
            upstream: upstream::Settings::default(),
            access_log: args.access_log,
            traces: args.traces,
        })
    }
}

/// How to reach `server`: plaintext (`http://HOST:PORT`) or mutual TLS (`https://HOST:PORT` with
/// the three files; the certificate must name `server_name`, default the URL's host).
pub fn connector(
    server: &str,
    plaintext: bool,
    (cert, key, ca): (Option<PathBuf>, Option<PathBuf>, Option<PathBuf>),
    server_name: Option<String>,
) -> Result<Connector, ArgsError> {
    if plaintext {
        if !server.starts_with("http://") {
            return Err(ArgsError::Server(
                server.to_owned(),
                "http://HOST:PORT with --xds-plaintext",
            ));
        }
        return Ok(Connector::Plaintext {
            url: server.to_owned(),
        });
    }
    let (Some(cert), Some(key), Some(ca)) = (cert, key, ca) else {
        return Err(ArgsError::Tls);
    };
    let Some(authority) = server
        .strip_prefix("https://")
        .map(|a| a.trim_end_matches('/'))
        .filter(|a| !a.is_empty() && !a.contains('/'))
    else {
        return Err(ArgsError::Server(server.to_owned(), "https://HOST:PORT"));
    };
    let host = authority
        .rsplit_once(':')
        .map_or(authority, |(h, _)| h)
        .trim_start_matches('[')
        .trim_end_matches(']');
    Ok(Connector::Tls {
        authority: authority.to_owned(),
        server_name: server_name.unwrap_or_else(|| host.to_owned()),
        files: TlsFiles { cert, key, ca },
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn transport_follows_the_flags() {
        let none = (None, None, None);
        assert!(connector("http://h:1", true, none.clone(), None).is_ok());
        assert!(connector("https://h:1", true, none.clone(), None).is_err());
        let err = connector("https://h:1", false, none, None).expect_err("no files");
        assert!(err.to_string().contains("--xds-plaintext"), "{err}");
        let files = (
            Some(PathBuf::from("c")),
            Some(PathBuf::from("k")),
            Some(PathBuf::from("ca")),
        );
        assert!(connector("http://h:1", false, files.clone(), None).is_err());
        match connector("https://cp.example:18000", false, files, None).expect("tls") {
            Connector::Tls {
                authority,
                server_name,
                ..
            } => {
                assert_eq!(authority, "cp.example:18000");
                assert_eq!(server_name, "cp.example");
            }
            Connector::Plaintext { .. } => panic!("TLS expected"),
        }
    }

    #[test]
    fn worker_threads_is_a_positive_count() {
        let base = [
            "serval-proxy",
            "--xds-server",
            "http://h:1",
            "--node-id",
            "n",
        ];
        let parse = |extra: &[&str]| Args::try_parse_from(base.iter().chain(extra));
        assert_eq!(parse(&[]).expect("default").worker_threads, None);
        let one = parse(&["--worker-threads", "1"]).expect("one");
        assert_eq!(one.worker_threads, Some(1));
        let zero = parse(&["--worker-threads", "0"]).expect_err("zero threads");
        assert!(zero.to_string().contains("--worker-threads"), "{zero}");
    }
}
