//! The module graph has no upward import (DESIGN.md: dependencies point down). Each rule
//! names a layer and what it may not reach; a `crate::<module>` path anywhere in the
//! layer's source (imports and inline paths alike) breaks it. Runs without root.

use std::path::{Path, PathBuf};

/// (layer: files or directories under src/, modules it must not import).
const RULES: &[(&[&str], &[&str])] = &[
    // The bottom: persisted records, content storage, cgroup readers, digests.
    (
        &["state", "storage", "stats", "digest.rs"],
        &[
            "image",
            "pod",
            "container",
            "server",
            "daemon",
            "registry",
            "recover",
            "runtime",
            "network",
            "streaming",
            "monitor",
            "error",
            "check",
        ],
    ),
    // Records and their paths know nothing of the storage built on them.
    (&["state"], &["storage", "host"]),
    // The seams and the registry sit below both services and the edge.
    (
        &["registry", "host", "runtime", "network", "image"],
        &[
            "pod",
            "container",
            "server",
            "daemon",
            "recover",
            "streaming",
        ],
    ),
    // The container service sits below the pod service; neither knows the edge.
    (&["container"], &["pod", "server", "daemon", "recover"]),
    (&["pod"], &["server", "daemon", "recover"]),
    (&["recover.rs"], &["server", "daemon"]),
];

fn sources(path: &Path, out: &mut Vec<PathBuf>) {
    if path.is_dir() {
        for e in std::fs::read_dir(path).expect("read_dir").flatten() {
            sources(&e.path(), out);
        }
    } else if path.extension().is_some_and(|e| e == "rs") {
        out.push(path.to_path_buf());
    }
}

/// Every `crate::<module>` the text names.
fn crate_paths(text: &str) -> Vec<String> {
    let mut out = Vec::new();
    for (i, _) in text.match_indices("crate::") {
        // `crid::crate::` cannot occur; a preceding identifier char means another path.
        if text[..i]
            .chars()
            .last()
            .is_some_and(|c| c.is_alphanumeric() || c == '_')
        {
            continue;
        }
        let rest = &text[i + "crate::".len()..];
        let name: String = rest
            .chars()
            .take_while(|c| c.is_alphanumeric() || *c == '_')
            .collect();
        out.push(name);
    }
    out
}

#[test]
fn no_layer_imports_a_layer_above_it() {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut broken = Vec::new();
    for (layers, forbidden) in RULES {
        for layer in *layers {
            let mut files = Vec::new();
            sources(&src.join(layer), &mut files);
            assert!(!files.is_empty(), "{layer} has no sources");
            for f in files {
                let text = std::fs::read_to_string(&f).expect("read");
                for name in crate_paths(&text) {
                    if forbidden.contains(&name.as_str()) {
                        broken.push(format!(
                            "{} imports crate::{name}",
                            f.strip_prefix(&src).unwrap_or(&f).display()
                        ));
                    }
                }
            }
        }
    }
    broken.sort();
    broken.dedup();
    assert!(broken.is_empty(), "upward imports:\n{}", broken.join("\n"));
}

#[test]
fn the_scanner_sees_imports_and_inline_paths() {
    let text = "use crate::pod::PodService;\nlet x = crate::server::bounded(y);\nfoo_crate::bar";
    assert_eq!(crate_paths(text), ["pod", "server"]);
}
