//! The crate's floors and what each may import (the README's Architecture section and the
//! `lib.rs` docs state the same rules). Reads the sources: a `use` that climbs the wrong way
//! fails here, naming the file and the path.
//!
//! Test code is exempt (files under a `tests/` folder, `tests.rs`, `*_tests.rs`, and inline
//! `#[cfg(test)] mod` blocks): tests may drive a driver through the public API.

use std::fs;
use std::path::{Path, PathBuf};

/// Every `.rs` file under `dir`.
fn sources(dir: &Path, out: &mut Vec<PathBuf>) {
    for e in fs::read_dir(dir).unwrap() {
        let p = e.unwrap().path();
        if p.is_dir() {
            sources(&p, out);
        } else if p.extension().is_some_and(|x| x == "rs") {
            out.push(p);
        }
    }
}

fn is_test_file(rel: &str) -> bool {
    rel.contains("/tests/") || rel.ends_with("/tests.rs") || rel.ends_with("_tests.rs")
}

/// The text of `src` without its `#[cfg(test)]` / `#[cfg(all(test, ...))]` modules.
fn without_test_modules(src: &str) -> String {
    let mut out = String::new();
    let mut lines = src.lines().peekable();
    while let Some(line) = lines.next() {
        let t = line.trim_start();
        if t.starts_with("#[cfg(test)]") || t.starts_with("#[cfg(all(test") {
            // Skip further attributes, then a `mod name {` block (or a `mod name;` line).
            while lines
                .peek()
                .is_some_and(|l| l.trim_start().starts_with("#["))
            {
                lines.next();
            }
            if let Some(m) = lines.peek() {
                let m = m.trim_start();
                if m.starts_with("mod ") || m.starts_with("pub(crate) mod ") {
                    let first = lines.next().unwrap();
                    let mut depth =
                        first.matches('{').count() as i64 - first.matches('}').count() as i64;
                    while depth > 0 {
                        let Some(l) = lines.next() else { break };
                        depth += l.matches('{').count() as i64 - l.matches('}').count() as i64;
                    }
                    continue;
                }
            }
            continue;
        }
        out.push_str(line);
        out.push('\n');
    }
    out
}

/// The first two segments of every `crate::a::b` path in `code` (comments dropped), with
/// `use crate::{a, b::c}` groups expanded one level.
fn crate_paths(code: &str) -> Vec<(String, String)> {
    let mut found = Vec::new();
    for line in code.lines() {
        let line = match line.find("//") {
            Some(i) => &line[..i],
            None => line,
        };
        let mut rest = line;
        while let Some(i) = rest.find("crate::") {
            // `$crate::` in macros counts the same.
            rest = &rest[i + "crate::".len()..];
            if let Some(group) = rest.strip_prefix('{') {
                let end = group.find('}').unwrap_or(group.len());
                for item in group[..end].split(',') {
                    let mut seg = item.trim().split("::");
                    let a = seg.next().unwrap_or("").trim().to_string();
                    let b = seg.next().unwrap_or("").trim().to_string();
                    if !a.is_empty() {
                        found.push((a, b));
                    }
                }
                continue;
            }
            let ident = |s: &str| -> String {
                s.chars()
                    .take_while(|c| c.is_alphanumeric() || *c == '_')
                    .collect()
            };
            let a = ident(rest);
            let after = &rest[a.len()..];
            let b = after.strip_prefix("::").map(ident).unwrap_or_default();
            found.push((a, b));
        }
    }
    found
}

/// Which floor a file (path relative to `src/`) is on.
fn floor(rel: &str) -> &'static str {
    match rel.split('/').next().unwrap() {
        "abi.rs" | "region.rs" | "error.rs" | "os.rs" | "port_name" => "base",
        "ring" => "ring",
        "backend" => "backend",
        "sync" => "sync",
        "tokio_async" => "tokio",
        "wire" => "wire",
        "udp" => "udp",
        _ => "top",
    }
}

const DRIVERS: [&str; 5] = ["kernel", "emulated", "xdp", "afpacket", "linux"];

