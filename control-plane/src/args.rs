//! Command line of `serval-control-plane` (DESIGN.md "Command line and admin contract") and its
//! conversion to validated [`crate::standalone::Config`] and [`crate::kubernetes::Config`].
//! Defaults live here and nowhere else.

use crate::{
    kubernetes, leader, sources::file::Timing, standalone, status_writer, xds::server::Limits,
};
use clap::{Parser, Subcommand};
use serval_common::{telemetry::LogFormat, tls::TlsFiles};
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
    /// Watch the Kubernetes API (in-cluster or kubeconfig), serve the delta protocol to proxies,
    /// and write Gateway API status back (the leader replica only).
    Kubernetes(KubernetesArgs),
    /// Print the proxies connected to a control plane (with a node id: what that proxy holds).
    ProxyStatus(ProxyStatusArgs),
    /// Write a CA and the certificates mutual TLS on the delta protocol needs (and, with
    /// `--kubernetes-namespace`, the Secrets the manifests mount).
    Certgen(CertgenArgs),
}

/// `proxy-status` options.
#[derive(Debug, clap::Args)]
pub struct ProxyStatusArgs {
    /// Show what this proxy holds instead of the whole fleet.
    pub node_id: Option<String>,
    /// The control plane's delta server: `https://HOST:PORT`, or `http://HOST:PORT` with
    /// `--xds-plaintext`.
    #[arg(
        long,
        env = "SERVAL_XDS_SERVER",
        default_value = "http://127.0.0.1:18000"
    )]
    pub xds_server: String,
    /// Plaintext, or mutual TLS with an admin certificate (`certgen` writes `admin.crt`).
    #[command(flatten)]
    pub transport: serval_proxy::args::XdsClientArgs,
    /// Output format.
    #[arg(long, short, value_enum, default_value_t)]
    pub output: crate::proxy_status::Output,
}

impl ProxyStatusArgs {
    /// How to connect, with the same rules as `serval-proxy`.
    pub fn connector(&self) -> Result<serval_proxy::xds::tls::Connector, String> {
        self.transport
            .connector(&self.xds_server)
            .map_err(|e| e.to_string())
    }
}

/// `certgen` options.
#[derive(Debug, clap::Args)]
pub struct CertgenArgs {
    /// Folder to write into (an existing `ca.crt`/`ca.key` there is reused).
    #[arg(long)]
    pub out_dir: PathBuf,
    /// DNS name or IP of the control plane's certificate; repeat for several.
    #[arg(long = "server-name", default_values_t = CertgenArgs::default_server_names())]
    pub server_names: Vec<String>,
    /// File name of the proxy certificate (`NAME.crt`, `NAME.key`).
    #[arg(long, default_value = "proxy")]
    pub proxy_name: String,
    /// A Gateway (`NAMESPACE/NAME`) the proxy certificate allows; repeat for several. With no
    /// `--proxy-gateway` and no `--proxy-gateway-class`: every Gateway.
    #[arg(long = "proxy-gateway")]
    pub proxy_gateways: Vec<String>,
    /// A GatewayClass whose Gateways the proxy certificate allows; repeat for several.
    #[arg(long = "proxy-gateway-class")]
    pub proxy_gateway_classes: Vec<String>,
    /// Validity of the certificates in days (the CA: ten times as long).
    #[arg(long, default_value = "365")]
    pub valid_days: u32,
    /// Also write `secrets.yaml` with the Secrets (`serval-xds-server`, `serval-xds-PROXY_NAME`,
    /// `serval-xds-admin`) in this namespace.
    #[arg(long)]
    pub kubernetes_namespace: Option<String>,
}

impl CertgenArgs {
    /// Loopback, and the control plane's Service as the manifests name it.
    pub fn default_server_names() -> Vec<String> {
        [
            "localhost",
            "127.0.0.1",
            "serval-control-plane",
            "serval-control-plane.serval-system",
            "serval-control-plane.serval-system.svc",
            "serval-control-plane.serval-system.svc.cluster.local",
        ]
        .map(str::to_owned)
        .to_vec()
    }
}

impl From<CertgenArgs> for crate::certgen::Request {
    fn from(a: CertgenArgs) -> Self {
        Self {
            out_dir: a.out_dir,
            server_names: a.server_names,
            proxy_name: a.proxy_name,
            proxy_gateways: a.proxy_gateways,
            proxy_gateway_classes: a.proxy_gateway_classes,
            valid_days: a.valid_days,
            kubernetes_namespace: a.kubernetes_namespace,
        }
    }
}

