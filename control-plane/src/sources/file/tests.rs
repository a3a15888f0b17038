//! Tests of the file source: last good objects per file, missing folder.

use super::*;

const SVC: &str =
    "apiVersion: v1\nkind: Service\nmetadata: {name: a}\nspec: {ports: [{port: 80}]}\n";
const SVC_B: &str =
    "apiVersion: v1\nkind: Service\nmetadata: {name: b}\nspec: {ports: [{port: 80}]}\n";

fn names(state: &SourceState) -> Vec<String> {
    state
        .objects
        .iter()
        .map(|o| o.object_ref().to_string())
        .collect()
}

#[test]
fn invalid_file_keeps_its_last_good_objects() {
    let dir = tempdir();
    std::fs::write(dir.join("a.yaml"), SVC).expect("write");
    std::fs::write(dir.join("b.yml"), SVC_B).expect("write");
    std::fs::write(dir.join("notes.txt"), "not yaml: [").expect("write");
    let mut source = FileSource::new(&dir);
    let state = source.reload().expect("reads");
    assert_eq!(names(&state), ["Service default/a", "Service default/b"]);
    assert!(state.errors.is_empty());

    // Half-written file: reported, last good objects kept, the other file unaffected.
    std::fs::write(
        dir.join("b.yml"),
        "apiVersion: v1\nkind: Service\nmetadata: {name: b",
    )
    .expect("write");
    let state = source.reload().expect("reads");
    assert_eq!(names(&state), ["Service default/a", "Service default/b"]);
    assert_eq!(state.errors.len(), 1);
    assert!(state.errors[0].contains("b.yml"), "{:?}", state.errors);

    // Removing the file removes its objects.
    std::fs::remove_file(dir.join("b.yml")).expect("rm");
    let state = source.reload().expect("reads");
    assert_eq!(names(&state), ["Service default/a"]);
    assert!(state.errors.is_empty());
    std::fs::remove_dir_all(&dir).expect("cleanup");
}

#[test]
fn a_reload_of_named_files_reads_those_and_new_ones_only() {
    let dir = tempdir();
    std::fs::write(dir.join("a.yaml"), SVC).expect("write");
    let mut source = FileSource::new(&dir);
    source.reload().expect("reads");
    // a.yaml changes but is not named; b.yaml is new: only b.yaml is read.
    std::fs::write(dir.join("a.yaml"), SVC.replace("{name: a}", "{name: a2}")).expect("write");
    std::fs::write(dir.join("b.yaml"), SVC_B).expect("write");
    let only: BTreeSet<OsString> = [OsString::from("other.yaml")].into();
    let state = source.reload_files(Some(&only)).expect("reads");
    assert_eq!(names(&state), ["Service default/a", "Service default/b"]);
    // Named, a.yaml is read again.
    let only: BTreeSet<OsString> = [OsString::from("a.yaml")].into();
    let state = source.reload_files(Some(&only)).expect("reads");
    assert_eq!(names(&state), ["Service default/a2", "Service default/b"]);
    // A removed file goes whether named or not.
    std::fs::remove_file(dir.join("b.yaml")).expect("rm");
    let state = source.reload_files(Some(&BTreeSet::new())).expect("reads");
    assert_eq!(names(&state), ["Service default/a2"]);
    std::fs::remove_dir_all(&dir).expect("cleanup");
}

#[test]
fn missing_dir_is_an_error() {
    let mut source = FileSource::new("/nonexistent/serval-test");
    let err = source.reload().expect_err("missing");
    assert!(
        err.to_string().contains("/nonexistent/serval-test"),
        "{err}"
    );
}

fn tempdir() -> PathBuf {
    let dir = std::env::temp_dir().join(format!(
        "serval-file-source-{}-{}",
        std::process::id(),
        fastrand_suffix()
    ));
    std::fs::create_dir_all(&dir).expect("mkdir");
    dir
}

fn fastrand_suffix() -> u128 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos())
        .unwrap_or_default()
}
