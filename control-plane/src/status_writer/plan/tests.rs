use super::*;
use crate::{
    status_writer::Observed,
    translate::{ObjectStatus, status::StatusMetadata},
};
use serde_json::json;
use std::sync::Arc;

const OURS: &str = "serval.dev/gateway-controller";
const THEIRS: &str = "example.com/other";

fn key(kind: &str, name: &str) -> StatusKey {
    StatusKey {
        kind: kind.to_owned(),
        namespace: "default".to_owned(),
        name: name.to_owned(),
    }
}

fn parent(gateway: &str, controller: &str, accepted: &str) -> Value {
    json!({
        "parentRef": {"group": "gateway.networking.k8s.io", "kind": "Gateway", "name": gateway},
        "controllerName": controller,
        "conditions": [{"type": "Accepted", "status": accepted, "reason": "Accepted", "message": "",
                        "observedGeneration": 1, "lastTransitionTime": "2026-01-01T00:00:00Z"}]
    })
}

fn desired(kind: &str, name: &str, status: Value) -> ObjectStatus {
    ObjectStatus {
        api_version: "gateway.networking.k8s.io/v1".to_owned(),
        kind: kind.to_owned(),
        metadata: StatusMetadata {
            name: name.to_owned(),
            namespace: Some("default".to_owned()),
            generation: 1,
        },
        status,
    }
}

fn observed(status: Value, rv: &str) -> Observed {
    Observed {
        resource_version: rv.to_owned(),
        status: normalize("HTTPRoute", &status),
    }
}

fn round(desired: Vec<ObjectStatus>, observed: Vec<(StatusKey, Observed)>) -> Round {
    Round {
        desired: Arc::new(desired.into_iter().map(Arc::new).collect()),
        observed: Arc::new(observed.into_iter().collect()),
    }
}

#[test]
fn unchanged_status_is_not_written() {
    let status = json!({"parents": [parent("gw", OURS, "True")]});
    let r = round(
        vec![desired("HTTPRoute", "r", status.clone())],
        vec![(key("HTTPRoute", "r"), observed(status, "5"))],
    );
    let plan = plan(&r, &BTreeMap::new(), OURS);
    assert!(plan.writes.is_empty(), "{:?}", plan.writes);
    assert_eq!(plan.unchanged, 1);
}

#[test]
fn changed_status_is_written_with_its_precondition() {
    let r = round(
        vec![desired(
            "HTTPRoute",
            "r",
            json!({"parents": [parent("gw", OURS, "True")]}),
        )],
        vec![(
            key("HTTPRoute", "r"),
            observed(json!({"parents": [parent("gw", OURS, "False")]}), "5"),
        )],
    );
    let plan = plan(&r, &BTreeMap::new(), OURS);
    assert_eq!(plan.writes.len(), 1);
    let body = plan.writes[0].body();
    assert_eq!(body["metadata"]["resourceVersion"], "5");
    assert_eq!(
        body["status"]["parents"][0]["conditions"][0]["status"],
        "True"
    );
}

#[test]
fn other_controllers_entries_come_from_the_observed_object() {
    // Translate saw an older entry of the other controller; the API server has a newer one.
    let stale_theirs = parent("their-gw", THEIRS, "False");
    let fresh_theirs = parent("their-gw", THEIRS, "True");
    let r = round(
        vec![desired(
            "HTTPRoute",
            "r",
            json!({"parents": [stale_theirs, parent("gw", OURS, "True")]}),
        )],
        vec![(
            key("HTTPRoute", "r"),
            observed(json!({"parents": [fresh_theirs]}), "7"),
        )],
    );
    let plan = plan(&r, &BTreeMap::new(), OURS);
    assert_eq!(plan.writes.len(), 1);
    let parents = plan.writes[0].status["parents"]
        .as_array()
        .expect("parents")
        .clone();
    assert_eq!(parents.len(), 2);
    assert_eq!(parents[0], normalize_parent(fresh_theirs));
    assert_eq!(parents[1]["controllerName"], OURS);
}

fn normalize_parent(p: Value) -> Value {
    normalize("HTTPRoute", &json!({"parents": [p]}))["parents"][0].clone()
}