/// `kubernetes` options.
#[derive(Debug, clap::Args)]
pub struct KubernetesArgs {
    /// kubeconfig file; default: in-cluster, else `KUBECONFIG` / `~/.kube/config`.
    #[arg(long)]
    pub kubeconfig: Option<PathBuf>,
    /// Rollout traces (OTLP export).
    #[command(flatten)]
    pub traces: serval_common::traces::TraceArgs,
    /// Delta protocol (gRPC) address.
    #[arg(long, default_value = "0.0.0.0:18000")]
    pub xds_addr: SocketAddr,
    /// Admin HTTP address (`/healthz`, `/readyz`, `/metrics`, `/status`).
    #[arg(long, default_value = "0.0.0.0:19000")]
    pub admin_addr: SocketAddr,
    /// Serve the delta protocol without TLS (instead of mutual TLS with `--xds-cert`, `--xds-key`,
    /// `--xds-ca`).
    #[arg(long)]
    pub xds_plaintext: bool,
    /// The GatewayClass controllerName to own.
    #[arg(long, default_value = serval_common::CONTROLLER_NAME)]
    pub controller_name: String,
    /// The proxy fleet's Service: Gateways without `spec.addresses` report its load-balancer
    /// ingress (or cluster IP) in `status.addresses`.
    #[arg(long, env = "SERVAL_PROXY_SERVICE", value_name = "NAMESPACE/NAME")]
    pub proxy_service: Option<String>,
    /// The control plane's own namespace (where its leader Lease lives); default: the in-cluster
    /// ServiceAccount's namespace, else `serval-system`.
    #[arg(long, env = "POD_NAMESPACE")]
    pub namespace: Option<String>,
    /// This replica's identity in the Lease; default: the host name with a random suffix.
    #[arg(long, env = "POD_NAME")]
    pub identity: Option<String>,
    /// Name of the leader-election Lease.
    #[arg(long, default_value = "serval-control-plane")]
    pub lease_name: String,
    /// How long the Lease holds without renewal (e.g. `15s`, `1500ms`).
    #[arg(long, default_value = "15s", value_parser = parse_duration)]
    pub lease_duration: Duration,
    /// A leader that could not renew for this long stops writing status.
    #[arg(long, default_value = "10s", value_parser = parse_duration)]
    pub lease_renew_deadline: Duration,
    /// How often the Lease is acquired or renewed.
    #[arg(long, default_value = "2s", value_parser = parse_duration)]
    pub lease_retry_period: Duration,
    /// Quiet time after a change before translating, in milliseconds.
    #[arg(long, default_value = "100")]
    pub debounce_ms: u64,
    /// Longest a translation waits while changes keep arriving, in milliseconds.
    #[arg(long, default_value = "1000")]
    pub max_delay_ms: u64,
    /// Sustained status writes per second.
    #[arg(long, default_value = "50")]
    pub status_qps: f64,
    /// Status writes allowed in a burst.
    #[arg(long, default_value = "100")]
    pub status_burst: u32,
    /// Status writes in flight at once.
    #[arg(long, default_value = "4")]
    pub status_concurrency: usize,
    /// Timeout of one status write (e.g. `10s`).
    #[arg(long, default_value = "10s", value_parser = parse_duration)]
    pub status_timeout: Duration,
    /// Delta server limits.
    #[command(flatten)]
    pub xds: XdsArgs,
}

/// Delta server limits, the same in both modes.
#[derive(Debug, clap::Args)]
pub struct XdsArgs {
    /// HTTP/2 keepalive: PING each proxy connection this often (e.g. `5s`).
    #[arg(long, default_value = "5s", value_parser = parse_duration)]
    pub xds_keepalive_interval: Duration,
    /// Close a proxy connection whose PING is not answered within this (e.g. `5s`).
    #[arg(long, default_value = "5s", value_parser = parse_duration)]
    pub xds_keepalive_timeout: Duration,
    /// Largest delta message accepted or sent, in bytes.
    #[arg(long, default_value = "67108864")]
    pub xds_max_message_bytes: usize,
    /// PEM certificate the delta server presents (mutual TLS).
    #[arg(long, env = "SERVAL_XDS_CERT")]
    pub xds_cert: Option<PathBuf>,
    /// PEM private key of `--xds-cert`.
    #[arg(long, env = "SERVAL_XDS_KEY")]
    pub xds_key: Option<PathBuf>,
    /// PEM CA certificate proxies' client certificates must chain to.
    #[arg(long, env = "SERVAL_XDS_CA")]
    pub xds_ca: Option<PathBuf>,
    /// Delta streams (proxies) served at once; more are refused with RESOURCE_EXHAUSTED.
    #[arg(long, default_value = "20000")]
    pub xds_max_streams: usize,
    /// Delta responses being prepared or waiting to be written at once.
    #[arg(long, default_value = "64")]
    pub xds_max_concurrent_pushes: usize,
}

