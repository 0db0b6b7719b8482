//! The shape of the code, checked: dependencies point one way between the
//! bounded contexts (platform ← customers ← commerce ← engagement ← app), and every
//! domain's storage is private to it. The compiler enforces the second (a
//! `store` module that is not `pub` cannot be named from outside its
//! domain); these tests keep anyone from making one `pub` again and catch an
//! import that runs the wrong way, which the compiler would accept.

use std::path::{Path, PathBuf};

fn source_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("src")
}

fn rust_files(dir: &Path) -> Vec<PathBuf> {
    let mut files = Vec::new();
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            files.extend(rust_files(&path));
        } else if path.extension().is_some_and(|e| e == "rs") {
            files.push(path);
        }
    }
    files.sort();
    files
}

/// The file's code without comments (`//`, `//!`, `///` to the line's end;
/// good enough for this code base, which has no `/* */` comments in code
/// paths and no `//` inside string literals that names a context).
fn code_of(path: &Path) -> String {
    std::fs::read_to_string(path)
        .unwrap()
        .lines()
        .map(|line| match line.find("//") {
            Some(at) => &line[..at],
            None => line,
        })
        .collect::<Vec<_>>()
        .join("\n")
}

/// Paths into `context` that `code` names: `crate::context::…` or, inside a
/// `use crate::{…}` group, `context::…` at the start of an item.
fn names_context(code: &str, context: &str) -> bool {
    let direct = format!("crate::{context}");
    if code.contains(&direct) {
        return true;
    }
    code.match_indices("crate::{").any(|(at, _)| {
        let group = &code[at..];
        let end = group.find(';').unwrap_or(group.len());
        group[..end]
            .split(['{', ',', ' ', '\n'])
            .any(|item| item.starts_with(&format!("{context}::")) || item == context)
    })
}

#[test]
fn dependencies_point_one_way_between_contexts() {
    let root = source_root();
    // What each context may not import: the contexts above it.
    let rules: [(&str, &[&str]); 4] = [
        ("platform", &["customers", "commerce", "engagement", "app"]),
        ("customers", &["commerce", "engagement", "app"]),
        ("commerce", &["engagement", "app"]),
        ("engagement", &["app"]),
    ];
    let mut wrong = Vec::new();
    for (context, above) in rules {
        for file in rust_files(&root.join(context)) {
            let code = code_of(&file);
            for other in above {
                if names_context(&code, other) {
                    wrong.push(format!(
                        "{} imports {other}",
                        file.strip_prefix(&root).unwrap().display()
                    ));
                }
            }
        }
    }
    assert!(
        wrong.is_empty(),
        "imports against the direction platform ← customers ← commerce ← engagement ← app:\n{}",
        wrong.join("\n")
    );
}

#[test]
fn every_domain_keeps_its_storage_private() {
    let root = source_root();
    let mut stores = 0;
    let mut public = Vec::new();
    for file in rust_files(&root) {
        for line in code_of(&file).lines() {
            let line = line.trim();
            if line.ends_with("mod store;") {
                stores += 1;
                if line != "mod store;" {
                    public.push(format!(
                        "{}: `{line}`",
                        file.strip_prefix(&root).unwrap().display()
                    ));
                }
            }
        }
    }
    assert!(
        stores >= 13,
        "expected a store module per domain, found {stores}"
    );
    assert!(
        public.is_empty(),
        "a domain's store must be private (`mod store;`), so no other domain can reach its tables:\n{}",
        public.join("\n")
    );
}

#[test]
fn the_checker_sees_an_import_against_the_direction() {
    assert!(names_context("use crate::commerce::carts;", "commerce"));
    assert!(names_context(
        "use crate::{\n    commerce::carts, platform::ids,\n};",
        "commerce"
    ));
    assert!(!names_context(
        "use crate::{platform::ids, customers::identity};",
        "commerce"
    ));
    assert!(!names_context("let commerce = 1;", "commerce"));
}
