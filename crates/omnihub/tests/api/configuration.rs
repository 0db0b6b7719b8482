//! The configuration reference in `docs/configuration.md` is generated
//! from the code (`omnihub config reference`) and must not drift; every
//! setting has a key in the TOML file and every key is a setting.

use std::collections::BTreeSet;
use std::path::Path;

use omnihub::platform::config::FileSettings;
use omnihub::platform::config::reference::{self, BEGIN_MARKER, END_MARKER};

const BIN: &str = env!("CARGO_BIN_EXE_omnihub");

fn doc_path() -> std::path::PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../docs/configuration.md")
}

/// The generated part of the document, markers included.
fn generated_part(doc: &str) -> Option<&str> {
    let start = doc.find(BEGIN_MARKER)?;
    let end = doc[start..].find(END_MARKER)? + start + END_MARKER.len();
    Some(&doc[start..=end.min(doc.len() - 1)])
}

/// Set `OMNIHUB_UPDATE_CONFIG_REFERENCE=1` to rewrite the generated table
/// after changing a setting.
#[test]
fn the_reference_is_current() {
    let path = doc_path();
    let doc = std::fs::read_to_string(&path).expect("docs/configuration.md");
    let generated = reference::markdown();
    let committed = generated_part(&doc).expect("the document has the generated markers");
    if std::env::var("OMNIHUB_UPDATE_CONFIG_REFERENCE").is_ok_and(|v| v == "1") {
        std::fs::write(&path, doc.replacen(committed, &generated, 1)).expect("write the document");
        return;
    }
    assert!(
        committed == generated,
        "docs/configuration.md's settings table is out of date; run \
         OMNIHUB_UPDATE_CONFIG_REFERENCE=1 cargo test -p omnihub --test api configuration:: and commit it"
    );
}

/// What the command prints is what the document holds.
#[test]
fn the_command_prints_the_reference() {
    let output = std::process::Command::new(BIN)
        .args(["config", "reference"])
        .env_remove("OMNIHUB_CONFIG")
        .output()
        .expect("run omnihub config reference");
    assert!(output.status.success(), "{output:?}");
    let printed = String::from_utf8(output.stdout).expect("utf-8");
    assert_eq!(printed, reference::markdown());
}

/// Each setting but `--config` is a key of the TOML file, and the file
/// knows no key that is not a setting; every setting has its environment
/// variable and a default.
#[test]
fn every_setting_has_a_flag_a_variable_and_a_file_key() {
    let entries = reference::entries();
    assert!(entries.len() >= 30, "{entries:?}");
    for entry in &entries {
        let env = entry.env.as_deref().unwrap_or_default();
        assert!(env.starts_with("OMNIHUB_"), "{entry:?}");
        assert!(!entry.default.is_empty(), "{entry:?}");
        assert!(!entry.meaning.is_empty(), "{entry:?}");
    }
    let flags: BTreeSet<String> = entries.iter().filter_map(|e| e.file_key.clone()).collect();
    // serde lists the fields it expects when it meets an unknown one.
    let dir = std::env::temp_dir().join(format!("omnihub-config-{}", uuid::Uuid::now_v7()));
    std::fs::create_dir_all(&dir).unwrap();
    let file = dir.join("omnihub.toml");
    std::fs::write(&file, "no_such_setting = 1\n").unwrap();
    let error = FileSettings::load(&file)
        .expect_err("unknown keys are refused")
        .to_string();
    let _ = std::fs::remove_dir_all(&dir);
    let expected = error
        .split("expected one of")
        .nth(1)
        .unwrap_or_else(|| panic!("serde names the keys: {error}"));
    let keys: BTreeSet<String> = expected
        .split('`')
        .skip(1)
        .step_by(2)
        .map(str::to_string)
        .collect();
    assert_eq!(keys, flags, "TOML keys vs settings");
}