#[test]
fn our_entries_are_removed_from_routes_that_left_our_gateways() {
    let theirs = parent("their-gw", THEIRS, "True");
    let r = round(
        Vec::new(),
        vec![
            (
                key("HTTPRoute", "left"),
                observed(
                    json!({"parents": [theirs, parent("gw", OURS, "True")]}),
                    "3",
                ),
            ),
            (
                key("HTTPRoute", "never-ours"),
                observed(json!({"parents": [theirs]}), "4"),
            ),
        ],
    );
    let plan = plan(&r, &BTreeMap::new(), OURS);
    assert_eq!(plan.writes.len(), 1, "{:?}", plan.writes);
    assert_eq!(plan.writes[0].key.name, "left");
    assert_eq!(
        plan.writes[0].status["parents"],
        json!([normalize_parent(theirs)])
    );
}

#[test]
fn a_write_not_yet_seen_by_the_watch_is_not_repeated() {
    let new = json!({"parents": [parent("gw", OURS, "True")]});
    let r = round(
        vec![desired("HTTPRoute", "r", new.clone())],
        vec![(
            key("HTTPRoute", "r"),
            observed(json!({"parents": [parent("gw", OURS, "False")]}), "5"),
        )],
    );
    let first = plan(&r, &BTreeMap::new(), OURS);
    let mut written = BTreeMap::new();
    written.insert(
        key("HTTPRoute", "r"),
        Written {
            based_on: "5".to_owned(),
            status: first.writes[0].status.clone(),
        },
    );
    let second = plan(&r, &written, OURS);
    assert!(second.writes.is_empty());
    // Someone else changed the object since: compared afresh.
    let r2 = round(
        vec![desired("HTTPRoute", "r", new)],
        vec![(
            key("HTTPRoute", "r"),
            observed(json!({"parents": [parent("gw", OURS, "False")]}), "9"),
        )],
    );
    assert_eq!(plan(&r2, &written, OURS).writes.len(), 1);
}

#[test]
fn removed_status_keys_are_cleared_by_the_merge_patch() {
    let write = Write {
        key: key("Gateway", "gw"),
        resource_version: "1".to_owned(),
        status: json!({"conditions": []}),
        previous: json!({"conditions": [], "addresses": [{"type": "IPAddress", "value": "10.0.0.1"}]}),
    };
    assert_eq!(write.body()["status"]["addresses"], Value::Null);
    assert!(
        write.body()["status"]
            .as_object()
            .expect("object")
            .contains_key("addresses")
    );
}

#[test]
fn kinds_without_written_status_are_ignored() {
    let r = round(
        vec![desired("ReferenceGrant", "g", json!({"x": 1}))],
        Vec::new(),
    );
    assert!(plan(&r, &BTreeMap::new(), OURS).writes.is_empty());
}

#[test]
fn foreign_entries_keep_their_position_and_unknown_fields() {
    // The API server holds [ours (stale), theirs with a field Serval's types do not know].
    let mut theirs = parent("their-gw", THEIRS, "True");
    theirs["futureField"] = json!("kept");
    let raw = Observed {
        resource_version: "3".to_owned(),
        status: json!({"parents": [parent("gw", OURS, "False"), theirs.clone()]}),
    };
    let r = round(
        vec![desired(
            "HTTPRoute",
            "r",
            json!({"parents": [parent("gw", OURS, "True")]}),
        )],
        vec![(key("HTTPRoute", "r"), raw)],
    );
    let plan = plan(&r, &BTreeMap::new(), OURS);
    assert_eq!(plan.writes.len(), 1);
    let parents = plan.writes[0].status["parents"]
        .as_array()
        .expect("parents")
        .clone();
    assert_eq!(parents[0]["controllerName"], OURS, "ours replaced in place");
    assert_eq!(parents[0]["conditions"][0]["status"], "True");
    assert_eq!(
        parents[1], theirs,
        "theirs untouched, unknown field included"
    );
}

#[test]
fn an_order_chosen_by_someone_else_is_not_a_change() {
    let ours = parent("gw", OURS, "True");
    let theirs = parent("their-gw", THEIRS, "True");
    let r = round(
        vec![desired(
            "HTTPRoute",
            "r",
            json!({"parents": [theirs, ours]}),
        )],
        vec![(
            key("HTTPRoute", "r"),
            observed(json!({"parents": [ours, theirs]}), "8"),
        )],
    );
    let plan = plan(&r, &BTreeMap::new(), OURS);
    assert!(plan.writes.is_empty(), "{:?}", plan.writes);
    assert_eq!(plan.unchanged, 1);
}
