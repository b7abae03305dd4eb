//! The Kubernetes node e2e suite (`e2e_node.test`) against an endpoint with a given kubelet:
//! the suite starts that kubelet itself (it looks for `kubelet` in `--k8s-bin-dir`), points
//! it at the endpoint, and runs the node conformance specs. Flags as the e2e framework
//! defines them (test/e2e/framework/test_context.go, test/e2e_node) plus ginkgo's
//! `--ginkgo.junit-report`.

use std::path::{Path, PathBuf};
use std::time::Duration;

use super::{DriverError, Invocation, io, require_binary};
use crate::cases::Requirement;
use crate::report::Entry;

/// How to get the e2e binary when it is missing.
pub const E2E_HINT: &str =
    "build it in a kubernetes checkout: make WHAT=test/e2e_node/e2e_node.test";
/// How to get a kubelet when it is missing.
pub const KUBELET_HINT: &str = "build it in a kubernetes checkout: make WHAT=cmd/kubelet";
/// The specs run by default: node conformance.
pub const DEFAULT_FOCUS: &str = r"\[NodeConformance\]";
/// Specs left out by default: flaky, slow and serial ones.
pub const DEFAULT_SKIP: &str = r"\[Flaky\]|\[Slow\]|\[Serial\]";
/// The default time limit of a node e2e run.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(3 * 3600);

/// Everything a node e2e run needs.
#[derive(Debug, Clone)]
pub struct NodeE2eOptions {
    /// `e2e_node.test`.
    pub binary: PathBuf,
    /// The kubelet the suite starts.
    pub kubelet: PathBuf,
    /// The CRI endpoint, for both the runtime and the image service.
    pub endpoint: String,
    /// The node name the kubelet registers as; empty takes the host name.
    pub node_name: String,
    /// Only specs matching this regular expression.
    pub focus: String,
    /// Not specs matching this regular expression.
    pub skip: String,
    /// Extra arguments passed through as they are (e.g. `--kubelet-flags=…`).
    pub extra_args: Vec<String>,
    /// Directory for the JUnit report, the suite's artifacts and the log.
    pub work_dir: PathBuf,
    /// Killed after this long.
    pub timeout: Duration,
}

/// The command line: pure, so it is tested without the binaries.
pub fn args(opts: &NodeE2eOptions, bin_dir: &Path, junit: &Path, node_name: &str) -> Vec<String> {
    let mut a = vec![
        format!("--container-runtime-endpoint={}", opts.endpoint),
        format!("--image-service-endpoint={}", opts.endpoint),
        format!("--k8s-bin-dir={}", bin_dir.display()),
        format!("--node-name={node_name}"),
        // Pre-pulling reaches for public registries; this harness runs without internet.
        "--prepull-images=false".to_owned(),
        format!(
            "--report-dir={}",
            opts.work_dir.join("node-e2e-artifacts").display()
        ),
        format!("--ginkgo.junit-report={}", junit.display()),
        "--ginkgo.no-color".to_owned(),
    ];
    if !opts.focus.is_empty() {
        a.push(format!("--ginkgo.focus={}", opts.focus));
    }
    if !opts.skip.is_empty() {
        a.push(format!("--ginkgo.skip={}", opts.skip));
    }
    a.extend(opts.extra_args.iter().cloned());
    a
}

/// Conformance specs (`[NodeConformance]`, `[Conformance]`) are required; the rest are
/// feature or environment checks, reported but optional.
pub fn requirement(spec: &str) -> Requirement {
    if spec.contains("[NodeConformance]") || spec.contains("[Conformance]") {
        Requirement::Required
    } else {
        Requirement::Optional
    }
}

/// The directory to give as `--k8s-bin-dir`: the kubelet's own directory when the binary
/// is named `kubelet`, else a directory in `work_dir` with a `kubelet` symlink to it.
pub fn bin_dir(kubelet: &Path, work_dir: &Path) -> Result<PathBuf, DriverError> {
    if kubelet.file_name().is_some_and(|n| n == "kubelet")
        && let Some(parent) = kubelet.parent()
    {
        return Ok(parent.to_owned());
    }
    let dir = work_dir.join("k8s-bin");
    std::fs::create_dir_all(&dir).map_err(io(format!("creating {}", dir.display())))?;
    let link = dir.join("kubelet");
    match std::fs::remove_file(&link) {
        Ok(()) => {}
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => return Err(io(format!("removing {}", link.display()))(e)),
    }
    let target = std::path::absolute(kubelet).map_err(io("resolving the kubelet path"))?;
    std::os::unix::fs::symlink(&target, &link).map_err(io(format!(
        "linking {} to {}",
        link.display(),
        target.display()
    )))?;
    Ok(dir)
}