impl XdsArgs {
    /// The TLS files: all three or none.
    fn tls(&self) -> Result<Option<TlsFiles>, ArgsError> {
        match (&self.xds_cert, &self.xds_key, &self.xds_ca) {
            (None, None, None) => Ok(None),
            (Some(cert), Some(key), Some(ca)) => Ok(Some(TlsFiles {
                cert: cert.clone(),
                key: key.clone(),
                ca: ca.clone(),
            })),
            _ => Err(ArgsError::XdsTls),
        }
    }

    fn limits(&self) -> Result<Limits, ArgsError> {
        if self.xds_keepalive_interval.is_zero()
            || self.xds_keepalive_timeout.is_zero()
            || self.xds_max_message_bytes < 1024
            || self.xds_max_streams == 0
            || self.xds_max_concurrent_pushes == 0
        {
            return Err(ArgsError::XdsLimits);
        }
        Ok(Limits {
            keepalive_interval: self.xds_keepalive_interval,
            keepalive_timeout: self.xds_keepalive_timeout,
            max_message_size: self.xds_max_message_bytes,
            max_streams: self.xds_max_streams,
            max_concurrent_pushes: self.xds_max_concurrent_pushes,
            ..Limits::default()
        })
    }
}

/// Parses `1500ms`, `15s` or `2m`.
fn parse_duration(text: &str) -> Result<Duration, String> {
    let (number, unit) = text
        .find(|c: char| !c.is_ascii_digit())
        .map_or((text, ""), |i| text.split_at(i));
    let n: u64 = number
        .parse()
        .map_err(|_| format!("{text:?}: expected a number with ms, s or m"))?;
    match unit {
        "ms" => Ok(Duration::from_millis(n)),
        "s" => Ok(Duration::from_secs(n)),
        "m" => n
            .checked_mul(60)
            .map(Duration::from_secs)
            .ok_or_else(|| format!("{text:?}: too long")),
        _ => Err(format!("{text:?}: expected a number with ms, s or m")),
    }
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
    /// The in-process proxy's access log on stdout: one JSON line per request, or `off`.
    #[arg(long, value_enum, default_value_t)]
    pub access_log: serval_proxy::access_log::Format,
    /// The in-process proxy's traces (OTLP export, sampling).
    #[command(flatten)]
    pub traces: serval_common::traces::TraceArgs,
    /// Serve the delta protocol without TLS on a non-loopback `--xds-addr` (a loopback address
    /// implies it unless TLS files are given; the in-process proxy always connects over loopback).
    #[arg(long)]
    pub xds_plaintext: bool,
    /// Quiet time after a file change before reloading, in milliseconds.
    #[arg(long, default_value = "100")]
    pub debounce_ms: u64,
    /// Longest a reload waits while changes keep arriving, in milliseconds.
    #[arg(long, default_value = "1000")]
    pub max_delay_ms: u64,
    /// The GatewayClass controllerName to own.
    #[arg(long, default_value = serval_common::CONTROLLER_NAME)]
    pub controller_name: String,
    /// Delta server limits.
    #[command(flatten)]
    pub xds: XdsArgs,
}

/// A command-line value is invalid.
#[derive(Debug, thiserror::Error)]
pub enum ArgsError {
    /// The config folder is not a folder.
    #[error("--config-dir {0}: not a readable directory")]
    ConfigDir(PathBuf),
    /// Neither plaintext nor the three TLS files.
    #[error(
        "the delta protocol runs over mutual TLS: pass --xds-cert, --xds-key and --xds-ca (see `serval-control-plane certgen`), or --xds-plaintext"
    )]
    XdsTls,
    /// `--proxy-service` is not `NAMESPACE/NAME`.
    #[error("--proxy-service {0:?}: expected NAMESPACE/NAME")]
    ProxyService(String),
    /// The Lease timings cannot work.
    #[error(
        "lease timings: need --lease-duration ({duration:?}) >= 1s and --lease-renew-deadline ({renew:?}) + 2 x --lease-retry-period ({retry:?}) <= --lease-duration"
    )]
    Lease {
        /// `--lease-duration`.
        duration: Duration,
        /// `--lease-renew-deadline`.
        renew: Duration,
        /// `--lease-retry-period`.
        retry: Duration,
    },
    /// A status writer setting is out of range.
    #[error("--status-qps and --status-concurrency must be positive")]
    StatusWriter,
    /// A delta server limit is out of range.
    #[error(
        "--xds-keepalive-interval, --xds-keepalive-timeout, --xds-max-streams and --xds-max-concurrent-pushes must be positive, --xds-max-message-bytes at least 1024"
    )]
    XdsLimits,
}

