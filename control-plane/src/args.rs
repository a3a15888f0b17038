//! Command line of `serval-control-plane` (DESIGN.md "Command line and admin contract") and its
//! conversion to a validated [`crate::standalone::Config`]. Defaults live here and nowhere else.

use crate::{sources::file::Timing, standalone};
use clap::{Parser, Subcommand};
use serval_common::telemetry::LogFormat;
use std::{net::SocketAddr, path::PathBuf, time::Duration};

/// `serval-control-plane`: Gateway API objects in, proxy configuration out.
#[derive(Debug, Parser)]
#[command(name = "serval-control-plane", version)]
pub struct Args {
    /// What to run.
    #[command(subcommand)]
    pub command: Command,
    /// Log format.
    #[arg(long, global = true, value_enum, default_value_t)]
    pub log_format: LogFormat,
}

/// Modes.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Watch a folder of Gateway API YAML and serve it: delta server, admin, and an in-process
    /// proxy, a complete gateway from one command.
    Standalone(StandaloneArgs),
}

/// `standalone` options.
#[derive(Debug, clap::Args)]
pub struct StandaloneArgs {
    /// Folder of `*.yaml`/`*.yml` files (multi-document), re-read on change.
    #[arg(long)]
    pub config_dir: PathBuf,
    /// Delta protocol (gRPC) address. Port 0 picks a free port.
    #[arg(long, default_value = "127.0.0.1:18000")]
    pub xds_addr: SocketAddr,
    /// Admin HTTP address (`/healthz`, `/readyz`, `/metrics`, `/status`).
    #[arg(long, default_value = "127.0.0.1:19000")]
    pub admin_addr: SocketAddr,
    /// Admin HTTP address of the in-process proxy (`/config_dump` and its own metrics); none by
    /// default.
    #[arg(long)]
    pub proxy_admin_addr: Option<SocketAddr>,
    /// Run no in-process proxy: only the control plane, for proxies started separately.
    #[arg(long)]
    pub no_proxy: bool,
    /// The delta protocol runs without TLS (implied for standalone's own loopback connection;
    /// mutual TLS is not implemented yet).
    #[arg(long)]
    pub xds_plaintext: bool,
    /// Quiet time after a file change before reloading, in milliseconds.
    #[arg(long, default_value = "100")]
    pub debounce_ms: u64,
    /// The GatewayClass controllerName to own.
    #[arg(long, default_value = serval_common::CONTROLLER_NAME)]
    pub controller_name: String,
}

/// A command-line value is invalid.
#[derive(Debug, thiserror::Error)]
pub enum ArgsError {
    /// The config folder is not a folder.
    #[error("--config-dir {0}: not a readable directory")]
    ConfigDir(PathBuf),
}

impl TryFrom<StandaloneArgs> for standalone::Config {
    type Error = ArgsError;

    fn try_from(args: StandaloneArgs) -> Result<Self, ArgsError> {
        if !args.config_dir.is_dir() {
            return Err(ArgsError::ConfigDir(args.config_dir));
        }
        Ok(standalone::Config {
            config_dir: args.config_dir,
            xds_addr: args.xds_addr,
            admin_addr: args.admin_addr,
            proxy_admin_addr: args.proxy_admin_addr,
            run_proxy: !args.no_proxy,
            timing: Timing {
                debounce: Duration::from_millis(args.debounce_ms),
                ..Timing::default()
            },
            controller_name: args.controller_name,
        })
    }
}
