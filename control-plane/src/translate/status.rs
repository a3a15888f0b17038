//! Status values as the control plane computes them: [`Condition`]s with the Gateway API's type and
//! reason constants, and [`ObjectStatus`], the `{apiVersion, kind, metadata, status}` entry that
//! `GET /status` lists and that would be written to Kubernetes.
//!
//! This module builds values only; writing them anywhere is the caller's business.

use serde::Serialize;
use std::{collections::BTreeMap, sync::Arc};

/// Condition types.
pub mod condition {
    /// `Accepted`.
    pub const ACCEPTED: &str = "Accepted";
    /// `Programmed`.
    pub const PROGRAMMED: &str = "Programmed";
    /// `ResolvedRefs`.
    pub const RESOLVED_REFS: &str = "ResolvedRefs";
    /// `Conflicted`.
    pub const CONFLICTED: &str = "Conflicted";
    /// `PartiallyInvalid`: some rules of a route are invalid and answer 500.
    pub const PARTIALLY_INVALID: &str = "PartiallyInvalid";
}

/// Condition reasons.
pub mod reason {
    /// The object is accepted.
    pub const ACCEPTED: &str = "Accepted";
    /// The object is programmed into the data plane.
    pub const PROGRAMMED: &str = "Programmed";
    /// Every reference resolved.
    pub const RESOLVED_REFS: &str = "ResolvedRefs";
    /// No conflicts.
    pub const NO_CONFLICTS: &str = "NoConflicts";
    /// Generic invalid.
    pub const INVALID: &str = "Invalid";
    /// Some listeners are invalid.
    pub const LISTENERS_NOT_VALID: &str = "ListenersNotValid";
    /// The Gateway's address type is not supported.
    pub const UNSUPPORTED_ADDRESS: &str = "UnsupportedAddress";
    /// A parametersRef that cannot be resolved.
    pub const INVALID_PARAMETERS: &str = "InvalidParameters";
    /// A Gateway address is not usable.
    pub const ADDRESS_NOT_USABLE: &str = "AddressNotUsable";
    /// The listener protocol is not supported.
    pub const UNSUPPORTED_PROTOCOL: &str = "UnsupportedProtocol";
    /// Two listeners on one port have the same hostname.
    pub const HOSTNAME_CONFLICT: &str = "HostnameConflict";
    /// Two listeners on one port have incompatible protocols.
    pub const PROTOCOL_CONFLICT: &str = "ProtocolConflict";
    /// A listener's allowedRoutes.kinds names a kind it cannot serve.
    pub const INVALID_ROUTE_KINDS: &str = "InvalidRouteKinds";
    /// No parent listener matched the parentRef.
    pub const NO_MATCHING_PARENT: &str = "NoMatchingParent";
    /// A listener matched but its allowedRoutes exclude the route.
    pub const NOT_ALLOWED_BY_LISTENERS: &str = "NotAllowedByListeners";
    /// No listener hostname intersects the route's hostnames.
    pub const NO_MATCHING_LISTENER_HOSTNAME: &str = "NoMatchingListenerHostname";
    /// A backendRef names an unsupported group/kind.
    pub const INVALID_KIND: &str = "InvalidKind";
    /// A backendRef names a missing object.
    pub const BACKEND_NOT_FOUND: &str = "BackendNotFound";
    /// A cross-namespace reference without a ReferenceGrant.
    pub const REF_NOT_PERMITTED: &str = "RefNotPermitted";
    /// A listener's certificateRef names no usable TLS Secret (missing, wrong group or kind,
    /// malformed certificate or key).
    pub const INVALID_CERTIFICATE_REF: &str = "InvalidCertificateRef";
    /// A field has a value this implementation does not support.
    pub const UNSUPPORTED_VALUE: &str = "UnsupportedValue";
    /// A rule combines filters that cannot be used together (RequestRedirect and URLRewrite).
    pub const INCOMPATIBLE_FILTERS: &str = "IncompatibleFilters";
    /// A route lost to an older route of the other kind (HTTPRoute vs GRPCRoute) with an
    /// intersecting hostname on the same listener.
    pub const CONFLICTED: &str = "Conflicted";
}

