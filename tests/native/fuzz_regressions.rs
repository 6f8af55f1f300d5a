//! The fuzz targets' inputs on stable: every seed (`fuzz/seeds/<target>/`) and every input a
//! fuzzer once crashed on (`fuzz/regressions/<target>/`) goes through the same check as under
//! `cargo fuzz run` (fuzz/checks.rs). A crash found later is added to `regressions/` with the fix.

#[path = "../../fuzz/checks.rs"]
mod checks;

use std::panic::{AssertUnwindSafe, catch_unwind};
use std::path::Path;

fn run(target: &str, check: fn(&[u8])) {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("fuzz");
    let mut count = 0;
    let mut failed = Vec::new();
    for kind in ["seeds", "regressions"] {
        let Ok(entries) = std::fs::read_dir(root.join(kind).join(target)) else { continue };
        for entry in entries {
            let path = entry.unwrap().path();
            let data = std::fs::read(&path).unwrap();
            count += 1;
            if catch_unwind(AssertUnwindSafe(|| check(&data))).is_err() {
                failed.push(path.display().to_string());
            }
        }
    }
    assert!(count > 0, "no inputs for the {target} target");
    assert!(failed.is_empty(), "{target}: these inputs panic: {failed:?}");
}

#[test]
fn safetensors_inputs() {
    run("safetensors", checks::checkpoint);
}

#[test]
fn torch_checkpoint_inputs() {
    run("torch_checkpoint", checks::checkpoint);
}

#[test]
fn config_inputs() {
    run("config", checks::config);
}

#[test]
fn label_inputs() {
    run("labels", checks::labels);
}

#[test]
fn tokenizer_inputs() {
    run("tokenizer", checks::tokenizer);
}

#[test]
fn wordpiece_inputs() {
    run("wordpiece", checks::wordpiece);
}

#[test]
fn cli_args_inputs() {
    run("cli_args", checks::cli_args);
}

#[test]
fn y4m_inputs() {
    run("y4m", checks::y4m);
}
