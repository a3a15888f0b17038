//! `serval-control-plane`: turn transparent huge pages off (`serval_common::memory`), start the
//! runtime, parse the command line, set up logging, run until SIGINT/SIGTERM.

use clap::Parser;
use serval_control_plane::{
    args::{Args, Command},
    certgen, kubernetes, proxy_status, standalone,
};

// mimalloc: translating thousands of routes is allocation-heavy, and glibc's allocator made it
// about twice as slow (see BENCHMARKS.md).
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> anyhow::Result<()> {
    // Before the runtime's threads exist and allocate (see serval_common::memory).
    let huge_pages = serval_common::memory::apply_defaults();
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?
        .block_on(run(huge_pages))
}

async fn run(huge_pages: serval_common::memory::HugePages) -> anyhow::Result<()> {
    let args = Args::parse();
    serval_common::telemetry::init_logging(args.log_format);
    serval_common::memory::log(&huge_pages);
    let (trigger, watch) = serval_common::shutdown::channel();
    tokio::spawn(async move {
        serval_common::shutdown::signal().await;
        tracing::info!("shutting down");
        trigger.fire();
    });
    match args.command {
        Command::Standalone(a) => standalone::run(standalone::Config::try_from(a)?, watch).await,
        Command::Kubernetes(a) => kubernetes::run(kubernetes::Config::try_from(a)?, watch).await,
        Command::ProxyStatus(a) => {
            let connector = a.connector().map_err(anyhow::Error::msg)?;
            let text = proxy_status::run(&connector, a.node_id.as_deref(), a.output).await?;
            print!("{text}");
            Ok(())
        }
        Command::Certgen(a) => {
            let written = certgen::run(&a.into())?;
            for file in &written.files {
                println!("wrote {}", file.display());
            }
            if !written.new_ca {
                println!("(the existing CA was reused)");
            }
            Ok(())
        }
    }
}
