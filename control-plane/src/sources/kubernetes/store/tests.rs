use super::*;
use crate::sources::{kubernetes::kinds, objects::parse_values};

fn seen(name: &str) -> Seen {
    Seen {
        reference: route(name).object_ref(),
        decoded: Some((
            route(name),
            ObservedStatus {
                resource_version: "1".to_owned(),
                status: serde_json::Value::Null,
            },
        )),
    }
}

fn undecodable(name: &str) -> Seen {
    Seen {
        reference: route(name).object_ref(),
        decoded: None,
    }
}

fn http_route(change: Change) -> Update {
    Update {
        kind: kind("HTTPRoute"),
        change,
    }
}

fn names(store: &Store) -> Vec<String> {
    store
        .state()
        .objects
        .iter()
        .map(|o| o.object_ref().name)
        .collect()
}

fn route(name: &str) -> Object {
    let doc = serde_json::json!({
        "apiVersion": "gateway.networking.k8s.io/v1",
        "kind": "HTTPRoute",
        "metadata": {"name": name, "namespace": "default"},
        "spec": {}
    });
    parse_values("test", vec![doc])
        .expect("decodes")
        .objects
        .remove(0)
}

fn kind(name: &str) -> &'static Kind {
    kinds::by_name(name).expect("watched kind")
}

fn list_all_but(store: &mut Store, skip: &str) {
    for k in WATCHED.iter().filter(|k| k.kind != skip) {
        store.apply(Update {
            kind: k,
            change: Change::Listed(Vec::new()),
        });
    }
}

#[test]
fn synced_only_after_every_kind_listed() {
    let mut store = Store::new();
    list_all_but(&mut store, "HTTPRoute");
    assert!(!store.synced());
    assert_eq!(store.pending(), vec!["HTTPRoute"]);
    // An Applied event does not complete a listing.
    store.apply(http_route(Change::Applied(Box::new(seen("a")))));
    assert!(!store.synced());
    store.apply(http_route(Change::Listed(vec![seen("b")])));
    assert!(store.synced());
    // The listing replaces what the kind held: "a" was not listed, so it is gone.
    assert_eq!(names(&store), vec!["b"]);
}

#[test]
fn apply_and_delete_follow_events() {
    let mut store = Store::new();
    list_all_but(&mut store, "");
    store.apply(http_route(Change::Applied(Box::new(seen("a")))));
    store.apply(http_route(Change::Applied(Box::new(seen("b")))));
    store.apply(http_route(Change::Deleted(route("a").object_ref())));
    assert_eq!(names(&store), vec!["b"]);
}

#[test]
fn an_undecodable_version_keeps_the_last_good_one_without_observed_status() {
    let mut store = Store::new();
    list_all_but(&mut store, "");
    store.apply(http_route(Change::Applied(Box::new(seen("a")))));
    assert_eq!(store.state().observed.len(), 1);
    store.apply(http_route(Change::Applied(Box::new(undecodable("a")))));
    assert_eq!(names(&store), vec!["a"], "last good version kept");
    assert!(
        store.state().observed.is_empty(),
        "no status written over it"
    );
    // A re-list (lost watch) keeps it too; a never-decoded object stays absent.
    store.apply(http_route(Change::Listed(vec![
        undecodable("a"),
        undecodable("never"),
    ])));
    assert_eq!(names(&store), vec!["a"]);
    // Deleted: gone.
    store.apply(http_route(Change::Deleted(route("a").object_ref())));
    assert!(names(&store).is_empty());
}

fn route_with(name: &str, hostname: &str, status: serde_json::Value) -> Seen {
    let doc = serde_json::json!({
        "apiVersion": "gateway.networking.k8s.io/v1",
        "kind": "HTTPRoute",
        "metadata": {"name": name, "namespace": "default", "resourceVersion": hostname.len().to_string()},
        "spec": {"hostnames": [hostname]},
        "status": status,
    });
    let object = parse_values("test", vec![doc])
        .expect("decodes")
        .objects
        .remove(0);
    Seen {
        reference: object.object_ref(),
        decoded: Some((
            object,
            ObservedStatus {
                resource_version: "1".to_owned(),
                status: serde_json::Value::Null,
            },
        )),
    }
}

#[test]
fn only_configuration_changes_bump_the_config_generation() {
    let mut store = Store::new();
    list_all_but(&mut store, "");
    let listed = store.state().config_generation;
    assert!(listed > 0, "listings count");
    let applied = |seen: Seen| Update {
        kind: kind("HTTPRoute"),
        change: Change::Applied(Box::new(seen)),
    };
    store.apply(applied(route_with(
        "a",
        "a.example",
        serde_json::json!({"parents": []}),
    )));
    let created = store.state().config_generation;
    assert!(created > listed, "a new object is a change");
    let status = serde_json::json!({"parents": [{"controllerName": "x", "parentRef": {"name": "gw"}, "conditions": []}]});
    store.apply(applied(route_with("a", "a.example", status)));
    assert_eq!(
        store.state().config_generation,
        created,
        "only the status changed"
    );
    store.apply(applied(undecodable("a")));
    assert_eq!(
        store.state().config_generation,
        created,
        "the last good version stays"
    );
    store.apply(applied(route_with(
        "a",
        "b.example.org",
        serde_json::json!({"parents": []}),
    )));
    assert!(
        store.state().config_generation > created,
        "the spec changed"
    );
}
