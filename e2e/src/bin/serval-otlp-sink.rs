//! `serval-otlp-sink`: an OTLP/gRPC trace receiver that counts the spans it is sent and drops
//! them, for benchmarks of the tracing overhead. Prints the count once a second when it changed.

use clap::Parser;
use serval_e2e::otlp::OtlpReceiver;
use std::{net::SocketAddr, time::Duration};

/// OTLP/gRPC span counter.
#[derive(Debug, Parser)]
#[command(name = "serval-otlp-sink")]
struct Args {
    /// Address to listen on.
    #[arg(long, default_value = "127.0.0.1:4317")]
    listen: SocketAddr,
}

#[tokio::main]
async fn main() {
    let args = Args::parse();
    let receiver = OtlpReceiver::start_on(args.listen, false).await;
    eprintln!("serval-otlp-sink listening on {}", receiver.addr);
    let mut last = 0;
    loop {
        tokio::time::sleep(Duration::from_secs(1)).await;
        let count = receiver.count();
        if count != last {
            eprintln!("spans received: {count}");
            last = count;
        }
    }
}
