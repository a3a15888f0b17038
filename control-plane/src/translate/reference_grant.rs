//! ReferenceGrant: whether an object in one namespace may refer to an object in another.
//!
//! Only the check; which references need it is decided by the callers.

use super::{gateway::GATEWAY_GROUP, inputs::Inputs};

/// True if a ReferenceGrant in `to_ns` lets a `from_kind` (a Gateway API kind) in `from_ns` refer
/// to the `to_group`/`to_kind` named `to_name`.
pub(super) fn permits(
    inputs: &Inputs,
    from_kind: &str,
    from_ns: &str,
    to_group: &str,
    to_kind: &str,
    to_ns: &str,
    to_name: &str,
) -> bool {
    inputs
        .reference_grants
        .range((to_ns.to_owned(), String::new())..)
        .take_while(|((ns, _), _)| ns == to_ns)
        .any(|(_, grant)| {
            let from_ok =
                grant.spec.from.iter().any(|f| {
                    f.group == GATEWAY_GROUP && f.kind == from_kind && f.namespace == from_ns
                });
            let to_ok = grant.spec.to.iter().any(|t| {
                let group = if t.group == "core" {
                    ""
                } else {
                    t.group.as_str()
                };
                group == to_group
                    && t.kind == to_kind
                    && t.name.as_deref().is_none_or(|n| n == to_name)
            });
            from_ok && to_ok
        })
}
