//! Tests of YAML document parsing: known kinds, skipped kinds, errors naming the document.

use super::*;

#[test]
fn parses_known_kinds_and_skips_others() {
    let text = r#"
apiVersion: gateway.networking.k8s.io/v1
kind: HTTPRoute
metadata: {name: web}
spec:
  parentRefs: [{name: gw}]
---
apiVersion: v1
kind: ConfigMap
metadata: {name: cm, namespace: x}
---
---
apiVersion: v1
kind: Service
metadata: {name: svc, namespace: apps}
spec:
  ports: [{port: 80}]
"#;
    let parsed = parse_documents("a.yaml", text).expect("valid");
    let refs: Vec<String> = parsed
        .objects
        .iter()
        .map(|o| o.object_ref().to_string())
        .collect();
    assert_eq!(refs, ["HTTPRoute default/web", "Service apps/svc"]);
    assert_eq!(parsed.skipped.len(), 1);
    assert!(
        parsed.skipped[0].contains("ConfigMap"),
        "{:?}",
        parsed.skipped
    );
}

#[test]
fn schema_error_names_document_and_field() {
    let text = "apiVersion: gateway.networking.k8s.io/v1\nkind: Gateway\nmetadata: {name: gw}\nspec:\n  gatewayClassName: serval\n  listeners:\n  - name: http\n    port: eighty\n    protocol: HTTP\n";
    let err = parse_documents("gw.yaml", text).expect_err("port is not a number");
    let msg = err.to_string();
    assert!(
        msg.contains("gw.yaml") && msg.contains("Gateway") && msg.contains("\"gw\""),
        "{msg}"
    );
}

#[test]
fn invalid_yaml_is_an_error() {
    let err = parse_documents("bad.yaml", "kind: [unclosed").expect_err("invalid");
    assert!(matches!(err, ParseError::Yaml { .. }), "{err}");
}

#[test]
fn missing_name_is_an_error() {
    let err = parse_documents("x.yaml", "apiVersion: v1\nkind: Service\nmetadata: {}\n")
        .expect_err("no name");
    assert!(err.to_string().contains("metadata.name"), "{err}");
}

#[test]
fn a_file_may_hold_thousands_of_documents() {
    let route = |i: usize| {
        format!(
            "apiVersion: gateway.networking.k8s.io/v1\nkind: HTTPRoute\nmetadata: {{name: r-{i}, namespace: default}}\nspec:\n  parentRefs: [{{name: gw}}]\n  hostnames: [\"app-{i}.example.com\"]\n"
        )
    };
    let text = (0..5_000).map(route).collect::<Vec<_>>().join("---\n");
    let parsed = parse_documents("big.yaml", &text).expect("5,000 documents parse");
    assert_eq!(parsed.objects.len(), 5_000);
}
