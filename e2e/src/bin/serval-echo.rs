//! `serval-echo`: the echo backend as a process (HTTP/1.1 and h2c on one port).

use clap::Parser;
use serval_e2e::echo::{self, Identity};
use std::net::SocketAddr;

/// Echo backend for tests and the quickstart.
#[derive(Debug, Parser)]
#[command(name = "serval-echo")]
struct Args {
    /// Address to listen on.
    #[arg(long, default_value = "127.0.0.1:3000")]
    listen: SocketAddr,
    /// Namespace to report.
    #[arg(long, default_value = "default")]
    namespace: String,
    /// Service to report.
    #[arg(long, default_value = "")]
    service: String,
    /// Pod to report.
    #[arg(long, default_value = "")]
    pod: String,
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let listener = tokio::net::TcpListener::bind(args.listen).await?;
    eprintln!("serval-echo listening on {}", listener.local_addr()?);
    echo::serve(
        listener,
        Identity {
            namespace: args.namespace,
            service: args.service,
            pod: args.pod,
        },
    )
    .await;
    Ok(())
}
