//! cri-tools' `critest` against an endpoint, with the fixture registry wired in: its images
//! file names the fixture busybox and httpd images, and `--registry-prefix` points the
//! suite's other image references at the fixture registry. Flags as cri-tools defines them
//! (pkg/framework/test_context.go) plus ginkgo's `--ginkgo.junit-report`.

use std::path::{Path, PathBuf};
use std::time::Duration;

use super::{DriverError, Invocation, find_in_path, io, require_binary};
use crate::cases::Requirement;
use crate::report::Entry;

/// How to get critest when it is missing.
pub const HINT: &str = "install cri-tools";

/// The default time limit of a critest run.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(3600);

/// Everything a critest run needs.
#[derive(Debug, Clone)]
pub struct CritestOptions {
    /// The critest binary; `None` looks it up in `$PATH`.
    pub binary: Option<PathBuf>,
    /// The CRI endpoint, for both the runtime and the image service.
    pub endpoint: String,
    /// Runtime handler for the suite's pods; empty for the default.
    pub runtime_handler: String,
    /// `127.0.0.1:PORT` of the fixture registry, if one is up.
    pub registry: Option<String>,
    /// Only specs matching this regular expression.
    pub focus: Option<String>,
    /// Not specs matching this regular expression.
    pub skip: Option<String>,
    /// Extra arguments passed through as they are.
    pub extra_args: Vec<String>,
    /// Directory for the images file, the JUnit report and the log.
    pub work_dir: PathBuf,
    /// Killed after this long.
    pub timeout: Duration,
}

/// The `--test-images-file` YAML: the keys of cri-tools' `TestImageList`.
pub fn images_file(registry: &str) -> String {
    use crate::fixtures::image::{BUSYBOX, HTTPD, LATEST};
    format!(
        "defaultTestContainerImage: \"{registry}/{BUSYBOX}:{LATEST}\"\nwebServerTestImage: \"{registry}/{HTTPD}:{LATEST}\"\n"
    )
}

/// The binary to run: the given path, or `critest` from `$PATH`.
pub fn locate(binary: Option<&Path>) -> Result<PathBuf, DriverError> {
    match binary {
        Some(p) => require_binary("critest", p, HINT),
        None => find_in_path("critest").ok_or_else(|| DriverError::NotFound {
            what: "critest",
            where_: format!("$PATH ({})", std::env::var("PATH").unwrap_or_default()),
            hint: HINT,
        }),
    }
}

/// The command line: pure, so it is tested without critest.
pub fn args(opts: &CritestOptions, junit: &Path, images_file: Option<&Path>) -> Vec<String> {
    let mut a = vec![
        format!("--runtime-endpoint={}", opts.endpoint),
        format!("--image-endpoint={}", opts.endpoint),
        format!("--ginkgo.junit-report={}", junit.display()),
        // Colour codes would end up in the log file.
        "--ginkgo.no-color".to_owned(),
    ];
    if !opts.runtime_handler.is_empty() {
        a.push(format!("--runtime-handler={}", opts.runtime_handler));
    }
    if let (Some(registry), Some(file)) = (&opts.registry, images_file) {
        a.push(format!("--test-images-file={}", file.display()));
        a.push(format!("--registry-prefix={registry}"));
    }
    if let Some(f) = &opts.focus {
        a.push(format!("--ginkgo.focus={f}"));
    }
    if let Some(s) = &opts.skip {
        a.push(format!("--ginkgo.skip={s}"));
    }
    a.extend(opts.extra_args.iter().cloned());
    a
}

/// Every critest validation spec is part of CRI validation: a failure fails the run.
pub fn requirement(_spec: &str) -> Requirement {
    Requirement::Required
}

/// Runs critest and returns its specs as entries.
pub async fn run(opts: &CritestOptions) -> Result<Vec<Entry>, DriverError> {
    let binary = locate(opts.binary.as_deref())?;
    std::fs::create_dir_all(&opts.work_dir)
        .map_err(io(format!("creating {}", opts.work_dir.display())))?;
    let images = match &opts.registry {
        Some(r) => {
            let path = opts.work_dir.join("critest-images.yaml");
            std::fs::write(&path, images_file(r))
                .map_err(io(format!("writing {}", path.display())))?;
            Some(path)
        }
        None => None,
    };
    let junit = opts.work_dir.join("critest-junit.xml");
    let inv = Invocation {
        suite: "critest",
        args: args(opts, &junit, images.as_deref()),
        binary,
        junit,
        log: opts.work_dir.join("critest.log"),
        timeout: opts.timeout,
    };
    super::run(&inv, requirement).await
}

#[cfg(test)]
mod tests {
    use super::*;

    fn opts() -> CritestOptions {
        CritestOptions {
            binary: None,
            endpoint: "unix:///run/x.sock".into(),
            runtime_handler: String::new(),
            registry: None,
            focus: None,
            skip: None,
            extra_args: vec![],
            work_dir: PathBuf::from("/w"),
            timeout: DEFAULT_TIMEOUT,
        }
    }

    #[test]
    fn endpoints_and_report_always_set() {
        let a = args(&opts(), Path::new("/w/j.xml"), None);
        assert_eq!(
            a,
            [
                "--runtime-endpoint=unix:///run/x.sock",
                "--image-endpoint=unix:///run/x.sock",
                "--ginkgo.junit-report=/w/j.xml",
                "--ginkgo.no-color"
            ]
        );
    }

    #[test]
    fn registry_handler_focus_skip_and_extras() {
        let mut o = opts();
        o.registry = Some("127.0.0.1:5000".into());
        o.runtime_handler = "crun".into();
        o.focus = Some("Image".into());
        o.skip = Some("benchmark".into());
        o.extra_args = vec!["--parallel=2".into()];
        let a = args(&o, Path::new("/w/j.xml"), Some(Path::new("/w/i.yaml")));
        for want in [
            "--runtime-handler=crun",
            "--test-images-file=/w/i.yaml",
            "--registry-prefix=127.0.0.1:5000",
            "--ginkgo.focus=Image",
            "--ginkgo.skip=benchmark",
        ] {
            assert!(a.iter().any(|x| x == want), "{want} missing from {a:?}");
        }
        assert_eq!(a.last().map(String::as_str), Some("--parallel=2"));
    }

    #[test]
    fn images_file_names_the_fixture_images_under_cri_tools_keys() {
        assert_eq!(
            images_file("127.0.0.1:5000"),
            "defaultTestContainerImage: \"127.0.0.1:5000/busybox:latest\"\nwebServerTestImage: \"127.0.0.1:5000/httpd:latest\"\n"
        );
    }

    #[test]
    fn a_missing_binary_says_where_and_what_to_install() {
        let e = locate(Some(Path::new("/nonexistent/critest"))).unwrap_err();
        assert_eq!(
            e.to_string(),
            "critest not found at /nonexistent/critest (install cri-tools)"
        );
    }
}