const SERVICE_ACCOUNT_NAMESPACE: &str = "/var/run/secrets/kubernetes.io/serviceaccount/namespace";

impl TryFrom<KubernetesArgs> for kubernetes::Config {
    type Error = ArgsError;

    fn try_from(args: KubernetesArgs) -> Result<Self, ArgsError> {
        let tls = args.xds.tls()?;
        if tls.is_none() && !args.xds_plaintext {
            return Err(ArgsError::XdsTls);
        }
        let proxy_service = args
            .proxy_service
            .map(|s| match s.split_once('/') {
                Some((ns, name)) if !ns.is_empty() && !name.is_empty() && !name.contains('/') => {
                    Ok((ns.to_owned(), name.to_owned()))
                }
                _ => Err(ArgsError::ProxyService(s)),
            })
            .transpose()?;
        // A leader notices a failed renewal at most two retry periods late (one attempt times
        // out after a retry period, then it sleeps one), and must have stopped writing before the
        // Lease can expire for the others.
        let latest_stop = args
            .lease_retry_period
            .checked_mul(2)
            .and_then(|r| r.checked_add(args.lease_renew_deadline));
        if args.lease_duration < Duration::from_secs(1)
            || args.lease_retry_period.is_zero()
            || latest_stop.is_none_or(|stop| stop > args.lease_duration)
        {
            return Err(ArgsError::Lease {
                duration: args.lease_duration,
                renew: args.lease_renew_deadline,
                retry: args.lease_retry_period,
            });
        }
        if args.status_qps.is_nan() || args.status_qps <= 0.0 || args.status_concurrency == 0 {
            return Err(ArgsError::StatusWriter);
        }
        let namespace = args
            .namespace
            .filter(|n| !n.is_empty())
            .or_else(|| {
                std::fs::read_to_string(SERVICE_ACCOUNT_NAMESPACE)
                    .ok()
                    .map(|n| n.trim().to_owned())
            })
            .unwrap_or_else(|| "serval-system".to_owned());
        let identity = args
            .identity
            .filter(|i| !i.is_empty())
            .unwrap_or_else(default_identity);
        Ok(kubernetes::Config {
            traces: args.traces,
            xds_limits: args.xds.limits()?,
            xds_tls: tls,
            kubeconfig: args.kubeconfig,
            xds_addr: args.xds_addr,
            admin_addr: args.admin_addr,
            controller_name: args.controller_name.clone(),
            proxy_service,
            timing: Timing {
                debounce: Duration::from_millis(args.debounce_ms),
                max_delay: Duration::from_millis(args.max_delay_ms.max(args.debounce_ms)),
                ..Timing::default()
            },
            lease: leader::Settings {
                namespace,
                name: args.lease_name,
                identity,
                lease_duration: args.lease_duration,
                renew_deadline: args.lease_renew_deadline,
                retry_period: args.lease_retry_period,
            },
            status: status_writer::Settings {
                controller_name: args.controller_name,
                qps: args.status_qps,
                burst: args.status_burst,
                timeout: args.status_timeout,
                concurrency: args.status_concurrency,
            },
        })
    }
}

/// The host name with a random suffix, so two replicas on one host differ.
fn default_identity() -> String {
    let host = std::env::var("HOSTNAME")
        .ok()
        .or_else(|| std::fs::read_to_string("/etc/hostname").ok())
        .map(|h| h.trim().to_owned())
        .filter(|h| !h.is_empty())
        .unwrap_or_else(|| "serval-control-plane".to_owned());
    format!("{host}-{:08x}", fastrand::u32(..))
}

impl TryFrom<StandaloneArgs> for standalone::Config {
    type Error = ArgsError;

