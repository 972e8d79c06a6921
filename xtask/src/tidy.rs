//! Tidy checks: repository-wide rules that the compiler and clippy do not
//! enforce, run as ordinary `#[test]`s so `cargo test --workspace` (and so
//! `cargo xtask ci`) fails when one is broken.
//!
//! Every check lists all offending files, not just the first.
//!
//! The checks read files with `std::fs` and look at them with plain string
//! matching. For `unsafe` they first blank out comments and string
//! literals with a small lexer ([`code_only`]), so prose about `unsafe`
//! (and this file's own test data) does not count.

use std::fs;
use std::path::{Path, PathBuf};

/// The only files that may contain `unsafe` (CONTRIBUTING.md, "Unsafe"); `fuzz/` is
/// exempt, tests are not.
const UNSAFE_ALLOWED: &[&str] = &[
    "srv-proto/src/fd.rs",
    "srv-proto/src/env.rs",
    "srv-master/src/spawn.rs",
    "srv-master/src/activation.rs",
    // Adopting the descriptors an upgrade hands over: numbers checked
    // through borrows, then owned.
    "srv-master/src/upgrade/adopt.rs",
];

/// How many lines above an `unsafe {` its `// SAFETY:` comment may start.
const SAFETY_COMMENT_REACH: usize = 5;

/// A file of the repository: its path relative to the root, with `/`
/// separators, and its text.
struct SourceFile {
    path: String,
    text: String,
}

fn root() -> &'static Path {
    crate::workspace_root()
}

/// Every `.rs` file of the repository, skipping `target/` directories
/// (including `fuzz/target`) and `.git`, sorted by path.
fn rust_files() -> Vec<SourceFile> {
    files_with_extensions(&["rs"])
}

/// Every file of the repository whose extension is one of `extensions`,
/// skipping `target/` directories and `.git`, sorted by path.
fn files_with_extensions(extensions: &[&str]) -> Vec<SourceFile> {
    let mut paths = Vec::new();
    collect_files(root(), extensions, &mut paths);
    paths.sort();
    paths
        .into_iter()
        .map(|path| {
            let text = fs::read_to_string(&path)
                .unwrap_or_else(|error| panic!("cannot read {}: {error}", path.display()));
            SourceFile { path: relative(&path), text }
        })
        .collect()
}

fn collect_files(dir: &Path, extensions: &[&str], out: &mut Vec<PathBuf>) {
    let entries =
        fs::read_dir(dir).unwrap_or_else(|error| panic!("cannot list {}: {error}", dir.display()));
    for entry in entries {
        let entry = entry.unwrap_or_else(|error| panic!("cannot list {}: {error}", dir.display()));
        let path = entry.path();
        let file_type = entry.file_type().unwrap();
        if file_type.is_dir() {
            let name = entry.file_name();
            if name != "target" && name != ".git" {
                collect_files(&path, extensions, out);
            }
        } else if file_type.is_file()
            && path.extension().is_some_and(|ext| extensions.iter().any(|known| ext == *known))
        {
            out.push(path);
        }
    }
}

fn relative(path: &Path) -> String {
    let relative = path.strip_prefix(root()).unwrap_or(path);
    relative
        .components()
        .map(|part| part.as_os_str().to_string_lossy())
        .collect::<Vec<_>>()
        .join("/")
}

fn read(relative_path: &str) -> String {
    let path = root().join(relative_path);
    fs::read_to_string(&path)
        .unwrap_or_else(|error| panic!("cannot read {}: {error}", path.display()))
}

/// Panics with `what` and one offender per line, if there are any.
fn report(what: &str, offenders: &[String]) {
    if !offenders.is_empty() {
        panic!("{what} ({} found):\n  {}\n", offenders.len(), offenders.join("\n  "));
    }
}

#[test]
fn rust_files_start_with_module_docs() {
    let offenders: Vec<String> = rust_files()
        .into_iter()
        .filter(|file| {
            let first = file.text.lines().find(|line| !line.trim().is_empty());
            !first.is_some_and(|line| line.starts_with("//!"))
        })
        .map(|file| file.path)
        .collect();
    report(
        "every .rs file must start with a `//!` comment saying what it is for (CONTRIBUTING.md, Docs); \
         its first non-empty line does not",
        &offenders,
    );
}

