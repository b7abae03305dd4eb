//! The pod's `cgroup_parent` in the configured driver's syntax.
//!
//! A kubelet sends the parent in its own driver's form: `/kubepods/burstable/pod<uid>` with
//! the cgroupfs driver, `kubepods-burstable-pod<uid>.slice` with systemd. A kubelet whose
//! driver differs from crid's (it asks `RuntimeConfig`, but an older one or a hand-written
//! client may not) still gets the same cgroup: each form converts to the other the way the
//! kubelet itself converts its cgroup names.

use crate::config::CgroupDriver;

/// Why a `cgroup_parent` was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("`{value}`: {reason}")]
pub struct BadParent {
    /// The value sent.
    pub value: String,
    /// What is wrong with it.
    pub reason: &'static str,
}

/// `raw` (either form) in `driver`'s syntax; the empty parent gives crid's default.
pub fn normalize(driver: CgroupDriver, raw: &str) -> Result<String, BadParent> {
    let bad = |reason| BadParent {
        value: raw.to_owned(),
        reason,
    };
    if raw.is_empty() {
        return Ok(match driver {
            CgroupDriver::Cgroupfs => "/crid".to_owned(),
            CgroupDriver::Systemd => "system.slice".to_owned(),
        });
    }
    if raw.chars().any(|c| c.is_control() || c == ':') {
        return Err(bad("control characters and `:` are not allowed"));
    }
    let parts: Vec<&str> = raw.split('/').filter(|p| !p.is_empty()).collect();
    if parts.iter().any(|p| *p == "." || *p == "..") {
        return Err(bad("`.` and `..` are not allowed"));
    }
    let Some(last) = parts.last() else {
        return Err(bad("the root cgroup cannot be a pod's parent"));
    };
    let is_slice = |p: &str| p.ends_with(".slice") && p.len() > ".slice".len();
    match driver {
        CgroupDriver::Cgroupfs if parts.len() == 1 && is_slice(last) => {
            // Where systemd would put the slice; the stats reader expands it the same way.
            let dir = crate::stats::slice_dir(last).ok_or_else(|| bad("not a slice name"))?;
            Ok(format!("/{}", dir.display()))
        }
        CgroupDriver::Cgroupfs => Ok(format!("/{}", parts.join("/"))),
        // Already a slice, or a systemd path of slices whose last names the whole chain.
        CgroupDriver::Systemd if parts.iter().all(|p| is_slice(p)) => Ok((*last).to_owned()),
        CgroupDriver::Systemd if parts.iter().any(|p| is_slice(p)) => {
            Err(bad("mixes slices and plain cgroup names"))
        }
        CgroupDriver::Systemd => {
            // The kubelet's conversion: components joined by `-`, a `-` inside one escaped
            // as `_` (systemd reads `-` as the nesting separator).
            let name: Vec<String> = parts.iter().map(|p| p.replace('-', "_")).collect();
            Ok(format!("{}.slice", name.join("-")))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use CgroupDriver::{Cgroupfs, Systemd};

    const UID: &str = "86f1e64349c5095c56854717bd1a5a07";

    #[test]
    fn the_kubelets_cgroupfs_form_works_with_both_drivers() {
        let raw = format!("/kubepods/burstable/pod{UID}");
        assert_eq!(normalize(Cgroupfs, &raw), Ok(raw.clone()));
        assert_eq!(
            normalize(Systemd, &raw),
            Ok(format!("kubepods-burstable-pod{UID}.slice"))
        );
        assert_eq!(
            normalize(Cgroupfs, "kubepods/besteffort/pod1/"),
            Ok("/kubepods/besteffort/pod1".to_owned())
        );
    }

    #[test]
    fn the_kubelets_systemd_form_works_with_both_drivers() {
        let raw = format!("kubepods-besteffort-pod{UID}.slice");
        assert_eq!(normalize(Systemd, &raw), Ok(raw.clone()));
        assert_eq!(
            normalize(Cgroupfs, &raw),
            Ok(format!(
                "/kubepods.slice/kubepods-besteffort.slice/kubepods-besteffort-pod{UID}.slice"
            ))
        );
        // The full path of slices names the same one.
        assert_eq!(
            normalize(
                Systemd,
                "/kubepods.slice/kubepods-besteffort.slice/kubepods-besteffort-pod1.slice"
            ),
            Ok("kubepods-besteffort-pod1.slice".to_owned())
        );
    }

    #[test]
    fn the_cgroupfs_path_of_a_slice_agrees_with_the_stats_reader() {
        // stats::relative_dir expands `slice:prefix:name` the same way.
        let path = normalize(Cgroupfs, "kubepods-besteffort-pod1.slice").expect("ok");
        let stats =
            crate::stats::relative_dir("kubepods-besteffort-pod1.slice:crid:c").expect("dir");
        assert_eq!(std::path::Path::new(&path[1..]).join("crid-c.scope"), stats);
    }

    #[test]
    fn dashes_inside_a_component_are_escaped_for_systemd() {
        assert_eq!(
            normalize(Systemd, "/my-pods/pod1"),
            Ok("my_pods-pod1.slice".to_owned())
        );
    }

    #[test]
    fn defaults_and_refusals() {
        assert_eq!(normalize(Cgroupfs, ""), Ok("/crid".to_owned()));
        assert_eq!(normalize(Systemd, ""), Ok("system.slice".to_owned()));
        for bad in [
            "/",
            "/kubepods/../etc",
            "a:b",
            "/x\n",
            "/kubepods.slice/pod1",
        ] {
            let driver = if bad.contains("slice") {
                Systemd
            } else {
                Cgroupfs
            };
            assert!(normalize(driver, bad).is_err(), "{bad:?} accepted");
        }
    }
}
