//! `serval-proxy`: turn transparent huge pages off (`serval_common::memory`), parse the command
//! line, set up logging, start the runtime (`--worker-threads`), run until SIGINT/SIGTERM.

use clap::Parser;
use serval_proxy::{ProxyConfig, args::Args};

// mimalloc: applying a configuration of thousands of routes is allocation-heavy; with glibc's
// allocator a third of the apply time went to malloc and free (see BENCHMARKS.md).
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> anyhow::Result<()> {
    // Before the runtime's threads exist and allocate (see serval_common::memory).
    let huge_pages = serval_common::memory::apply_defaults();
    let args = Args::parse();
    let mut runtime = tokio::runtime::Builder::new_multi_thread();
    runtime.enable_all();
    if let Some(threads) = args.worker_threads {
        runtime.worker_threads(usize::from(threads));
    }
    // Spawned, not run by `block_on` itself: `block_on` polls its future on this (main) thread,
    // so every message of the delta stream would need a wake-up of a thread outside the
    // workers that read the socket, one more context switch per configuration change.
    runtime
        .build()?
        .block_on(async { tokio::spawn(run(args, huge_pages)).await? })
}

async fn run(args: Args, huge_pages: serval_common::memory::HugePages) -> anyhow::Result<()> {
    serval_common::telemetry::init_logging(args.log_format);
    serval_common::memory::log(&huge_pages);
    let config = ProxyConfig::try_from(args)?;
    let (trigger, watch) = serval_common::shutdown::channel();
    tokio::spawn(async move {
        serval_common::shutdown::signal().await;
        tracing::info!("shutting down");
        trigger.fire();
    });
    serval_proxy::run(config, watch).await
}
