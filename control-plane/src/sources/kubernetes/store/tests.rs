use super::*;
use crate::sources::{kubernetes::kinds, objects::parse_values};

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
    store.apply(Update {
        kind: kind("HTTPRoute"),
        change: Change::Applied(Box::new(route("a"))),
    });
    assert!(!store.synced());
    store.apply(Update {
        kind: kind("HTTPRoute"),
        change: Change::Listed(vec![route("b")]),
    });
    assert!(store.synced());
    // The listing replaces what the kind held: "a" was not listed, so it is gone.
    let names: Vec<String> = store
        .state()
        .objects
        .iter()
        .map(|o| o.object_ref().name)
        .collect();
    assert_eq!(names, vec!["b"]);
}

#[test]
fn apply_and_delete_follow_events() {
    let mut store = Store::new();
    list_all_but(&mut store, "");
    store.apply(Update {
        kind: kind("HTTPRoute"),
        change: Change::Applied(Box::new(route("a"))),
    });
    store.apply(Update {
        kind: kind("HTTPRoute"),
        change: Change::Applied(Box::new(route("b"))),
    });
    store.apply(Update {
        kind: kind("HTTPRoute"),
        change: Change::Deleted(route("a").object_ref()),
    });
    let names: Vec<String> = store
        .state()
        .objects
        .iter()
        .map(|o| o.object_ref().name)
        .collect();
    assert_eq!(names, vec!["b"]);
}
