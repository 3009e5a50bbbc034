//! Golden previews: for each source user in `tests/golden/preview/*.json`, the exact requests the
//! example configuration (`infra/userprov.example.toml`) produces must equal the `.txt` beside
//! it. A mapping change shows up here as a diff to review. `UPDATE_GOLDEN=1 cargo test --test
//! golden_preview` rewrites the expected files.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::path::PathBuf;

use userprov_core::config::Config;
use userprov_core::preview::{preview, render};
use userprov_core::source_file::user_from_json_text;

#[test]
fn previews_of_the_golden_users_match_their_expected_requests() {
    let config = Config::example().unwrap();
    let app = config.app("slack").unwrap();
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("golden/preview");
    let update = std::env::var_os("UPDATE_GOLDEN").is_some();
    let mut inputs: Vec<PathBuf> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "json"))
        .collect();
    inputs.sort();
    assert!(
        inputs.len() >= 4,
        "golden users are missing from {}",
        dir.display()
    );
    let mut mismatches = Vec::new();
    for input in inputs {
        let user = user_from_json_text(&std::fs::read_to_string(&input).unwrap()).unwrap();
        let actual = render(&preview(app, &user, None, &Default::default()));
        let expected_path = input.with_extension("txt");
        if update {
            std::fs::write(&expected_path, &actual).unwrap();
            continue;
        }
        let expected = std::fs::read_to_string(&expected_path).unwrap_or_else(|_| {
            panic!(
                "{} is missing: run with UPDATE_GOLDEN=1",
                expected_path.display()
            )
        });
        if actual != expected {
            mismatches.push(format!(
                "{}:\n--- expected\n{expected}\n--- actual\n{actual}",
                input.display()
            ));
        }
    }
    assert!(
        mismatches.is_empty(),
        "previews changed:\n{}",
        mismatches.join("\n")
    );
}