/// Why `(a, b)` (the path `crate::a::b`) may not be imported from `rel`, if it may not.
fn violation(rel: &str, a: &str, b: &str) -> Option<String> {
    let root_reexport = a.chars().next().is_some_and(|c| c.is_ascii_uppercase());
    match floor(rel) {
        "base" => matches!(
            a,
            "ring" | "backend" | "sync" | "tokio_async" | "fallback" | "vale" | "prelude"
        )
        .then(|| "the base floor imports no other floor".to_string())
        .or_else(|| root_reexport.then(|| "the base floor imports no user API".into())),
        "ring" => (!matches!(a, "abi" | "region" | "error" | "ring"))
            .then(|| "the ring layer imports only abi, region and error".into()),
        "backend" => {
            if matches!(a, "sync" | "tokio_async" | "fallback" | "vale" | "prelude")
                || root_reexport
            {
                return Some("drivers never import the user API".into());
            }
            // A driver folder reaches no other driver (the Linux plumbing is shared).
            let parts: Vec<&str> = rel.split('/').collect();
            let own = (parts.len() > 2).then(|| parts[1]);
            if a == "backend" && DRIVERS.contains(&b) && b != "linux" {
                if let Some(own) = own {
                    if own != b {
                        return Some(format!("driver {own} reaches into driver {b}"));
                    }
                } else if !rel.starts_with("backend/mod.rs") {
                    return Some("only the seam (backend/mod.rs) names the drivers".into());
                }
            }
            None
        }
        "sync" => {
            if a == "tokio_async" {
                return Some("the sync layer does not know the Tokio layer".into());
            }
            (a == "backend" && DRIVERS.contains(&b))
                .then(|| format!("the sync layer reaches drivers only through the seam, not {b}"))
        }
        "tokio" => (!matches!(a, "sync" | "udp" | "wire" | "error" | "os" | "tokio_async")
            && !root_reexport)
            .then(|| "the Tokio layer imports only sync, udp, wire (and error, os)".into()),
        "wire" => (a != "wire").then(|| "the wire layer imports nothing of the crate".into()),
        "udp" => {
            if matches!(a, "tokio_async" | "fallback" | "vale" | "prelude") {
                return Some("the UDP layer sits below the Tokio layer".into());
            }
            if a == "backend" && DRIVERS.contains(&b) && b != "linux" {
                return Some(format!("the UDP layer reaches no driver ({b})"));
            }
            (!matches!(
                a,
                "udp" | "sync" | "wire" | "error" | "port_name" | "backend" | "BackendKind"
            ))
            .then(|| "the UDP layer imports sync, wire, error, port_name, backend::linux".into())
        }
        _ => None,
    }
}

#[test]
fn every_floor_imports_only_from_below() {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    if !src.is_dir() {
        // A test binary copied away from its checkout (ci/kernel-tests.sh runs them in the
        // netmap guest): the sources were checked where it was built.
        println!("skipped: {} not found", src.display());
        return;
    }
    let mut files = Vec::new();
    sources(&src, &mut files);
    assert!(files.len() > 40, "found only {} sources", files.len());
    let mut bad = Vec::new();
    for f in &files {
        let rel = f
            .strip_prefix(&src)
            .unwrap()
            .to_string_lossy()
            .replace('\\', "/");
        if is_test_file(&format!("/{rel}")) {
            continue;
        }
        let code = without_test_modules(&fs::read_to_string(f).unwrap());
        for (a, b) in crate_paths(&code) {
            if let Some(why) = violation(&rel, &a, &b) {
                bad.push(format!("src/{rel}: crate::{a}::{b}: {why}"));
            }
        }
    }
    assert!(
        bad.is_empty(),
        "imports against the floors:\n{}",
        bad.join("\n")
    );
}

#[test]
fn the_checker_catches_what_it_should() {
    // The rules themselves, on made-up lines (so a broken parser cannot pass silently).
    let code = "use crate::sync::Netmap;\nuse crate::{abi, backend::kernel};\n";
    let paths = crate_paths(code);
    assert_eq!(
        paths,
        vec![
            ("sync".into(), "Netmap".into()),
            ("abi".into(), String::new()),
            ("backend".into(), "kernel".into())
        ]
    );
    assert!(violation("ring/raw.rs", "sync", "raw").is_some());
    assert!(violation("ring/raw.rs", "abi", "NetmapRing").is_none());
    assert!(violation("backend/xdp/mod.rs", "sync", "port").is_some());
    assert!(violation("backend/xdp/mod.rs", "backend", "afpacket").is_some());
    assert!(violation("backend/xdp/mod.rs", "backend", "linux").is_none());
    assert!(violation("sync/port.rs", "backend", "kernel").is_some());
    assert!(violation("sync/port.rs", "backend", "Backend").is_none());
    assert!(violation("tokio_async/mod.rs", "backend", "RingWaker").is_some());
    assert!(violation("tokio_async/mod.rs", "sync", "Netmap").is_none());
    assert!(violation("wire/udp.rs", "sync", "Frame").is_some());
    assert!(violation("wire/udp.rs", "wire", "checksum").is_none());
    assert!(violation("udp/port.rs", "tokio_async", "TokioNetmap").is_some());
    assert!(violation("udp/port.rs", "backend", "xdp").is_some());
    assert!(violation("udp/resolve.rs", "backend", "linux").is_none());
    assert!(violation("tokio_async/udp.rs", "udp", "Endpoint").is_none());
    let stripped =
        without_test_modules("fn a() {}\n#[cfg(test)]\nmod tests {\n    use crate::sync::X;\n}\n");
    assert!(crate_paths(&stripped).is_empty(), "{stripped}");
}
