//! The emulator's modules import one way (issue #12): no cycle in the module graph of `src/`
//! ([`prop_harness::layering`]; the rule is in its documentation). `--nocapture` prints the
//! top level's edges and its order, bottom up.

use prop_harness::layering::graph_of_dir;
use std::path::Path;

#[test]
fn emulator_modules_have_no_import_cycle() {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let g = graph_of_dir(&src).expect("the emulator's sources read");
    for e in g.edges("") {
        println!("{e}");
    }
    if let Err(cycles) = g.check() {
        panic!("{cycles}");
    }
    println!("bottom up: {}", g.order("").unwrap_or_default().join(" → "));
}
