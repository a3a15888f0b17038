//! HTTPRoute rule policies: `timeouts` (GEP-1742) and `retry` (GEP-1731) → `serval.config.v1`
//! `Timeouts` and `RetryPolicy`. Durations use the Gateway API format (GEP-2257), parsed by
//! `gateway_api::Duration`.
//!
//! Only conversion and validation; the proxy enforces them.

use gateway_api::experimental::httproutes::{HttpRouteRulesRetry, HttpRouteRulesTimeouts};
use serval_common::proto::config::v1 as pb;
use std::time::Duration;

/// Retries allowed when `retry` is set without `attempts`.
pub(super) const DEFAULT_RETRY_ATTEMPTS: u32 = 1;
/// Wait before the first retry when `retry.backoff` is not set.
pub(super) const DEFAULT_RETRY_BACKOFF: Duration = Duration::from_millis(25);
/// At most this many retries, however many are asked for.
pub(super) const MAX_RETRY_ATTEMPTS: i64 = 10;

fn parse(at: &str, value: &str) -> Result<Duration, String> {
    value
        .parse::<gateway_api::Duration>()
        .map(|d| Duration::from_nanos(u64::try_from(d.as_nanos()).unwrap_or(u64::MAX)))
        .map_err(|e| format!("{at}: {value:?} is not a Gateway API duration: {e}"))
}

fn to_pb(d: Duration) -> pbjson_types::Duration {
    pbjson_types::Duration {
        seconds: i64::try_from(d.as_secs()).unwrap_or(i64::MAX),
        nanos: i32::try_from(d.subsec_nanos()).unwrap_or(0),
    }
}

/// `spec.rules[i].timeouts`; a zero duration disables that timeout.
pub(super) fn timeouts(
    i: usize,
    t: Option<&HttpRouteRulesTimeouts>,
) -> Result<Option<pb::Timeouts>, String> {
    let Some(t) = t else { return Ok(None) };
    let at = format!("spec.rules[{i}].timeouts");
    let request = t
        .request
        .as_deref()
        .map(|v| parse(&format!("{at}.request"), v))
        .transpose()?
        .filter(|d| !d.is_zero());
    let backend = t
        .backend_request
        .as_deref()
        .map(|v| parse(&format!("{at}.backendRequest"), v))
        .transpose()?
        .filter(|d| !d.is_zero());
    if let (Some(r), Some(b)) = (request, backend)
        && b > r
    {
        return Err(format!(
            "{at}.backendRequest ({b:?}) must not be longer than request ({r:?})"
        ));
    }
    if request.is_none() && backend.is_none() {
        return Ok(None);
    }
    Ok(Some(pb::Timeouts {
        request: request.map(to_pb),
        backend_request: backend.map(to_pb),
    }))
}

/// `spec.rules[i].retry`.
pub(super) fn retry(
    i: usize,
    r: Option<&HttpRouteRulesRetry>,
) -> Result<Option<pb::RetryPolicy>, String> {
    let Some(r) = r else { return Ok(None) };
    let at = format!("spec.rules[{i}].retry");
    let attempts = match r.attempts {
        None => DEFAULT_RETRY_ATTEMPTS,
        Some(a) if a < 0 => return Err(format!("{at}.attempts: {a} must not be negative")),
        Some(a) => u32::try_from(a.min(MAX_RETRY_ATTEMPTS)).unwrap_or(0),
    };
    let mut codes = Vec::new();
    for (j, c) in r.codes.iter().flatten().enumerate() {
        let code = u32::try_from(*c)
            .ok()
            .filter(|c| (400..=599).contains(c))
            .ok_or_else(|| format!("{at}.codes[{j}]: {c} is not a status code from 400 to 599"))?;
        if !codes.contains(&code) {
            codes.push(code);
        }
    }
    codes.sort_unstable();
    let backoff = r
        .backoff
        .as_deref()
        .map(|v| parse(&format!("{at}.backoff"), v))
        .transpose()?
        .unwrap_or(DEFAULT_RETRY_BACKOFF);
    if attempts == 0 {
        return Ok(None);
    }
    Ok(Some(pb::RetryPolicy {
        codes,
        attempts,
        backoff: Some(to_pb(backoff)),
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_follow_gep_2257() {
        assert_eq!(parse("x", "500ms"), Ok(Duration::from_millis(500)));
        assert_eq!(parse("x", "1h2m3s"), Ok(Duration::from_secs(3723)));
        assert!(parse("x", "1.5s").is_err());
        assert!(parse("x", "-1s").is_err());
    }

    #[test]
    fn backend_timeout_longer_than_request_timeout_is_rejected() {
        let t = HttpRouteRulesTimeouts {
            request: Some("1s".into()),
            backend_request: Some("2s".into()),
        };
        assert!(timeouts(0, Some(&t)).is_err());
        let t = HttpRouteRulesTimeouts {
            request: Some("0s".into()),
            backend_request: Some("0s".into()),
        };
        assert_eq!(timeouts(0, Some(&t)), Ok(None));
    }
}
