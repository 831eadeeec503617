//! The shape of the workspace, checked: what `docs/design.md` promises about layers and
//! arrows must stay true as the code grows.
//!
//! - sync-core's layers point down: `engine` uses nothing above it, `protocol` only the engine,
//!   `server` and `client` never each other;
//! - no two modules of a crate use each other;
//! - no source file outside tests (and the changeset decoder) is longer than about 500 lines;
//! - crates depend the way the map says: the bindings and the CLI on the client, the client and
//!   the server on the core, the core on no other crate of ours; no CLI parser in the library,
//!   no HTTP client in the server, no randomness in the core.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

fn workspace() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .unwrap()
        .to_path_buf()
}

/// Every `.rs` file under `dir`.
fn sources(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            out.extend(sources(&path));
        } else if path.extension().is_some_and(|e| e == "rs") {
            out.push(path);
        }
    }
    out.sort();
    out
}

/// The module path of a file under a crate's `src/`.
fn module_of(src: &Path, file: &Path) -> Vec<String> {
    let rel = file.strip_prefix(src).unwrap().with_extension("");
    let mut parts: Vec<String> = rel
        .components()
        .map(|c| c.as_os_str().to_string_lossy().into_owned())
        .collect();
    if matches!(
        parts.last().map(String::as_str),
        Some("mod" | "lib" | "main")
    ) {
        parts.pop();
    }
    parts
}

/// A file's code without its `#[cfg(test)] mod tests` block and without comments.
fn code(file: &Path) -> String {
    let text = std::fs::read_to_string(file).unwrap();
    let text = match text.find("#[cfg(test)]\nmod tests") {
        Some(i) => &text[..i],
        None => &text[..],
    };
    text.lines()
        .map(|l| match l.find("//") {
            Some(i) => &l[..i],
            None => l,
        })
        .collect::<Vec<_>>()
        .join("\n")
}

/// Paths starting with `crate::` or `super::` in `code`, as module paths relative to the crate.
fn referenced(module: &[String], is_dir_module: bool, code: &str) -> Vec<Vec<String>> {
    let mut out = Vec::new();
    for start in ["crate::", "super::"] {
        let mut rest = code;
        while let Some(i) = rest.find(start) {
            let before = rest[..i].chars().last();
            rest = &rest[i..];
            let end = rest
                .find(|c: char| !(c.is_alphanumeric() || c == '_' || c == ':'))
                .unwrap_or(rest.len());
            let path: Vec<String> = rest[..end]
                .split("::")
                .filter(|s| !s.is_empty())
                .map(str::to_string)
                .collect();
            rest = &rest[end..];
            if before.is_some_and(|c| c.is_alphanumeric() || c == '_') {
                continue;
            }
            let resolved = if path[0] == "crate" {
                path[1..].to_vec()
            } else {
                // `super` of a file `a/b.rs` (module a::b) is `a`; of `a/mod.rs` (module a)
                // it is the crate root.
                let _ = is_dir_module;
                let mut base = module.to_vec();
                let mut p = &path[..];
                while p.first().is_some_and(|s| s == "super") {
                    base.pop();
                    p = &p[1..];
                }
                base.extend(p.iter().cloned());
                base
            };
            out.push(resolved);
        }
    }
    out
}

struct Crate {
    name: &'static str,
    /// module path → the modules it uses (longest prefix that is a module, not itself).
    uses: BTreeMap<Vec<String>, BTreeSet<Vec<String>>>,
}

fn scan(name: &'static str, src: &str) -> Crate {
    let src = workspace().join(src);
    let files = sources(&src);
    let modules: BTreeSet<Vec<String>> = files.iter().map(|f| module_of(&src, f)).collect();
    let mut uses = BTreeMap::new();
    for f in &files {
        let module = module_of(&src, f);
        let is_dir = f.file_name().is_some_and(|n| n == "mod.rs");
        let mut targets = BTreeSet::new();
        for path in referenced(&module, is_dir, &code(f)) {
            for k in (1..=path.len()).rev() {
                let prefix = path[..k].to_vec();
                if modules.contains(&prefix) {
                    if prefix != module {
                        targets.insert(prefix);
                    }
                    break;
                }
            }
        }
        uses.insert(module, targets);
    }
    Crate { name, uses }
}

fn crates() -> Vec<Crate> {
    vec![
        scan("sync-core", "sync-core/src"),
        scan("sync-server", "sync-server/src"),
        scan("sync-client", "sync-client/src"),
        scan("sync-cli", "sync-cli/src"),
        scan("mobile-bindings", "mobile-bindings/src"),
        scan("sync-testkit", "tools/testkit/src"),
        scan("sync-load", "tools/sync-load/src"),
        scan("notes-desktop", "apps/notes-desktop/src"),
    ]
}