fn host_name() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|s| s.trim().to_owned())
        .unwrap_or_else(|_| "localhost".to_owned())
}

/// Runs the node e2e suite and returns its specs as entries.
pub async fn run(opts: &NodeE2eOptions) -> Result<Vec<Entry>, DriverError> {
    let binary = require_binary("e2e_node.test", &opts.binary, E2E_HINT)?;
    let kubelet = require_binary("kubelet", &opts.kubelet, KUBELET_HINT)?;
    std::fs::create_dir_all(&opts.work_dir)
        .map_err(io(format!("creating {}", opts.work_dir.display())))?;
    let bin_dir = bin_dir(&kubelet, &opts.work_dir)?;
    let junit = opts.work_dir.join("node-e2e-junit.xml");
    let node_name = if opts.node_name.is_empty() {
        host_name()
    } else {
        opts.node_name.clone()
    };
    let inv = Invocation {
        suite: "node-e2e",
        args: args(opts, &bin_dir, &junit, &node_name),
        binary,
        junit,
        log: opts.work_dir.join("node-e2e.log"),
        timeout: opts.timeout,
    };
    super::run(&inv, requirement).await
}

#[cfg(test)]
mod tests {
    use super::*;

    fn opts(work: &Path) -> NodeE2eOptions {
        NodeE2eOptions {
            binary: PathBuf::from("/k/e2e_node.test"),
            kubelet: PathBuf::from("/k/kubelet"),
            endpoint: "unix:///run/x.sock".into(),
            node_name: String::new(),
            focus: DEFAULT_FOCUS.into(),
            skip: DEFAULT_SKIP.into(),
            extra_args: vec!["--kubelet-flags=--fail-swap-on=false".into()],
            work_dir: work.to_owned(),
            timeout: DEFAULT_TIMEOUT,
        }
    }

    #[test]
    fn command_line_points_the_suite_at_the_endpoint_and_kubelet() {
        let o = opts(Path::new("/w"));
        let a = args(&o, Path::new("/k"), Path::new("/w/j.xml"), "node1");
        assert_eq!(
            a,
            [
                "--container-runtime-endpoint=unix:///run/x.sock",
                "--image-service-endpoint=unix:///run/x.sock",
                "--k8s-bin-dir=/k",
                "--node-name=node1",
                "--prepull-images=false",
                "--report-dir=/w/node-e2e-artifacts",
                "--ginkgo.junit-report=/w/j.xml",
                "--ginkgo.no-color",
                r"--ginkgo.focus=\[NodeConformance\]",
                r"--ginkgo.skip=\[Flaky\]|\[Slow\]|\[Serial\]",
                "--kubelet-flags=--fail-swap-on=false",
            ]
        );
    }

    #[test]
    fn conformance_specs_are_required() {
        assert_eq!(
            requirement("[sig-node] Pods should be submitted and removed [NodeConformance]"),
            Requirement::Required
        );
        assert_eq!(
            requirement("[sig-node] Summary API [NodeFeature:Stats]"),
            Requirement::Optional
        );
    }

    #[test]
    fn a_kubelet_under_another_name_is_linked_as_kubelet() {
        let work = tempfile::tempdir().unwrap();
        assert_eq!(
            bin_dir(Path::new("/k/kubelet"), work.path()).unwrap(),
            Path::new("/k")
        );
        let dir = bin_dir(Path::new("/opt/kubelet-1.31"), work.path()).unwrap();
        assert_eq!(dir, work.path().join("k8s-bin"));
        assert_eq!(
            std::fs::read_link(dir.join("kubelet")).unwrap(),
            Path::new("/opt/kubelet-1.31")
        );
        // Again: the stale link is replaced, not an error.
        bin_dir(Path::new("/opt/kubelet-1.32"), work.path()).unwrap();
        assert_eq!(
            std::fs::read_link(dir.join("kubelet")).unwrap(),
            Path::new("/opt/kubelet-1.32")
        );
    }

    #[tokio::test]
    async fn missing_binaries_are_named() {
        let work = tempfile::tempdir().unwrap();
        let mut o = opts(work.path());
        o.binary = PathBuf::from("/nonexistent/e2e_node.test");
        let e = run(&o).await.unwrap_err().to_string();
        assert!(
            e.starts_with("e2e_node.test not found at /nonexistent/e2e_node.test (build it"),
            "{e}"
        );
        o.binary = PathBuf::from("/bin/sh");
        o.kubelet = PathBuf::from("/nonexistent/kubelet");
        let e = run(&o).await.unwrap_err().to_string();
        assert!(
            e.starts_with("kubelet not found at /nonexistent/kubelet"),
            "{e}"
        );
    }
}
