//! `serval-proxy`: parse the command line, set up logging, run until SIGINT/SIGTERM.

use clap::Parser;
use serval_proxy::{ProxyConfig, args::Args};

// mimalloc: applying a configuration of thousands of routes is allocation-heavy; with glibc's
// allocator a third of the apply time went to malloc and free (see BENCHMARKS.md).
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    serval_common::telemetry::init_logging(args.log_format);
    let config = ProxyConfig::try_from(args)?;
    let (trigger, watch) = serval_common::shutdown::channel();
    tokio::spawn(async move {
        serval_common::shutdown::signal().await;
        tracing::info!("shutting down");
        trigger.fire();
    });
    serval_proxy::run(config, watch).await
}
