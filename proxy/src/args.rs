//! Command line of `serval-proxy` (DESIGN.md "Command line and admin contract") and its conversion
//! to a validated [`ProxyConfig`]. Defaults live here and nowhere else.

use crate::{ProxyConfig, upstream};
use clap::Parser;
use serval_common::{proto::discovery::v1::Node, telemetry::LogFormat};
use std::{
    net::{IpAddr, SocketAddr},
    time::Duration,
};

/// `serval-proxy`: receives configuration over the delta protocol and routes traffic.
#[derive(Debug, Parser)]
#[command(name = "serval-proxy", version)]
pub struct Args {
    /// Delta server URL, e.g. `http://127.0.0.1:18000`.
    #[arg(long, env = "SERVAL_XDS_SERVER")]
    pub xds_server: String,
    /// Unique id of this proxy (e.g. the pod name).
    #[arg(long, env = "SERVAL_NODE_ID")]
    pub node_id: String,
    /// A Gateway to serve, `NAMESPACE/NAME`; repeat for several. None: every Gateway.
    #[arg(long = "gateway", value_name = "NAMESPACE/NAME")]
    pub gateways: Vec<String>,
    /// Admin HTTP address (`/healthz`, `/readyz`, `/metrics`, `/config_dump`).
    #[arg(long, default_value = "127.0.0.1:19001")]
    pub admin_addr: SocketAddr,
    /// Bind every listener on this IP instead of its Gateway's address (ports unchanged).
    #[arg(long)]
    pub bind_address: Option<IpAddr>,
    /// Speak the delta protocol without TLS. Mutual TLS is not implemented yet, so plaintext is
    /// what runs; the flag is accepted so command lines stay valid when it is.
    #[arg(long)]
    pub xds_plaintext: bool,
    /// topology.kubernetes.io/zone of this proxy.
    #[arg(long, default_value = "")]
    pub zone: String,
    /// How long removed listeners and shutdown wait for open requests.
    #[arg(long, default_value = "10", value_name = "SECONDS")]
    pub drain_timeout_secs: u64,
    /// Log format.
    #[arg(long, value_enum, default_value_t)]
    pub log_format: LogFormat,
}

/// A command-line value is invalid.
#[derive(Debug, thiserror::Error)]
pub enum ArgsError {
    /// `--gateway` is not `NAMESPACE/NAME`.
    #[error("--gateway {0:?}: expected NAMESPACE/NAME")]
    Gateway(String),
    /// `--xds-server` is not a plain http URL.
    #[error(
        "--xds-server {0:?}: expected http://HOST:PORT (mutual TLS for the delta protocol is not implemented yet)"
    )]
    Server(String),
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
        if !args.xds_server.starts_with("http://") {
            return Err(ArgsError::Server(args.xds_server));
        }
        if args.node_id.is_empty() {
            return Err(ArgsError::NodeId);
        }
        let mut gateways = args.gateways;
        gateways.sort();
        gateways.dedup();
        Ok(ProxyConfig {
            xds_server: args.xds_server,
            node: Node {
                id: args.node_id,
                gateways,
                build_version: serval_common::BUILD_VERSION.to_owned(),
                zone: args.zone,
            },
            admin_addr: Some(args.admin_addr),
            bind_ip: args.bind_address,
            drain_timeout: Duration::from_secs(args.drain_timeout_secs),
            upstream: upstream::Settings::default(),
        })
    }
}