#[test]
fn no_file_cites_documents_outside_the_repository() {
    // Built from pieces, so that this file does not cite them itself.
    let outside: Vec<String> = ["STYLE", "DESIGN", "DEVELOPERS"]
        .iter()
        .map(|name| format!("{name}.md"))
        .chain(std::iter::once(format!("..{}shared", '/')))
        .collect();
    let mut offenders = Vec::new();
    for file in files_with_extensions(&["rs", "md", "toml", "yml", "yaml", "service", "socket"]) {
        for (index, line) in file.text.lines().enumerate() {
            if outside.iter().any(|cited| line.contains(cited.as_str())) {
                offenders.push(format!("{}:{}: {}", file.path, index + 1, line.trim()));
            }
        }
    }
    report(
        "the repository explains itself: carry the rule into CONTRIBUTING.md or ARCHITECTURE.md \
         instead of citing a document it does not contain",
        &offenders,
    );
}

#[test]
fn no_bincode_in_lockfiles() {
    // RUSTSEC-2025-0141: bincode is unmaintained (CONTRIBUTING.md, "Dependencies").
    let mut offenders = Vec::new();
    for lockfile in ["Cargo.lock", "fuzz/Cargo.lock"] {
        if lockfile != "Cargo.lock" && !root().join(lockfile).exists() {
            continue;
        }
        for (index, line) in read(lockfile).lines().enumerate() {
            if line.contains("bincode") {
                offenders.push(format!("{lockfile}:{}: {}", index + 1, line.trim()));
            }
        }
    }
    report("bincode must not be a dependency (RUSTSEC-2025-0141; use postcard)", &offenders);
}

#[test]
fn unsafe_only_in_allowed_files() {
    let mut offenders = Vec::new();
    for file in rust_files() {
        if file.path.starts_with("fuzz/") || UNSAFE_ALLOWED.contains(&file.path.as_str()) {
            continue;
        }
        for use_of_unsafe in unsafe_uses(&file.text) {
            offenders.push(format!("{}:{}", file.path, use_of_unsafe.line));
        }
    }
    report(
        &format!(
            "`unsafe` is allowed only in {} (CONTRIBUTING.md), not in tests nor anywhere else",
            UNSAFE_ALLOWED.join(", ")
        ),
        &offenders,
    );
}

#[test]
fn unsafe_blocks_have_safety_comments() {
    let mut offenders = Vec::new();
    for file in rust_files() {
        let lines: Vec<&str> = file.text.lines().collect();
        for use_of_unsafe in unsafe_uses(&file.text).into_iter().filter(|use_| use_.is_block) {
            // `line` counts from 1, so the lines above are `line - 1 - reach .. line - 1`.
            let above = &lines[(use_of_unsafe.line - 1).saturating_sub(SAFETY_COMMENT_REACH)
                ..use_of_unsafe.line - 1];
            if !above.iter().any(|line| line.contains("// SAFETY:")) {
                offenders.push(format!("{}:{}", file.path, use_of_unsafe.line));
            }
        }
    }
    report(
        &format!(
            "every `unsafe {{` block needs a `// SAFETY:` comment within the \
             {SAFETY_COMMENT_REACH} lines above it, saying why it is sound here"
        ),
        &offenders,
    );
}

/// The most lines a library source file may have (CONTRIBUTING.md,
/// Layout): past that, a module becomes a directory split by concern.
const MAX_LIBRARY_FILE_LINES: usize = 1000;

#[test]
fn library_source_files_stay_small() {
    let offenders: Vec<String> = rust_files()
        .into_iter()
        .filter(|file| {
            let library = ["srv-proto/src/", "srv-master/src/", "srv-worker/src/", "srv/src/"]
                .iter()
                .any(|dir| file.path.starts_with(dir));
            // A test module is not the library, however it is nested.
            let test = file.path.split('/').any(|part| part == "tests" || part == "tests.rs");
            library && !test && file.text.lines().count() > MAX_LIBRARY_FILE_LINES
        })
        .map(|file| format!("{} ({} lines)", file.path, file.text.lines().count()))
        .collect();
    report(
        &format!(
            "no library source file may exceed {MAX_LIBRARY_FILE_LINES} lines \
             (CONTRIBUTING.md, Layout): split it by concern"
        ),
        &offenders,
    );
}

