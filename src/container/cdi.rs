//! Reading the Container Device Interface spec files for a CreateContainer: every `.json`
//! file of the configured directories, read afresh each time (a device plugin may have
//! written one a moment ago), then [`crate::spec::cdi`] resolves and applies. YAML spec
//! files are not read (crid has no YAML parser): each is named in an error line of the
//! daemon log, and the devices only it defines are unknown.

use std::os::unix::fs::{FileTypeExt, MetadataExt};
use std::path::PathBuf;

use crid_api::cri;

use crate::error::{Error, Result};
use crate::spec::cdi::{Registry, Resolved, SpecFile};

const FIELD: &str = "config.CDI_devices";

/// The edits the devices `asked` bring, from the spec files in `dirs`; InvalidArgument
/// naming `config.CDI_devices` when one is malformed, unknown, conflicting or unusable.
pub(super) async fn resolve(dirs: &[PathBuf], asked: &[cri::CdiDevice]) -> Result<Resolved> {
    if asked.is_empty() {
        return Ok(Resolved::default());
    }
    let dirs = dirs.to_vec();
    let names: Vec<String> = asked.iter().map(|d| d.name.clone()).collect();
    tokio::task::spawn_blocking(move || {
        let registry = load(&dirs);
        let mut resolved = registry
            .resolve(&names)
            .map_err(|e| Error::invalid(FIELD, e.to_string()))?;
        if crate::faults::on(crate::faults::Fault::CdiEditsIgnored) {
            return Ok(Resolved::default());
        }
        resolved
            .fill_nodes(stat_node)
            .map_err(|e| Error::invalid(FIELD, e.to_string()))?;
        Ok(resolved)
    })
    .await
    .map_err(|e| Error::host("resolving CDI devices")(std::io::Error::other(e.to_string())))?
}

/// Every spec file of `dirs`; a file that cannot be read or parsed is logged and skipped
/// (the devices it defines are then unknown, and the refusal says where crid looked).
fn load(dirs: &[PathBuf]) -> Registry {
    let mut registry = Registry::new(dirs.to_vec());
    for (priority, dir) in dirs.iter().enumerate() {
        let Ok(entries) = std::fs::read_dir(dir) else {
            continue;
        };
        let mut files: Vec<PathBuf> = entries.flatten().map(|e| e.path()).collect();
        files.sort();
        for path in files {
            match path.extension().and_then(|e| e.to_str()) {
                Some("json") => {}
                Some("yaml" | "yml") => {
                    tracing::error!(
                        "CDI spec {} is YAML, which crid does not read: write it as JSON",
                        path.display()
                    );
                    continue;
                }
                _ => continue,
            }
            let parsed = std::fs::read(&path)
                .map_err(|e| format!("{}: {e}", path.display()))
                .and_then(|json| SpecFile::parse(&path, &json).map_err(|e| e.to_string()));
            match parsed {
                Ok(spec) => registry.add(priority, path, spec),
                Err(e) => tracing::error!("CDI spec skipped: {e}"),
            }
        }
    }
    registry
}

/// The type and numbers of the host's device node at `path`.
fn stat_node(path: &str) -> std::result::Result<(String, i64, i64), String> {
    let meta = std::fs::metadata(path).map_err(|e| e.to_string())?;
    let ft = meta.file_type();
    let kind = if ft.is_char_device() {
        "c"
    } else if ft.is_block_device() {
        "b"
    } else if ft.is_fifo() {
        "p"
    } else {
        return Err("not a device node".into());
    };
    let rdev = meta.rdev();
    Ok((
        kind.into(),
        libc::major(rdev) as i64,
        libc::minor(rdev) as i64,
    ))
}
