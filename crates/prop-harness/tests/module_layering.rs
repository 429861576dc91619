//! No import cycle between the modules of any library crate of the workspace (issue #12): the
//! checker of [`prop_harness::layering`] on each crate's `src/`, and on synthetic crates that
//! show it can fail.

use prop_harness::layering::{graph_of_dir, graph_of_files};
use std::path::Path;

/// The library crates whose modules must import one way.
const LIBRARY_CRATES: [&str; 5] = [
    "acrn-uapi",
    "acrn-trace",
    "acrn-hsm",
    "acrn-hsm-emulator",
    "acrn-hsm-tools",
];

fn crate_src(name: &str) -> std::path::PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("..")
        .join(name)
        .join("src")
}

#[test]
fn library_crates_have_no_module_cycle() {
    let mut failures = String::new();
    for name in LIBRARY_CRATES {
        let g = graph_of_dir(&crate_src(name)).unwrap_or_else(|e| panic!("{name}: {e}"));
        assert!(g.modules.len() > 1, "{name}: no module found");
        match g.check() {
            Ok(()) => println!(
                "{name}: top level, bottom up: {}",
                g.order("").unwrap_or_default().join(" · ")
            ),
            Err(e) => failures.push_str(&format!("{name}:\n{e}")),
        }
    }
    assert!(failures.is_empty(), "{failures}");
}

#[test]
fn a_two_module_cycle_is_found() {
    let g = graph_of_files(&[
        ("lib.rs", "mod a;\nmod b;\n"),
        ("a.rs", "use crate::b::B;\npub struct A;\n"),
        (
            "b.rs",
            "pub struct B;\nfn f() -> crate::a::A { crate::a::A }\n",
        ),
    ])
    .expect("reads");
    let c = g.cycles();
    assert_eq!(c.len(), 1, "{c:?}");
    assert_eq!(c[0].level, "");
    assert_eq!(c[0].nodes, ["a", "b"]);
    assert_eq!(
        (c[0].edges[0].file.as_str(), c[0].edges[0].line),
        ("a.rs", 1)
    );
    assert_eq!(c[0].edges[1].path, "crate::a::A");
    let msg = g.check().expect_err("a cycle");
    assert!(msg.contains("a → b → a"), "{msg}");
}

#[test]
fn use_groups_super_and_the_root_count() {
    // A grouped import, and a module using an item defined in the root that uses it back.
    let g = graph_of_files(&[
        (
            "lib.rs",
            "mod a;\nmod b;\npub struct Root;\nfn f() { a::g() }\n",
        ),
        ("a.rs", "use crate::{Root, b::{self}};\npub fn g() {}\n"),
        ("b.rs", "pub fn h() {}\n"),
    ])
    .expect("reads");
    let c = g.cycles();
    assert_eq!(c.len(), 1, "{c:?}");
    assert_eq!(c[0].nodes, ["a", "self"]);
    assert_eq!(g.edges(""), ["a → b", "a → self", "self → a"]);
    // super:: from a submodule into its parent: an edge inside the parent's level only.
    let g = graph_of_files(&[
        ("lib.rs", "mod k;\n"),
        ("k/mod.rs", "mod s;\npub struct T;\nfn f() { s::g() }\n"),
        ("k/s.rs", "use super::T;\npub fn g() {}\n"),
    ])
    .expect("reads");
    assert_eq!(g.edges(""), Vec::<String>::new());
    assert_eq!(g.edges("k"), ["s → self", "self → s"]);
    assert_eq!(g.cycles().len(), 1);
    assert_eq!(g.cycles()[0].level, "k");
}

#[test]
fn siblings_facades_comments_and_test_modules() {
    let g = graph_of_files(&[
        (
            "lib.rs",
            "mod a;\nmod b;\nmod m;\npub use a::A;\nuse other_crate::x as y;\n",
        ),
        // Through the root's re-export (`crate::A` is `a::A`) and an external alias: b → a only.
        (
            "b.rs",
            "// crate::m::X in a comment\nfn f(_: crate::A) { let _ = \"crate::m\"; crate::y::z(); }\n",
        ),
        // A test module is left out (it may cross-check against anything).
        (
            "a.rs",
            "pub struct A;\n#[cfg(test)]\n#[allow(x)]\nmod tests {\n    use crate::b::f;\n}\nmod inner {\n    use super::A;\n}\n",
        ),
        // Siblings under m: p → q → p.
        ("m.rs", "mod p;\nmod q;\n"),
        ("m/p.rs", "use super::q::Q;\npub struct P;\n"),
        ("m/q.rs", "pub struct Q(crate::m::p::P);\n"),
    ])
    .expect("reads");
    assert_eq!(g.edges(""), ["b → a", "self → a"]);
    assert_eq!(g.edges("a"), ["inner → self"]);
    assert_eq!(g.order("").expect("acyclic"), ["a", "m", "b", "self"]);
    let c = g.cycles();
    assert_eq!(c.len(), 1, "{c:?}");
    assert_eq!(
        (c[0].level.as_str(), c[0].nodes.clone()),
        ("m", vec!["p".to_string(), "q".to_string()])
    );
}

#[test]
fn a_missing_module_file_is_an_error() {
    let e = graph_of_files(&[("lib.rs", "mod gone;\n")]).expect_err("no file");
    assert!(e.contains("gone"), "{e}");
}
