//! Which statuses to write: the computed status (with other controllers' route parents taken from
//! the observed object) where it differs from what the API server holds and was not just written.

use super::{
    Round, Written,
    observed::{Observed, StatusKey, normalize},
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
            continue; // not in the API server, or its newest version does not decode
        };
        let desired_status = normalize(&desired.kind, &desired.status);
        let target = if ROUTE_KINDS.contains(&key.kind.as_str()) {
            with_our_parents(
                &key.kind,
                &observed.status,
                Some(&desired_status),
                controller,
            )
        } else {
            desired_status
        };
        consider(&mut plan, written, key, observed, target);
    }
    // Routes that still carry entries of ours but no longer reference a Gateway of ours.
    for (key, observed) in round.observed.iter() {
        if !ROUTE_KINDS.contains(&key.kind.as_str()) || desired_keys.contains_key(key) {
            continue;
        }
        if !parents(&observed.status)
            .iter()
            .any(|e| controller_of(e) == Some(controller))
        {
            continue;
        }
        let target = with_our_parents(&key.kind, &observed.status, None, controller);
        consider(&mut plan, written, key.clone(), observed, target);
    }
    plan
}

fn consider(
    plan: &mut Plan,
    written: &BTreeMap<StatusKey, Written>,
    key: StatusKey,
    observed: &Observed,
    target: Value,
) {
    if normalize(&key.kind, &target) == normalize(&key.kind, &observed.status) {
        plan.unchanged += 1;
        return;
    }
    if written
        .get(&key)
        .is_some_and(|w| w.based_on == observed.resource_version && w.status == target)
    {
        plan.unchanged += 1; // written; the watch has not shown it yet
        return;
    }
    plan.writes.push(Write {
        key,
        resource_version: observed.resource_version.clone(),
        status: target,
        previous: observed.status.clone(),
    });
}

/// The observed status with only our `parents[]` entries changed: entries of other controllers
/// stay exactly as the API server holds them (fields Serval does not know included) and where
/// they are; each entry of ours is replaced in place by the desired entry for the same
/// `parentRef`, or dropped if there is none; desired entries not yet present are appended.
fn with_our_parents(
    kind: &str,
    observed: &Value,
    desired: Option<&Value>,
    controller: &str,
) -> Value {
    let mut mine: Vec<Option<Value>> = desired
        .map(parents)
        .unwrap_or_default()
        .into_iter()
        .filter(|e| controller_of(e) == Some(controller))
        .map(Some)
        .collect();
    let raw = parents(observed);
    // parentRefs compared in normal form (defaults filled in the same way on both sides).
    let normal = parents(&normalize(kind, observed));
    let keys: Vec<Option<&Value>> = if normal.len() == raw.len() {
        normal.iter().map(|e| e.get("parentRef")).collect()
    } else {
        raw.iter().map(|e| e.get("parentRef")).collect()
    };
    let mut out = Vec::with_capacity(raw.len() + mine.len());
    for (entry, key) in raw.iter().zip(keys) {
        if controller_of(entry) != Some(controller) {
            out.push(entry.clone());
            continue;
        }
        let slot = mine
            .iter_mut()
            .find(|m| m.as_ref().is_some_and(|m| m.get("parentRef") == key));
        if let Some(replacement) = slot.and_then(Option::take) {
            out.push(replacement);
        }
    }
    out.extend(mine.into_iter().flatten());
    let mut status: Map<String, Value> = observed.as_object().cloned().unwrap_or_default();
    status.insert("parents".to_owned(), Value::Array(out));
    Value::Object(status)
}

fn parents(status: &Value) -> Vec<Value> {
    status
        .get("parents")
        .and_then(Value::as_array)
        .cloned()
        .unwrap_or_default()
}

fn controller_of(entry: &Value) -> Option<&str> {
    entry.get("controllerName").and_then(Value::as_str)
}

#[cfg(test)]
mod tests;