    fn try_from(args: StandaloneArgs) -> Result<Self, ArgsError> {
        if !args.config_dir.is_dir() {
            return Err(ArgsError::ConfigDir(args.config_dir));
        }
        let tls = args.xds.tls()?;
        if tls.is_none() && !args.xds_plaintext && !args.xds_addr.ip().is_loopback() {
            return Err(ArgsError::XdsTls);
        }
        Ok(standalone::Config {
            xds_limits: args.xds.limits()?,
            xds_tls: tls,
            config_dir: args.config_dir,
            xds_addr: args.xds_addr,
            admin_addr: args.admin_addr,
            proxy_admin_addr: args.proxy_admin_addr,
            run_proxy: !args.no_proxy,
            access_log: args.access_log,
            traces: args.traces,
            timing: Timing {
                debounce: Duration::from_millis(args.debounce_ms),
                max_delay: Duration::from_millis(args.max_delay_ms.max(args.debounce_ms)),
                ..Timing::default()
            },
            controller_name: args.controller_name,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn kubernetes(extra: &[&str]) -> Result<kubernetes::Config, String> {
        let mut argv = vec!["serval-control-plane", "kubernetes"];
        argv.extend_from_slice(extra);
        let args = Args::try_parse_from(argv).map_err(|e| e.to_string())?;
        match args.command {
            Command::Kubernetes(a) => kubernetes::Config::try_from(a).map_err(|e| e.to_string()),
            _ => Err("another command".to_owned()),
        }
    }

    #[test]
    fn durations_parse() {
        assert_eq!(parse_duration("1500ms"), Ok(Duration::from_millis(1500)));
        assert_eq!(parse_duration("15s"), Ok(Duration::from_secs(15)));
        assert_eq!(parse_duration("2m"), Ok(Duration::from_secs(120)));
        assert!(parse_duration("15").is_err());
        assert!(parse_duration("s").is_err());
        assert!(parse_duration("1h").is_err());
    }

    #[test]
    fn kubernetes_needs_plaintext_acknowledged() {
        let error = kubernetes(&[]).expect_err("neither TLS nor plaintext");
        assert!(
            error.contains("--xds-plaintext") && error.contains("--xds-cert"),
            "{error}"
        );
        let error = kubernetes(&["--xds-cert", "c.pem"]).expect_err("one TLS file only");
        assert!(error.contains("--xds-ca"), "{error}");
        let config = kubernetes(&[
            "--xds-cert",
            "c.pem",
            "--xds-key",
            "k.pem",
            "--xds-ca",
            "ca.pem",
            "--namespace",
            "ns",
        ])
        .expect("TLS");
        assert_eq!(config.xds_tls.map(|t| t.ca), Some(PathBuf::from("ca.pem")));
        let config = kubernetes(&["--xds-plaintext", "--namespace", "ns", "--identity", "me"])
            .expect("valid");
        assert_eq!(config.lease.namespace, "ns");
        assert_eq!(config.lease.identity, "me");
        assert_eq!(config.lease.lease_duration, Duration::from_secs(15));
    }

    #[test]
    fn lease_timings_that_would_let_two_leaders_overlap_are_refused() {
        let base = ["--xds-plaintext", "--namespace", "ns", "--identity", "me"];
        let with = |extra: &[&str]| {
            let mut all = base.to_vec();
            all.extend_from_slice(extra);
            kubernetes(&all)
        };
        assert!(with(&["--lease-duration", "15s", "--lease-renew-deadline", "14s"]).is_err());
        assert!(
            with(&[
                "--lease-duration",
                "900ms",
                "--lease-renew-deadline",
                "300ms",
                "--lease-retry-period",
                "100ms"
            ])
            .is_err()
        );
        assert!(with(&["--lease-retry-period", "0ms"]).is_err());
        assert!(
            with(&[
                "--lease-duration",
                "2s",
                "--lease-renew-deadline",
                "1500ms",
                "--lease-retry-period",
                "200ms"
            ])
            .is_ok()
        );
    }

    #[test]
    fn proxy_service_is_namespace_slash_name() {
        let base = ["--xds-plaintext", "--namespace", "ns", "--identity", "me"];
        let mut bad = base.to_vec();
        bad.extend_from_slice(&["--proxy-service", "serval-proxy"]);
        assert!(kubernetes(&bad).is_err());
        let mut good = base.to_vec();
        good.extend_from_slice(&["--proxy-service", "serval-system/serval-proxy"]);
        assert_eq!(
            kubernetes(&good).expect("valid").proxy_service,
            Some(("serval-system".to_owned(), "serval-proxy".to_owned()))
        );
    }
}