/// A `metav1.Condition`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Condition {
    /// Condition type.
    #[serde(rename = "type")]
    pub type_: String,
    /// `"True"`, `"False"` or `"Unknown"`.
    pub status: String,
    /// CamelCase reason.
    pub reason: String,
    /// Human-readable detail.
    pub message: String,
    /// RFC 3339 time (from translate's options).
    pub last_transition_time: String,
    /// `metadata.generation` of the object the condition was computed from.
    pub observed_generation: i64,
}

impl Condition {
    /// A condition; `ok` gives `"True"`.
    pub fn new(
        type_: &str,
        ok: bool,
        reason: &str,
        message: impl Into<String>,
        generation: i64,
        now: &str,
    ) -> Self {
        Self {
            type_: type_.to_owned(),
            status: if ok { "True" } else { "False" }.to_owned(),
            reason: reason.to_owned(),
            message: message.into(),
            last_transition_time: now.to_owned(),
            observed_generation: generation,
        }
    }
}

/// `metadata` of a status entry.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct StatusMetadata {
    /// Name.
    pub name: String,
    /// Namespace; absent for cluster-scoped kinds.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub namespace: Option<String>,
    /// `metadata.generation`.
    pub generation: i64,
}

/// One object with the status computed for it.
#[derive(Clone, Debug, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ObjectStatus {
    /// `apiVersion` of the object.
    pub api_version: String,
    /// Kind.
    pub kind: String,
    /// Name, namespace and generation.
    pub metadata: StatusMetadata,
    /// The status subresource as it would be written.
    pub status: serde_json::Value,
}

/// The apiVersion of Gateway API objects.
pub const GATEWAY_API_VERSION: &str = "gateway.networking.k8s.io/v1";

/// Keeps each condition's `lastTransitionTime` from `previous` when its `status` did not change,
/// as Kubernetes does: only a transition moves the time. Conditions are matched by object, then
/// list entries by their key (`parentRef` with `controllerName` for route parents, `name` for
/// listeners, else position), then conditions by `type`.
///
/// A status equal to its previous one becomes that one (shared), so unchanged statuses cost a
/// comparison, not a copy. Both lists must be sorted by kind, namespace, name (as translate
/// produces them).
pub fn carry_transition_times(previous: &[Arc<ObjectStatus>], current: &mut [Arc<ObjectStatus>]) {
    // Both sorted by object (translate's order, and the status writer's observed map's): one
    // merge, comparing names only where the two do not share the status (the common case costs a
    // pointer comparison).
    debug_assert!(previous.is_sorted_by(|a, b| key(a) <= key(b)));
    debug_assert!(current.is_sorted_by(|a, b| key(a) <= key(b)));
    let mut j = 0;
    for object in current.iter_mut() {
        while let Some(old) = previous.get(j) {
            if Arc::ptr_eq(old, object) {
                j += 1;
                break;
            }
            match key(old).cmp(&key(object)) {
                std::cmp::Ordering::Less => j += 1,
                std::cmp::Ordering::Equal => {
                    carry_one(old, object);
                    j += 1;
                    break;
                }
                std::cmp::Ordering::Greater => break,
            }
        }
    }
}

/// What statuses are matched and sorted by: (kind, namespace, name).
fn key(s: &ObjectStatus) -> (&str, Option<&str>, &str) {
    (
        s.kind.as_str(),
        s.metadata.namespace.as_deref(),
        s.metadata.name.as_str(),
    )
}

/// Carries `old`'s times into `object` (the same object's status), sharing `old` when equal.
fn carry_one(old: &Arc<ObjectStatus>, object: &mut Arc<ObjectStatus>) {
    if Arc::ptr_eq(old, object) {
        return;
    }
    if **old != **object {
        carry(&old.status, &mut Arc::make_mut(object).status);
    }
    if **old == **object {
        *object = Arc::clone(old);
    }
}

