//! Short units, checked: no source file over [`MAX_FILE_LINES`] lines, and no
//! function over [`MAX_FN_LINES`] lines unless the comment just above it
//! says why it is one piece, in a sentence starting `Long:` (see
//! ARCHITECTURE.md, "Long units").

use std::path::{Path, PathBuf};

const MAX_FILE_LINES: usize = 600;
const MAX_FN_LINES: usize = 70;

/// Functions still over the limit without a reason, each being split on a
/// branch of its own (`file`, `fn`). The test fails when one of them is
/// short or explains itself: then it leaves this list.
const KNOWN_LONG: &[(&str, &str)] = &[];

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

/// The source with every comment, string and character literal blanked
/// (newlines kept), so that braces and `fn` count only in code.
fn blank_literals(source: &str) -> String {
    let chars: Vec<char> = source.chars().collect();
    let mut out = String::with_capacity(source.len());
    let blank = |c: char| if c == '\n' { '\n' } else { ' ' };
    let mut i = 0;
    while i < chars.len() {
        let at = i;
        let rest = |k: usize| chars.get(at + k).copied();
        match chars[i] {
            '/' if rest(1) == Some('/') => {
                while i < chars.len() && chars[i] != '\n' {
                    out.push(' ');
                    i += 1;
                }
            }
            '/' if rest(1) == Some('*') => {
                while i < chars.len() && !(chars[i] == '*' && chars.get(i + 1) == Some(&'/')) {
                    out.push(blank(chars[i]));
                    i += 1;
                }
                out.push_str("  ");
                i += 2;
            }
            'r' if rest(1) == Some('"') || (rest(1) == Some('#') && rest(2) == Some('"')) => {
                // A raw string: r"…" or r#"…"#.
                let hashes = chars[i + 1..].iter().take_while(|&&c| c == '#').count();
                let close: Vec<char> = std::iter::once('"')
                    .chain(std::iter::repeat_n('#', hashes))
                    .collect();
                let start = i;
                i += 2 + hashes;
                while i < chars.len() && !chars[i..].starts_with(&close) {
                    i += 1;
                }
                i = (i + close.len()).min(chars.len());
                out.extend(chars[start..i].iter().map(|&c| blank(c)));
            }
            '"' => {
                out.push(' ');
                i += 1;
                while i < chars.len() && chars[i] != '"' {
                    let width = if chars[i] == '\\' { 2 } else { 1 };
                    for k in 0..width {
                        if let Some(&c) = chars.get(i + k) {
                            out.push(blank(c));
                        }
                    }
                    i += width;
                }
                out.push(' ');
                i += 1;
            }
            // A character literal ('x', '\n', '\''), not a lifetime ('a).
            '\'' if rest(2) == Some('\'') || (rest(1) == Some('\\') && rest(3) == Some('\'')) => {
                let width = if rest(1) == Some('\\') { 4 } else { 3 };
                out.extend(std::iter::repeat_n(' ', width));
                i += width;
            }
            c => {
                out.push(c);
                i += 1;
            }
        }
    }
    out
}

/// Every function of a file: (name, first line index, length in lines from
/// its `fn` line to its closing brace).
fn functions(code: &str) -> Vec<(String, usize, usize)> {
    let lines: Vec<&str> = code.lines().collect();
    let mut found = Vec::new();
    for (start, line) in lines.iter().enumerate() {
        let Some(at) = line.find("fn ") else { continue };
        let before = &line[..at];
        let is_item = before.split_whitespace().all(|word| {
            matches!(word, "pub" | "async" | "const" | "unsafe" | "extern")
                || word.starts_with("pub(")
        });
        if !is_item || (at > 0 && !line[..at].ends_with(' ')) {
            continue;
        }
        let name: String = line[at + 3..]
            .chars()
            .take_while(|c| c.is_alphanumeric() || *c == '_')
            .collect();
        let mut depth = 0i64;
        // Brackets and parentheses of the signature (`[u8; 4]` is no end).
        let mut nesting = 0i64;
        let mut opened = false;
        'scan: for (end, text) in lines.iter().enumerate().skip(start) {
            for c in text[if end == start { at } else { 0 }..].chars() {
                match c {
                    '(' | '[' => nesting += 1,
                    ')' | ']' => nesting -= 1,
                    ';' if !opened && depth == 0 && nesting == 0 => break 'scan,
                    '{' => {
                        depth += 1;
                        opened = true;
                    }
                    '}' => depth -= 1,
                    _ => {}
                }
                if opened && depth == 0 {
                    found.push((name.clone(), start, end - start + 1));
                    break 'scan;
                }
            }
        }
    }
    found
}

/// Whether the comment block right above line `start` (doc or plain
/// comments, attributes in between) says why the function is long.
fn explains_length(source_lines: &[&str], start: usize) -> bool {
    source_lines[..start]
        .iter()
        .rev()
        .take_while(|line| {
            let line = line.trim_start();
            line.starts_with("//") || line.starts_with("#[")
        })
        .any(|line| line.contains("Long:"))
}

#[test]
fn source_files_stay_short() {
    let root = source_root();
    let long: Vec<String> = rust_files(&root)
        .into_iter()
        .filter_map(|path| {
            let lines = std::fs::read_to_string(&path).unwrap().lines().count();
            (lines > MAX_FILE_LINES).then(|| {
                format!(
                    "{} ({lines} lines)",
                    path.strip_prefix(&root).unwrap().display()
                )
            })
        })
        .collect();
    assert!(
        long.is_empty(),
        "files over {MAX_FILE_LINES} lines; split them into submodules: {long:?}"
    );
}

#[test]
fn long_functions_say_why() {
    let root = source_root();
    let mut unexplained = Vec::new();
    let mut still_listed: Vec<(&str, &str)> = KNOWN_LONG.to_vec();
    for path in rust_files(&root) {
        let source = std::fs::read_to_string(&path).unwrap();
        let source_lines: Vec<&str> = source.lines().collect();
        let file = path
            .strip_prefix(&root)
            .unwrap()
            .to_string_lossy()
            .replace('\\', "/");
        for (name, start, length) in functions(&blank_literals(&source)) {
            if length <= MAX_FN_LINES || explains_length(&source_lines, start) {
                continue;
            }
            match still_listed
                .iter()
                .position(|&(f, n)| f == file && n == name)
            {
                Some(known) => {
                    still_listed.remove(known);
                }
                None => unexplained.push(format!("{file}:{} {name} ({length} lines)", start + 1)),
            }
        }
    }
    assert!(
        unexplained.is_empty(),
        "functions over {MAX_FN_LINES} lines without a `Long:` comment saying why; \
         extract well-named functions or say why they are one piece: {unexplained:?}"
    );
    assert!(
        still_listed.is_empty(),
        "short now (or explained): remove from KNOWN_LONG: {still_listed:?}"
    );
}

#[test]
fn the_checker_measures_functions_in_code_only() {
    let source = "fn a() {\n    let s = \"}{\";\n    // }\n    let c = '{';\n}\nfn b<'x>(v: &'x [u8; 2]) -> &'x str {\n    v\n}\nfn c();\n";
    let found = functions(&blank_literals(source));
    assert_eq!(
        found,
        vec![("a".to_string(), 0, 5), ("b".to_string(), 5, 3)]
    );
    let lines: Vec<&str> = "/// Long: one table.\n#[allow(x)]\nfn t() {}\n"
        .lines()
        .collect();
    assert!(explains_length(&lines, 2));
    assert!(!explains_length(&["/// Short.", "fn t() {}"], 1));
}