#[test]
fn sync_core_layers_point_down() {
    let core = scan("sync-core", "sync-core/src");
    let layer = |m: &[String]| m.first().cloned().unwrap_or_default();
    let allowed: BTreeMap<&str, &[&str]> = BTreeMap::from([
        ("engine", &["engine", "names"][..]),
        ("protocol", &["protocol", "engine", "names"][..]),
        ("server", &["server", "protocol", "engine", "names"][..]),
        ("client", &["client", "protocol", "engine", "names"][..]),
    ]);
    let mut wrong = Vec::new();
    for (module, targets) in &core.uses {
        let Some(ok) = allowed.get(layer(module).as_str()) else {
            continue;
        };
        for t in targets {
            if !ok.contains(&layer(t).as_str()) {
                wrong.push(format!("{} uses {}", module.join("::"), t.join("::")));
            }
        }
    }
    assert!(
        wrong.is_empty(),
        "arrows pointing up or sideways: {wrong:#?}"
    );
}

#[test]
fn no_two_modules_use_each_other() {
    let mut cycles = Vec::new();
    for c in crates() {
        for (a, targets) in &c.uses {
            for b in targets {
                if a < b && c.uses.get(b).is_some_and(|t| t.contains(a)) {
                    cycles.push(format!("{}: {} <-> {}", c.name, a.join("::"), b.join("::")));
                }
            }
        }
    }
    assert!(
        cycles.is_empty(),
        "modules that use each other: {cycles:#?}"
    );
}

#[test]
fn source_files_stay_short() {
    const LIMIT: usize = 550;
    // The decoder walks a binary format field by field; splitting it would scatter one
    // grammar over files.
    const EXEMPT: [&str; 1] = ["sync-core/src/engine/decode.rs"];
    let root = workspace();
    let mut long = Vec::new();
    for dir in [
        "sync-core/src",
        "sync-server/src",
        "sync-client/src",
        "sync-cli/src",
        "mobile-bindings/src",
        "tools",
        "apps",
    ] {
        for f in sources(&root.join(dir)) {
            let rel = f
                .strip_prefix(&root)
                .unwrap()
                .to_string_lossy()
                .into_owned();
            if EXEMPT.contains(&rel.as_str())
                || rel.contains("/tests/")
                || rel.ends_with("tests.rs")
            {
                continue;
            }
            let lines = std::fs::read_to_string(&f).unwrap().lines().count();
            if lines > LIMIT {
                long.push(format!("{rel}: {lines} lines"));
            }
        }
    }
    assert!(
        long.is_empty(),
        "files longer than {LIMIT} lines: {long:#?}"
    );
}

/// The crate names in a manifest's `[dependencies]` (not dev- or build-dependencies).
fn normal_dependencies(manifest: &str) -> BTreeSet<String> {
    let text = std::fs::read_to_string(workspace().join(manifest)).unwrap();
    let mut out = BTreeSet::new();
    let mut in_deps = false;
    for line in text.lines() {
        let line = line.trim();
        if line.starts_with('[') {
            in_deps = line == "[dependencies]"
                || line.ends_with(".dependencies]") && !line.contains("dev-");
            continue;
        }
        if in_deps && let Some((name, _)) = line.split_once(['=', '.']) {
            let name = name.trim();
            if !name.is_empty() && !name.starts_with('#') {
                out.insert(name.to_string());
            }
        }
    }
    out
}

#[test]
fn crates_depend_the_way_the_map_says() {
    let ours = [
        "sync-core",
        "sync-server",
        "sync-client",
        "sync-cli",
        "mobile-bindings",
    ];
    let expect: [(&str, &[&str]); 6] = [
        ("sync-core/Cargo.toml", &[]),
        ("sync-server/Cargo.toml", &["sync-core"]),
        ("sync-client/Cargo.toml", &["sync-core"]),
        ("sync-cli/Cargo.toml", &["sync-core", "sync-client"]),
        ("mobile-bindings/Cargo.toml", &["sync-client"]),
        // An app depends on the client library alone (it re-exports what its API hands out).
        ("apps/notes-desktop/Cargo.toml", &["sync-client"]),
    ];
    for (manifest, want) in expect {
        let deps = normal_dependencies(manifest);
        let got: Vec<&str> = ours.iter().copied().filter(|c| deps.contains(*c)).collect();
        assert_eq!(got, want.to_vec(), "{manifest}: {deps:?}");
    }
    assert!(!normal_dependencies("sync-client/Cargo.toml").contains("clap"));
    assert!(!normal_dependencies("sync-server/Cargo.toml").contains("reqwest"));
    assert!(!normal_dependencies("sync-core/Cargo.toml").contains("rand"));
}