/// Sets every condition's `lastTransitionTime` to `now`; [`carry_transition_times`] then restores
/// the times of conditions that did not change. For statuses computed earlier and published again.
pub fn restamp(statuses: &mut [Arc<ObjectStatus>], now: &str) {
    fn walk(value: &mut serde_json::Value, now: &str) {
        match value {
            serde_json::Value::Object(map) => {
                for (key, v) in map.iter_mut() {
                    if key == "conditions" {
                        for c in v.as_array_mut().into_iter().flatten() {
                            if let Some(obj) = c.as_object_mut() {
                                obj.insert("lastTransitionTime".to_owned(), now.into());
                            }
                        }
                    } else {
                        walk(v, now);
                    }
                }
            }
            serde_json::Value::Array(items) => items.iter_mut().for_each(|v| walk(v, now)),
            _ => {}
        }
    }
    for object in statuses {
        walk(&mut Arc::make_mut(object).status, now);
    }
}

/// Rejections listed in one Gateway's `Programmed` message; the rest are counted.
const REJECTIONS_SHOWN: usize = 3;

/// Marks each Gateway (`namespace/name` in `rejected`) whose configuration a proxy rejected (a
/// NACK): its `Programmed` condition becomes `False` with reason `Invalid` and the proxies'
/// messages, so `kubectl get gateway` shows that the data plane does not run what was asked.
/// Other conditions are untouched; a Gateway not in `rejected` is unchanged.
/// `now` is the `lastTransitionTime` of a condition this changes (an unchanged one keeps its time
/// through [`carry_transition_times`]).
pub fn mark_rejected(
    statuses: &mut [Arc<ObjectStatus>],
    rejected: &BTreeMap<String, Vec<String>>,
    now: &str,
) {
    for object in statuses.iter_mut().filter(|o| o.kind == "Gateway") {
        let id = format!(
            "{}/{}",
            object.metadata.namespace.as_deref().unwrap_or_default(),
            object.metadata.name
        );
        let Some(messages) = rejected.get(&id).filter(|m| !m.is_empty()) else {
            continue;
        };
        let mut message = messages
            .iter()
            .take(REJECTIONS_SHOWN)
            .cloned()
            .collect::<Vec<_>>()
            .join("; ");
        if messages.len() > REJECTIONS_SHOWN {
            message.push_str(&format!(
                "; and {} more proxies",
                messages.len() - REJECTIONS_SHOWN
            ));
        }
        let conditions = Arc::make_mut(object)
            .status
            .get_mut("conditions")
            .and_then(serde_json::Value::as_array_mut);
        for c in conditions.into_iter().flatten() {
            if c.get("type").and_then(serde_json::Value::as_str) == Some(condition::PROGRAMMED) {
                c["status"] = "False".into();
                c["reason"] = reason::INVALID.into();
                c["lastTransitionTime"] = now.into();
                c["message"] = message.clone().into();
            }
        }
    }
}

fn carry(old: &serde_json::Value, new: &mut serde_json::Value) {
    use serde_json::Value;
    match (old, new) {
        (Value::Object(o), Value::Object(n)) => {
            for (key, value) in n.iter_mut() {
                let Some(old_value) = o.get(key) else {
                    continue;
                };
                if key == "conditions" {
                    carry_conditions(old_value, value);
                } else {
                    carry(old_value, value);
                }
            }
        }
        (Value::Array(o), Value::Array(n)) => {
            for (i, new_item) in n.iter_mut().enumerate() {
                let key = entry_key(new_item);
                let old_item = match &key {
                    Some(k) => o.iter().find(|c| entry_key(c).as_ref() == Some(k)),
                    None => o.get(i),
                };
                if let Some(old_item) = old_item {
                    carry(old_item, new_item);
                }
            }
        }
        _ => {}
    }
}