#[test]
fn members_inherit_workspace_lints() {
    let manifest = read("Cargo.toml");
    let members = workspace_members(&manifest);
    assert!(!members.is_empty(), "no `members = [...]` found in Cargo.toml");
    let offenders: Vec<String> = members
        .into_iter()
        .map(|member| format!("{member}/Cargo.toml"))
        .filter(|path| !inherits_lints(&read(path)))
        .collect();
    report(
        "every workspace member must inherit the workspace lints with \
         `[lints]` + `workspace = true` (CONTRIBUTING.md, Lints)",
        &offenders,
    );
}

#[test]
fn internal_dependencies_have_versions() {
    let manifest = read("Cargo.toml");
    let mut offenders = Vec::new();
    let mut table = String::new();
    // The table form, `[workspace.dependencies.name]`: (name, has path, has version).
    let mut dependency_table: Option<(String, bool, bool)> = None;
    let close_table = |table: Option<(String, bool, bool)>, offenders: &mut Vec<String>| {
        if let Some((name, true, false)) = table {
            offenders.push(format!("Cargo.toml: {name}"));
        }
    };
    for line in manifest.lines().map(str::trim) {
        if line.starts_with('[') {
            close_table(dependency_table.take(), &mut offenders);
            table = line.trim_matches(|c| c == '[' || c == ']').trim().to_owned();
            if let Some(name) = table.strip_prefix("workspace.dependencies.") {
                dependency_table = Some((name.to_owned(), false, false));
            }
            continue;
        }
        let Some((key, value)) = line.split_once('=') else { continue };
        let key = key.trim();
        if let Some((_, has_path, has_version)) = &mut dependency_table {
            *has_path |= key == "path";
            *has_version |= key == "version";
        } else if table == "workspace.dependencies"
            && has_key(value, "path")
            && !has_key(value, "version")
        {
            offenders.push(format!("Cargo.toml: {key}"));
        }
    }
    close_table(dependency_table, &mut offenders);
    report(
        "internal path dependencies in [workspace.dependencies] of Cargo.toml need a `version` \
         too, so publishing needs no edit (CONTRIBUTING.md, Dependencies)",
        &offenders,
    );
}

#[test]
fn readme_and_ci_script_run_cargo_xtask_ci() {
    let mut offenders = Vec::new();
    let readme_path = root().join("README.md");
    match fs::read_to_string(&readme_path) {
        Err(error) => offenders.push(format!("README.md: cannot read it: {error}")),
        Ok(readme) => match first_code_block(&readme) {
            None => offenders.push("README.md: has no fenced code block".to_owned()),
            Some(block) => {
                let runs_http =
                    block.lines().any(|line| line.contains("http") && line.contains("--workers"));
                if !runs_http {
                    offenders.push(
                        "README.md: its first code block does not run `http` with `--workers`"
                            .to_owned(),
                    );
                }
                if !block.contains("cargo xtask ci") {
                    offenders.push(
                        "README.md: its first code block does not contain `cargo xtask ci`"
                            .to_owned(),
                    );
                }
            }
        },
    }
    match fs::read_to_string(root().join(".ci/run")) {
        Err(error) => offenders.push(format!(".ci/run: cannot read it: {error}")),
        Ok(script) if !script.contains("cargo xtask ci") => {
            offenders.push(".ci/run: does not run `cargo xtask ci`".to_owned());
        }
        Ok(_) => {}
    }
    report(
        "README.md's first code block must show how to run the reference server and \
         `cargo xtask ci`, which `.ci/run` must run (CONTRIBUTING.md)",
        &offenders,
    );
}

/// The quoted strings of the root manifest's `members = [...]`.
fn workspace_members(manifest: &str) -> Vec<String> {
    let Some(start) = manifest.find("members") else { return Vec::new() };
    let after = &manifest[start..];
    let (Some(open), Some(close)) = (after.find('['), after.find(']')) else { return Vec::new() };
    after[open + 1..close]
        .split(',')
        .map(|item| item.trim().trim_matches('"').to_owned())
        .filter(|item| !item.is_empty())
        .collect()
}

/// Whether a member manifest has `[lints]` with `workspace = true`, or the
/// dotted `lints.workspace = true`.
fn inherits_lints(manifest: &str) -> bool {
    let mut in_lints = false;
    for line in manifest.lines().map(|line| line.split('#').next().unwrap_or_default().trim()) {
        if line.starts_with('[') {
            in_lints = line == "[lints]";
            continue;
        }
        let compact: String = line.chars().filter(|c| !c.is_whitespace()).collect();
        if (in_lints && compact == "workspace=true") || compact == "lints.workspace=true" {
            return true;
        }
    }
    false
}

