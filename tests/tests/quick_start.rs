//! The README's quick start builds as a new user would build it: its
//! `[dependencies]` block and its `main.rs`, copied into a fresh crate
//! (with the crate itself taken from this checkout instead of crates.io,
//! and the workspace's `Cargo.lock`, so no newer version is fetched).

use std::path::Path;
use std::process::Command;

/// The body of the first fenced block in `section` of `readme` whose info
/// string is `lang`.
fn fenced_block<'a>(readme: &'a str, section: &str, lang: &str) -> &'a str {
    let section = readme
        .split("\n## ")
        .find(|s| s.starts_with(section))
        .unwrap_or_else(|| panic!("no section {section:?} in README.md"));
    let start = section
        .find(&format!("```{lang}\n"))
        .unwrap_or_else(|| panic!("no ```{lang} block in {section:?}"))
        + 4
        + lang.len();
    let end = section[start..].find("```").expect("an unclosed block") + start;
    &section[start..end]
}

#[test]
fn the_readme_quick_start_builds_in_a_fresh_crate() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    let readme = std::fs::read_to_string(root.join("README.md")).unwrap();
    let dependencies = fenced_block(&readme, "Quick start", "toml");
    let main = fenced_block(&readme, "Quick start", "rust");
    assert!(
        dependencies.contains("multiweb-telemetry = \"0.1\""),
        "the quick start depends on the published crate:\n{dependencies}"
    );
    let crate_path = root.join("multiweb-telemetry").canonicalize().unwrap();
    let dependencies = dependencies.replace(
        "multiweb-telemetry = \"0.1\"",
        &format!("multiweb-telemetry = {{ path = {crate_path:?} }}"),
    );
    let dir = std::env::temp_dir().join(format!("multiweb-quick-start-{}", std::process::id()));
    std::fs::create_dir_all(dir.join("src")).unwrap();
    std::fs::write(
        dir.join("Cargo.toml"),
        format!(
            "[package]\nname = \"quick-start\"\nversion = \"0.1.0\"\nedition = \"2024\"\n\n\
             [workspace]\n\n{dependencies}"
        ),
    )
    .unwrap();
    std::fs::write(dir.join("src/main.rs"), main).unwrap();
    std::fs::copy(root.join("Cargo.lock"), dir.join("Cargo.lock")).unwrap();
    // A target directory of its own, kept between runs (only the fresh
    // crate is rebuilt the next time).
    let target = root.join("target/quick-start");
    let output = Command::new(env!("CARGO"))
        .args(["build", "--offline", "--quiet"])
        .env("CARGO_TARGET_DIR", &target)
        .current_dir(&dir)
        .output()
        .unwrap();
    let _ = std::fs::remove_dir_all(&dir);
    assert!(
        output.status.success(),
        "the README quick start does not build:\n{}",
        String::from_utf8_lossy(&output.stderr)
    );
}