/// What identifies a list entry across versions: a route parent's `parentRef` and
/// `controllerName`, or a listener's `name`.
fn entry_key(v: &serde_json::Value) -> Option<serde_json::Value> {
    let obj = v.as_object()?;
    if let Some(parent) = obj.get("parentRef") {
        return Some(serde_json::json!([parent, obj.get("controllerName")]));
    }
    obj.get("name").cloned()
}

fn carry_conditions(old: &serde_json::Value, new: &mut serde_json::Value) {
    let (Some(old), Some(new)) = (old.as_array(), new.as_array_mut()) else {
        return;
    };
    for condition in new.iter_mut() {
        let same = old.iter().find(|c| c.get("type") == condition.get("type"));
        let prior_time = same
            .filter(|c| c.get("status") == condition.get("status"))
            .and_then(|c| c.get("lastTransitionTime"));
        if let (Some(time), Some(obj)) = (prior_time, condition.as_object_mut()) {
            obj.insert("lastTransitionTime".to_owned(), time.clone());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn object(status: serde_json::Value) -> ObjectStatus {
        ObjectStatus {
            api_version: GATEWAY_API_VERSION.to_owned(),
            kind: "HTTPRoute".to_owned(),
            metadata: StatusMetadata {
                name: "r".to_owned(),
                namespace: Some("ns".to_owned()),
                generation: 1,
            },
            status,
        }
    }

    fn parent(name: &str, accepted: &str, time: &str) -> serde_json::Value {
        json!({
            "parentRef": {"name": name},
            "controllerName": "c",
            "conditions": [{"type": "Accepted", "status": accepted, "lastTransitionTime": time}],
        })
    }

    #[test]
    fn transition_times_follow_parents_by_reference_not_position() {
        let old = [Arc::new(object(
            json!({"parents": [parent("a", "True", "t1"), parent("b", "False", "t1")]}),
        ))];
        // Reordered parents, b's status changed, a's did not.
        let mut new = [Arc::new(object(
            json!({"parents": [parent("b", "True", "t2"), parent("a", "True", "t2")]}),
        ))];
        carry_transition_times(&old, &mut new);
        let times: Vec<&str> = new[0].status["parents"]
            .as_array()
            .into_iter()
            .flatten()
            .map(|p| {
                p["conditions"][0]["lastTransitionTime"]
                    .as_str()
                    .unwrap_or_default()
            })
            .collect();
        assert_eq!(times, ["t2", "t1"]);
        // A status equal to the previous one (times included, once carried) is shared with it.
        let mut again = [Arc::new(object(
            json!({"parents": [parent("b", "True", "t3"), parent("a", "True", "t3")]}),
        ))];
        carry_transition_times(&new, &mut again);
        assert!(Arc::ptr_eq(&again[0], &new[0]));
    }

    #[test]
    fn statuses_are_matched_by_object() {
        let named = |name: &str, time: &str| {
            let mut o = object(json!({"parents": [parent("a", "True", time)]}));
            o.metadata.name = name.to_owned();
            Arc::new(o)
        };
        let shared = named("b", "t1");
        let old = vec![named("a", "t1"), Arc::clone(&shared), named("d", "t1")];
        let expect = |new: &[Arc<ObjectStatus>]| {
            let time = |o: &Arc<ObjectStatus>| {
                o.status["parents"][0]["conditions"][0]["lastTransitionTime"]
                    .as_str()
                    .unwrap_or_default()
                    .to_owned()
            };
            new.iter()
                .map(|o| (o.metadata.name.clone(), time(o)))
                .collect::<Vec<_>>()
        };
        // Sorted (the merge): a carried, b shared, c new, d gone.
        let mut new = vec![named("a", "t2"), Arc::clone(&shared), named("c", "t2")];
        carry_transition_times(&old, &mut new);
        assert_eq!(
            expect(&new),
            [
                ("a".into(), "t1".into()),
                ("b".into(), "t1".into()),
                ("c".into(), "t2".into())
            ]
        );
        assert!(Arc::ptr_eq(&new[0], &old[0]) && Arc::ptr_eq(&new[1], &shared));
    }
}
