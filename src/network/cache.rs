//! The on-disk cache of successful ADDs, so DEL and CHECK use the configuration and result
//! the attachment was made with, across daemon restarts and configuration changes.
//!
//! Layout: `<dir>/<container id>/<network>-<ifname>.json`, one file per attachment, written
//! atomically (temp file, fsync, rename, fsync of the directory).

use std::io::Write;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

/// The `kind` written into every entry, to recognise the format later.
const KIND: &str = "cridCniCacheV1";

/// One cached attachment.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct Entry {
    pub kind: String,
    pub container_id: String,
    pub network_name: String,
    pub if_name: String,
    /// The `CNI_ARGS` string of the ADD.
    pub cni_args: String,
    /// The capability arguments of the ADD (e.g. `portMappings`).
    pub capability_args: Map<String, Value>,
    /// The network configuration list the ADD ran.
    pub config: Value,
    /// The final result of the chain.
    pub result: Value,
}

impl Entry {
    pub(crate) fn new(
        container_id: &str,
        network_name: &str,
        if_name: &str,
        cni_args: String,
        capability_args: Map<String, Value>,
        config: Value,
        result: Value,
    ) -> Self {
        Entry {
            kind: KIND.to_owned(),
            container_id: container_id.to_owned(),
            network_name: network_name.to_owned(),
            if_name: if_name.to_owned(),
            cni_args,
            capability_args,
            config,
            result,
        }
    }
}

/// The cache directory. Ids and names are checked by the caller to be single path
/// components before they reach here.
#[derive(Debug, Clone)]
pub(crate) struct Cache {
    dir: PathBuf,
}

impl Cache {
    pub(crate) fn new(dir: PathBuf) -> Self {
        Cache { dir }
    }

    pub(crate) fn dir(&self) -> &Path {
        &self.dir
    }

    fn container_dir(&self, container_id: &str) -> PathBuf {
        self.dir.join(container_id)
    }

    /// The file of one attachment.
    pub(crate) fn path(&self, container_id: &str, network: &str, ifname: &str) -> PathBuf {
        self.container_dir(container_id)
            .join(format!("{network}-{ifname}.json"))
    }

    /// Writes `entry` atomically, replacing an older one.
    pub(crate) fn store(&self, entry: &Entry) -> std::io::Result<PathBuf> {
        let dir = self.container_dir(&entry.container_id);
        std::fs::create_dir_all(&dir)?;
        let path = self.path(&entry.container_id, &entry.network_name, &entry.if_name);
        let mut tmp = tempfile::Builder::new().prefix(".tmp-").tempfile_in(&dir)?;
        serde_json::to_writer(&mut tmp, entry)?;
        tmp.flush()?;
        tmp.as_file().sync_all()?;
        tmp.persist(&path).map_err(|e| e.error)?;
        std::fs::File::open(&dir)?.sync_all()?;
        Ok(path)
    }

    /// Every readable entry of a container, in file name order. Entries that cannot be read
    /// or parsed are returned as errors next to their path, so the caller can log and drop
    /// them.
    pub(crate) fn load_all(
        &self,
        container_id: &str,
    ) -> std::io::Result<Vec<(PathBuf, Result<Entry, String>)>> {
        let dir = self.container_dir(container_id);
        let mut paths = match std::fs::read_dir(&dir) {
            Ok(entries) => entries
                .filter_map(Result::ok)
                .map(|e| e.path())
                .filter(|p| p.extension().is_some_and(|e| e == "json"))
                .collect::<Vec<_>>(),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
            Err(e) => return Err(e),
        };
        paths.sort();
        Ok(paths
            .into_iter()
            .map(|p| {
                let entry = std::fs::read(&p)
                    .map_err(|e| format!("cannot read: {e}"))
                    .and_then(|b| {
                        serde_json::from_slice::<Entry>(&b).map_err(|e| format!("invalid: {e}"))
                    })
                    .and_then(|e| {
                        if e.kind == KIND {
                            Ok(e)
                        } else {
                            Err(format!("unknown kind {:?}", e.kind))
                        }
                    });
                (p, entry)
            })
            .collect())
    }

    /// Removes one entry file (absent is fine), and the container's directory once empty.
    pub(crate) fn remove(&self, path: &Path) -> std::io::Result<()> {
        match std::fs::remove_file(path) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => return Err(e),
        }
        if let Some(dir) = path.parent() {
            // Fails while other entries (or a temp file being written) remain: that is fine.
            let _ = std::fs::remove_dir(dir);
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn entries_round_trip_and_removal_cleans_the_directory() {
        let dir = tempfile::tempdir().expect("tempdir");
        let cache = Cache::new(dir.path().join("cni-cache"));
        assert!(cache.load_all("c1").expect("load").is_empty());

        let entry = Entry::new(
            "c1",
            "crid",
            "eth0",
            "IgnoreUnknown=1".into(),
            Map::new(),
            json!({"name": "crid", "plugins": [{"type": "bridge"}]}),
            json!({"cniVersion": "1.0.0", "ips": []}),
        );
        let path = cache.store(&entry).expect("store");
        assert_eq!(path, cache.path("c1", "crid", "eth0"));
        std::fs::write(path.with_file_name("zz-broken.json"), "{").expect("write");

        let loaded = cache.load_all("c1").expect("load");
        assert_eq!(loaded.len(), 2);
        assert_eq!(loaded[0].1.as_ref().expect("entry"), &entry);
        assert!(loaded[1].1.is_err());

        for (p, _) in &loaded {
            cache.remove(p).expect("remove");
        }
        cache.remove(&path).expect("removing twice is fine");
        assert!(!dir.path().join("cni-cache/c1").exists());
    }
}
