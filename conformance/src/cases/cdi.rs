//! Container Device Interface (cncf-tags/container-device-interface SPEC.md): a device named
//! in `config.CDI_devices` brings the edits of the spec file that defines it. The case
//! writes a spec of its own into `/var/run/cdi` (the directory CRI-O and containerd read by
//! default, like crid), with a file name and a device name unique to the run, and removes
//! it afterwards; the harness must run on the endpoint's host, as for host-path mounts.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use crid_api::cri;
use tonic::Code;

use super::container::CONTAINER_NEEDS;
use super::support::{Scope, scoped};
use super::{Area, Case, CaseResult, ensure, status_text};
use crate::fixtures::image::{BUSYBOX, LATEST};

/// Where the case writes its spec: the runtime-written directory of the CDI defaults.
const SPEC_DIR: &str = "/var/run/cdi";
/// The kind (`vendor/class`) of the case's spec.
const KIND: &str = "conformance.crid.example/test";

pub(super) fn cases() -> Vec<Case> {
    let cases = Area::Container
        .cases()
        .needs(CONTAINER_NEEDS)
        .timeout(std::time::Duration::from_secs(90));
    vec![cases.required(
        "container/cdi-devices",
        "cri:RuntimeService.CreateContainer#config.CDI_devices",
        "a CDI device named vendor/class=name brings its spec's edits (an environment variable of the spec, one of the device, a bind mount of a host file); an unknown device is refused with InvalidArgument naming CDI_devices, leaving no container",
        |ctx| Box::pin(scoped(ctx, "cd", cdi_devices)),
    )]
}

/// The case's spec file and host file, removed when dropped, pass or fail (and the spec
/// directory, when the case created it and it is empty again).
struct SpecFiles {
    spec: PathBuf,
    created_dir: bool,
    _host: tempfile::TempDir,
}

impl Drop for SpecFiles {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.spec);
        if self.created_dir {
            let _ = std::fs::remove_dir(SPEC_DIR);
        }
    }
}

/// Writes the spec of device `device` whose edits carry `token`.
fn write_spec(device: &str, token: &str) -> Result<SpecFiles, String> {
    let host = tempfile::Builder::new()
        .prefix("crid-conformance-cdi-")
        .tempdir()
        .map_err(|e| format!("creating a host directory: {e}"))?;
    let file = host.path().join("token");
    std::fs::write(&file, token).map_err(|e| format!("writing {}: {e}", file.display()))?;
    let created_dir = !Path::new(SPEC_DIR).exists();
    std::fs::create_dir_all(SPEC_DIR).map_err(|e| format!("creating {SPEC_DIR}: {e}"))?;
    let spec = serde_json::json!({
        "cdiVersion": "0.6.0",
        "kind": KIND,
        "containerEdits": {"env": [format!("CDI_SPEC_EDIT={token}")]},
        "devices": [{
            "name": device,
            "containerEdits": {
                "env": [format!("CDI_DEVICE_EDIT={token}")],
                "mounts": [{
                    "hostPath": file.display().to_string(),
                    "containerPath": "/cdi/token",
                    "options": ["ro", "bind"]
                }]
            }
        }]
    });
    let path = Path::new(SPEC_DIR).join(format!("{device}.json"));
    let files = SpecFiles {
        spec: path.clone(),
        created_dir,
        _host: host,
    };
    std::fs::write(&path, spec.to_string())
        .map_err(|e| format!("writing {}: {e}", path.display()))?;
    Ok(files)
}

async fn cdi_devices(s: Arc<Scope>) -> CaseResult {
    let device = s.name("cdi");
    let token = format!("token-{device}");
    let files = write_spec(&device, &token)?;
    let qualified = format!("{KIND}={device}");
    let (pod_id, id) = s
        .sleeper(|c| {
            c.cdi_devices = vec![cri::CdiDevice {
                name: qualified.clone(),
            }]
        })
        .await?;
    // The init process' environment is the container's; an exec'd shell may differ.
    let env = s
        .sh(
            &id,
            "tr '\\0' '\\n' < /proc/1/environ | grep ^CDI_ | sort | tr '\\n' ' '",
        )
        .await?;
    let want = format!("CDI_DEVICE_EDIT={token} CDI_SPEC_EDIT={token}");
    ensure(env.trim() == want, || {
        format!("the container's CDI variables are {env:?}, expected {want:?}")
    })?;
    let mounted = s.sh(&id, "cat /cdi/token").await?;
    ensure(mounted == token, || {
        format!("/cdi/token reads {mounted:?}, expected the device's host file ({token:?})")
    })?;

    // A device no spec defines.
    let unknown = format!("{KIND}={device}-absent");
    let image = s.image(BUSYBOX, LATEST)?;
    let pod = s.pod_config();
    let mut config = s.container_config(&pod, &image, &["sleep", "60"]);
    config.cdi_devices = vec![cri::CdiDevice {
        name: unknown.clone(),
    }];
    let (r, left) = s.create_refused(&pod_id, &pod, config).await?;
    match r {
        Ok(_) => {
            return Err(format!(
                "CreateContainer with the unknown CDI device {unknown} succeeded"
            ));
        }
        Err(e) if e.code() == Code::InvalidArgument && e.message().contains("CDI_devices") => {}
        Err(e) => {
            return Err(format!(
                "CreateContainer with the unknown CDI device {unknown}: {}, expected InvalidArgument naming CDI_devices",
                status_text(&e)
            ));
        }
    }
    ensure(left.is_empty(), || {
        format!("the refused CreateContainer left containers {left:?}")
    })?;
    // The container goes before its mount's host file.
    s.cleanup().await?;
    drop(files);
    Ok(String::new())
}