/// Whether an inline table such as `{ path = "x", version = "1" }` has `key`.
fn has_key(inline_table: &str, key: &str) -> bool {
    inline_table
        .trim()
        .trim_start_matches('{')
        .trim_end_matches('}')
        .split(',')
        .any(|item| item.split_once('=').is_some_and(|(name, _)| name.trim() == key))
}

/// The contents of the first fenced (```` ``` ````) code block of a
/// Markdown text.
fn first_code_block(markdown: &str) -> Option<String> {
    let mut lines = markdown.lines().skip_while(|line| !line.trim_start().starts_with("```"));
    lines.next()?;
    let mut block = String::new();
    for line in lines {
        if line.trim_start().starts_with("```") {
            return Some(block);
        }
        block.push_str(line);
        block.push('\n');
    }
    None
}

/// One use of the `unsafe` keyword in code.
#[derive(Debug, PartialEq, Eq)]
struct UnsafeUse {
    /// Line number, from 1.
    line: usize,
    /// An `unsafe { ... }` block, rather than `unsafe fn`, `unsafe impl`,
    /// `unsafe extern` or `#[unsafe(...)]`.
    is_block: bool,
}

/// Every `unsafe` keyword outside comments and literals.
fn unsafe_uses(text: &str) -> Vec<UnsafeUse> {
    let code: Vec<char> = code_only(text).chars().collect();
    let mut uses = Vec::new();
    let mut line = 1;
    let mut i = 0;
    while i < code.len() {
        if code[i] == '\n' {
            line += 1;
        }
        if !is_ident_char(code[i]) {
            i += 1;
            continue;
        }
        let start = i;
        while i < code.len() && is_ident_char(code[i]) {
            i += 1;
        }
        let word: String = code[start..i].iter().collect();
        if word == "unsafe" {
            let next = code[i..].iter().find(|c| !c.is_whitespace());
            uses.push(UnsafeUse { line, is_block: next == Some(&'{') });
        }
    }
    uses
}

fn is_ident_char(c: char) -> bool {
    c.is_alphanumeric() || c == '_'
}

/// `text` with comments and string, byte-string and char literals replaced
/// by spaces, newlines kept so line numbers stay right.
///
/// A rough lexer, good enough for the checks: it knows line and (nested)
/// block comments, escapes, raw strings with `#`s, and lifetimes versus
/// char literals.
fn code_only(text: &str) -> String {
    let chars: Vec<char> = text.chars().collect();
    let mut out = String::with_capacity(text.len());
    let blank = |out: &mut String, chars: &[char]| {
        out.extend(chars.iter().map(|&c| if c == '\n' { '\n' } else { ' ' }));
    };
    let mut i = 0;
    while i < chars.len() {
        let c = chars[i];
        let next = chars.get(i + 1).copied();
        let end = if c == '/' && next == Some('/') {
            chars[i..].iter().position(|&c| c == '\n').map_or(chars.len(), |n| i + n)
        } else if c == '/' && next == Some('*') {
            block_comment_end(&chars, i)
        } else if c == '"' {
            string_end(&chars, i + 1)
        } else if c == '\'' {
            match char_literal_end(&chars, i) {
                Some(end) => end,
                None => {
                    // A lifetime or a label.
                    out.push(c);
                    i += 1;
                    continue;
                }
            }
        } else if is_ident_char(c) {
            let start = i;
            while i < chars.len() && is_ident_char(chars[i]) {
                i += 1;
            }
            let word: String = chars[start..i].iter().collect();
            match (word.as_str(), chars.get(i).copied()) {
                ("r" | "br" | "cr", Some('"' | '#')) => {
                    if let Some(end) = raw_string_end(&chars, i) {
                        blank(&mut out, &chars[start..end]);
                        i = end;
                        continue;
                    }
                }
                ("b" | "c", Some('"')) => {
                    let end = string_end(&chars, i + 1);
                    blank(&mut out, &chars[start..end]);
                    i = end;
                    continue;
                }
                ("b", Some('\'')) => {
                    if let Some(end) = char_literal_end(&chars, i) {
                        blank(&mut out, &chars[start..end]);
                        i = end;
                        continue;
                    }
                }
                _ => {}
            }
            out.extend(&chars[start..i]);
            continue;
        } else {
            out.push(c);
            i += 1;
            continue;
        };
        blank(&mut out, &chars[i..end]);
        i = end;
    }
    out
}

