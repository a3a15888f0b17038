//! GatewayClass: a class is Serval's when its `controllerName` is ours; it is then Accepted.
//!
//! Classes of other controllers get no status and their Gateways are ignored.

use super::{
    Options,
    inputs::Inputs,
    status::{Condition, GATEWAY_API_VERSION, ObjectStatus, StatusMetadata, condition, reason},
};
use std::collections::BTreeSet;

/// Names of the GatewayClasses Serval owns, with their status entries.
pub(super) fn translate(inputs: &Inputs, opts: &Options) -> (BTreeSet<String>, Vec<ObjectStatus>) {
    let mut ours = BTreeSet::new();
    let mut statuses = Vec::new();
    for (name, class) in &inputs.gateway_classes {
        if class.spec.controller_name != opts.controller_name {
            continue;
        }
        ours.insert(name.clone());
        let generation = class.metadata.generation.unwrap_or(0);
        let accepted = Condition::new(
            condition::ACCEPTED,
            true,
            reason::ACCEPTED,
            "handled by serval",
            generation,
            &opts.now,
        );
        statuses.push(ObjectStatus {
            api_version: GATEWAY_API_VERSION.to_owned(),
            kind: "GatewayClass".to_owned(),
            metadata: StatusMetadata {
                name: name.clone(),
                namespace: None,
                generation,
            },
            status: serde_json::json!({ "conditions": [accepted] }),
        });
    }
    (ours, statuses)
}
