//! Which statuses to write: the computed status (with other controllers' route parents taken from
//! the observed object) where it differs from what the API server holds and was not just written.

use super::{
    Round, Written,
    observed::{StatusKey, normalize},
};
use crate::sources::kubernetes::kinds;
use serde_json::{Map, Value};
use std::{collections::BTreeMap, fmt};

/// One status patch.
#[derive(Clone, Debug, PartialEq)]
pub struct Write {
    /// The object.
    pub key: StatusKey,
    /// The resourceVersion the write is based on (its precondition).
    pub resource_version: String,
    /// The complete status to hold afterwards (normal form).
    pub status: Value,
    /// The status the API server held (normal form), to clear keys the new status lacks.
    pub previous: Value,
}

impl Write {
    /// The JSON merge patch: the resourceVersion precondition and the status, with `null` for
    /// top-level status keys to remove (merge patches replace arrays whole and keep absent keys).
    pub fn body(&self) -> Value {
        let mut status = self.status.as_object().cloned().unwrap_or_default();
        if let Some(previous) = self.previous.as_object() {
            for key in previous.keys() {
                status.entry(key.clone()).or_insert(Value::Null);
            }
        }
        serde_json::json!({
            "metadata": {"resourceVersion": self.resource_version},
            "status": status,
        })
    }
}

impl fmt::Display for Write {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{} at resourceVersion {}",
            self.key, self.resource_version
        )
    }
}

/// The writes of one round, and how many statuses needed none.
#[derive(Debug, Default)]
pub struct Plan {
    /// Statuses to write.
    pub writes: Vec<Write>,
    /// Statuses skipped: the API server already holds them (or holds our write's base and we
    /// wrote them a moment ago).
    pub unchanged: u64,
}

const ROUTE_KINDS: &[&str] = &["HTTPRoute", "GRPCRoute", "TCPRoute", "UDPRoute", "TLSRoute"];

/// Plans the writes of `round`.
pub fn plan(round: &Round, written: &BTreeMap<StatusKey, Written>, controller: &str) -> Plan {
    let mut plan = Plan::default();
    let mut desired_keys = BTreeMap::new();
    for desired in round.desired.iter() {
        if !kinds::by_name(&desired.kind).is_some_and(|k| k.writes_status) {
            continue;
        }
        let key = StatusKey {
            kind: desired.kind.clone(),
            namespace: desired.metadata.namespace.clone().unwrap_or_default(),
            name: desired.metadata.name.clone(),
        };
        desired_keys.insert(key.clone(), ());
        let Some(observed) = round.observed.get(&key) else {
            continue; // not (or no longer) in the API server
        };
        let mut status = desired.status.clone();
        if ROUTE_KINDS.contains(&key.kind.as_str()) {
            status = with_parents(&observed.status, Some(&status), controller);
        }
        consider(
            &mut plan,
            written,
            key,
            observed,
            normalize(&desired.kind, &status),
        );
    }
    // Routes that still carry entries of ours but no longer reference a Gateway of ours.
    for (key, observed) in round.observed.iter() {
        if !ROUTE_KINDS.contains(&key.kind.as_str()) || desired_keys.contains_key(key) {
            continue;
        }
        if ours(&observed.status, controller).is_empty() {
            continue;
        }
        let status = with_parents(&observed.status, None, controller);
        consider(
            &mut plan,
            written,
            key.clone(),
            observed,
            normalize(&key.kind, &status),
        );
    }
    plan
}

fn consider(
    plan: &mut Plan,
    written: &BTreeMap<StatusKey, Written>,
    key: StatusKey,
    observed: &super::Observed,
    status: Value,
) {
    if status == observed.status {
        plan.unchanged += 1;
        return;
    }
    if written
        .get(&key)
        .is_some_and(|w| w.based_on == observed.resource_version && w.status == status)
    {
        plan.unchanged += 1; // written; the watch has not shown it yet
        return;
    }
    plan.writes.push(Write {
        key,
        resource_version: observed.resource_version.clone(),
        status,
        previous: observed.status.clone(),
    });
}

/// `desired` (or an empty status) whose `parents` are the observed entries of other controllers,
/// untouched and first, then the desired entries of ours.
fn with_parents(observed: &Value, desired: Option<&Value>, controller: &str) -> Value {
    let mut status: Map<String, Value> = desired
        .and_then(Value::as_object)
        .cloned()
        .unwrap_or_default();
    let mine: Vec<Value> = status
        .get("parents")
        .and_then(Value::as_array)
        .map(|p| {
            p.iter()
                .filter(|e| controller_of(e) == Some(controller))
                .cloned()
                .collect()
        })
        .unwrap_or_default();
    let mut parents: Vec<Value> = observed
        .get("parents")
        .and_then(Value::as_array)
        .map(|p| {
            p.iter()
                .filter(|e| controller_of(e) != Some(controller))
                .cloned()
                .collect()
        })
        .unwrap_or_default();
    parents.extend(mine);
    status.insert("parents".to_owned(), Value::Array(parents));
    Value::Object(status)
}

fn ours<'a>(status: &'a Value, controller: &str) -> Vec<&'a Value> {
    status
        .get("parents")
        .and_then(Value::as_array)
        .map(|p| {
            p.iter()
                .filter(|e| controller_of(e) == Some(controller))
                .collect()
        })
        .unwrap_or_default()
}

fn controller_of(entry: &Value) -> Option<&str> {
    entry.get("controllerName").and_then(Value::as_str)
}

#[cfg(test)]
mod tests;
