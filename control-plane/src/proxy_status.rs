//! `serval-control-plane proxy-status`: the fleet as one control plane sees it, as a table (like
//! `istioctl proxy-status`) or JSON, from the `serval.admin.v1` service on the delta port; with a
//! node id, the resources that proxy holds.
//!
//! Only a client: it formats what `ListProxies` and `GetProxyConfig` return.

use serval_common::proto::admin::v1::{
    GetProxyConfigRequest, ListProxiesRequest, ProxyStatus, SyncState,
    admin_service_client::AdminServiceClient,
};
use serval_proxy::xds::tls::Connector;
use std::{fmt::Write, time::Duration};
use tonic::transport::Endpoint;

/// Output format.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, clap::ValueEnum)]
pub enum Output {
    /// Aligned columns.
    #[default]
    Table,
    /// The service's answer as proto3 JSON.
    Json,
}

/// Connects through `connector`, asks, and returns the text to print.
pub async fn run(
    connector: &Connector,
    node: Option<&str>,
    output: Output,
) -> anyhow::Result<String> {
    let endpoint = Endpoint::from_shared(connector.endpoint_uri())?
        .connect_timeout(Duration::from_secs(5))
        .timeout(Duration::from_secs(30));
    let channel = connector.connect(endpoint).await?;
    let mut client = AdminServiceClient::new(channel).max_decoding_message_size(256 << 20);
    let now = std::time::SystemTime::now();
    match node {
        None => {
            let list = client
                .list_proxies(ListProxiesRequest {})
                .await?
                .into_inner();
            Ok(match output {
                Output::Json => serde_json::to_string_pretty(&list)? + "\n",
                Output::Table => table(&list.proxies, now),
            })
        }
        Some(node_id) => {
            let config = client
                .get_proxy_config(GetProxyConfigRequest {
                    node_id: node_id.to_owned(),
                })
                .await?
                .into_inner();
            Ok(match output {
                Output::Json => serde_json::to_string_pretty(&config)? + "\n",
                Output::Table => {
                    let mut out = config
                        .proxy
                        .as_ref()
                        .map(|p| table(std::slice::from_ref(p), now))
                        .unwrap_or_default();
                    out.push('\n');
                    let rows: Vec<Vec<String>> = config
                        .resources
                        .iter()
                        .map(|r| {
                            vec![
                                r.name.clone(),
                                r.version.clone(),
                                r.resource
                                    .as_ref()
                                    .map(|a| a.type_url.rsplit('.').next().unwrap_or("").to_owned())
                                    .unwrap_or_else(|| "(not yet acknowledged)".to_owned()),
                            ]
                        })
                        .collect();
                    out.push_str(&columns(&["RESOURCE", "VERSION", "TYPE"], &rows));
                    out
                }
            })
        }
    }
}

/// The fleet table.
pub fn table(proxies: &[ProxyStatus], now: std::time::SystemTime) -> String {
    let short = |v: &str| v.chars().take(12).collect::<String>();
    let rows: Vec<Vec<String>> = proxies
        .iter()
        .map(|p| {
            let since = p.connected_since.map_or_else(String::new, |t| {
                let at =
                    std::time::UNIX_EPOCH + Duration::new(u64::try_from(t.seconds).unwrap_or(0), 0);
                age(now.duration_since(at).unwrap_or_default())
            });
            let state = match SyncState::try_from(p.state).unwrap_or(SyncState::Unspecified) {
                SyncState::Synced => "SYNCED",
                SyncState::Stale => "STALE",
                SyncState::Nacked => "NACKED",
                SyncState::Unspecified => "PENDING",
            };
            vec![
                p.node_id.clone(),
                if p.gateways.is_empty() {
                    "(all)".to_owned()
                } else {
                    p.gateways.join(",")
                },
                p.address.clone(),
                since,
                state.to_owned(),
                short(&p.acked_version),
                short(&p.latest_version),
                p.resource_count.to_string(),
                p.last_error.replace('\n', " "),
            ]
        })
        .collect();
    columns(
        &[
            "NODE",
            "GATEWAYS",
            "ADDRESS",
            "CONNECTED",
            "STATE",
            "ACKED",
            "LATEST",
            "RESOURCES",
            "LAST NACK",
        ],
        &rows,
    )
}

fn age(d: Duration) -> String {
    let s = d.as_secs();
    match s {
        0..60 => format!("{s}s"),
        60..3600 => format!("{}m{}s", s / 60, s % 60),
        3600..86_400 => format!("{}h{}m", s / 3600, (s % 3600) / 60),
        _ => format!("{}d{}h", s / 86_400, (s % 86_400) / 3600),
    }
}

fn columns(header: &[&str], rows: &[Vec<String>]) -> String {
    let mut widths: Vec<usize> = header.iter().map(|h| h.len()).collect();
    for row in rows {
        for (w, cell) in widths.iter_mut().zip(row) {
            *w = (*w).max(cell.chars().count());
        }
    }
    let mut out = String::new();
    let mut line = |cells: Vec<&str>| {
        let last = cells.len().saturating_sub(1);
        for (i, (cell, w)) in cells.iter().zip(&widths).enumerate() {
            if i == last {
                let _ = write!(out, "{cell}");
            } else {
                let _ = write!(out, "{cell:<w$}  ");
            }
        }
        out.truncate(out.trim_end().len());
        out.push('\n');
    };
    line(header.to_vec());
    for row in rows {
        line(row.iter().map(String::as_str).collect());
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_table_has_one_aligned_row_per_proxy() {
        let now = std::time::UNIX_EPOCH + Duration::from_secs(1_000);
        let proxies = vec![ProxyStatus {
            node_id: "p1".into(),
            gateways: vec!["ns/a".into()],
            address: "127.0.0.1:5000".into(),
            connected_since: Some(pbjson_types::Timestamp {
                seconds: 875,
                nanos: 0,
            }),
            state: SyncState::Nacked.into(),
            acked_version: "0123456789abcdef".into(),
            latest_version: "fedcba9876543210".into(),
            resource_count: 5,
            last_error: "bad\\nregex".into(),
            ..Default::default()
        }];
        let text = table(&proxies, now);
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines.len(), 2, "{text}");
        assert!(lines[0].starts_with("NODE  GATEWAYS  ADDRESS"), "{text}");
        for cell in [
            "p1",
            "ns/a",
            "2m5s",
            "NACKED",
            "0123456789ab",
            "fedcba987654",
            "5",
        ] {
            assert!(lines[1].contains(cell), "{cell} in {text}");
        }
    }
}