/// The end (exclusive) of the block comment that starts at `start`.
fn block_comment_end(chars: &[char], start: usize) -> usize {
    let mut depth = 0;
    let mut i = start;
    while i < chars.len() {
        match (chars[i], chars.get(i + 1)) {
            ('/', Some('*')) => {
                depth += 1;
                i += 2;
            }
            ('*', Some('/')) => {
                depth -= 1;
                i += 2;
                if depth == 0 {
                    return i;
                }
            }
            _ => i += 1,
        }
    }
    chars.len()
}

/// The end (exclusive) of a string whose contents start at `start`, just
/// after the opening quote.
fn string_end(chars: &[char], start: usize) -> usize {
    let mut i = start;
    while i < chars.len() {
        match chars[i] {
            '\\' => i += 2,
            '"' => return i + 1,
            _ => i += 1,
        }
    }
    chars.len()
}

/// The end (exclusive) of a raw string whose `#`s or quote start at `start`,
/// just after the `r`; `None` if it is not a raw string after all.
fn raw_string_end(chars: &[char], start: usize) -> Option<usize> {
    let hashes = chars[start..].iter().take_while(|&&c| c == '#').count();
    if chars.get(start + hashes) != Some(&'"') {
        return None;
    }
    let mut i = start + hashes + 1;
    while i < chars.len() {
        if chars[i] == '"'
            && chars[i + 1..].iter().take(hashes).filter(|&&c| c == '#').count() == hashes
        {
            return Some(i + 1 + hashes);
        }
        i += 1;
    }
    Some(chars.len())
}

/// The end (exclusive) of the char literal whose quote is at `start`, or
/// `None` if the quote starts a lifetime or label.
fn char_literal_end(chars: &[char], start: usize) -> Option<usize> {
    match chars.get(start + 1)? {
        '\\' => {
            let close = chars.get(start + 3..)?.iter().position(|&c| c == '\'')?;
            Some(start + 3 + close + 1)
        }
        _ if chars.get(start + 2) == Some(&'\'') => Some(start + 3),
        _ => None,
    }
}

#[test]
fn code_only_blanks_comments_and_literals() {
    let text = concat!(
        "// unsafe in a comment\n",
        "/* unsafe /* nested */ still unsafe */ fn f<'a>(x: &'a str) -> char {\n",
        "    let s = \"unsafe \\\" { \"; let r = r#\"unsafe \" {\"#; let b = b'\\'';\n",
        "    let c = '\"'; unsafe { g(s, r, b) }; 'x'\n",
        "}\n",
    );
    let code = code_only(text);
    assert_eq!(code.lines().count(), text.lines().count());
    assert!(code.contains("fn f<'a>(x: &'a str) -> char {"), "{code}");
    assert_eq!(code.matches("unsafe").count(), 1, "{code}");
    assert!(code.contains("unsafe { g(s, r, b) };"), "{code}");
    assert_eq!(unsafe_uses(text), [UnsafeUse { line: 4, is_block: true }]);
}

#[test]
fn unsafe_uses_tells_blocks_from_other_uses() {
    let text = "#![allow(unsafe_code)]\nunsafe fn f() {}\nunsafe impl Send for X {}\nlet x =\n    unsafe\n    { f() };\n";
    let uses = unsafe_uses(text);
    let expected = [
        UnsafeUse { line: 2, is_block: false },
        UnsafeUse { line: 3, is_block: false },
        UnsafeUse { line: 5, is_block: true },
    ];
    assert_eq!(uses, expected);
}

#[test]
fn manifest_helpers() {
    assert_eq!(workspace_members("[workspace]\nmembers = [\"a\", \"b\"]\n"), ["a", "b"]);
    assert_eq!(workspace_members("[workspace]\nmembers = [\n  \"a\",\n  \"b\",\n]\n"), ["a", "b"]);
    assert!(inherits_lints("[package]\nname = \"x\"\n\n[lints]\nworkspace = true\n"));
    assert!(!inherits_lints("[lints]\n\n[dependencies]\nworkspace = true\n"));
    assert!(has_key(r#"{ path = "a", version = "0.1.0" }"#, "version"));
    assert!(!has_key(r#"{ path = "a" }"#, "version"));
    let readme =
        "# srv\n\ntext\n\n```sh\ncargo run --bin http -- --workers 4\ncargo xtask ci\n```\n";
    assert_eq!(
        first_code_block(readme).as_deref(),
        Some("cargo run --bin http -- --workers 4\ncargo xtask ci\n")
    );
}
