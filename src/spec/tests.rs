//! Tests of the CRI → OCI translation: examples, snapshots and properties.

use proptest::prelude::*;

use super::*;

const PASSWD: &str = "root:x:0:0:root:/root:/bin/sh\ncrid:x:1000:1000:crid:/home/crid:/bin/sh\n";
const GROUP: &str = "root:x:0:\ncrid:x:1000:\nextra:x:1001:crid\n";

fn all_caps() -> Vec<String> {
    security::ALL_CAPABILITIES
        .iter()
        .map(|c| (*c).to_owned())
        .collect()
}

struct Fixture {
    sandbox: cri::PodSandboxConfig,
    image: ImageProcess,
    users: UserDb,
    namespaces: PodNamespaces,
    files: PodFiles,
    caps: Vec<String>,
    host: HostResources,
    apparmor: bool,
    image_volumes: Vec<Option<String>>,
}

impl Fixture {
    fn new() -> Self {
        Self {
            sandbox: cri::PodSandboxConfig {
                hostname: "pod-host".into(),
                ..Default::default()
            },
            image: ImageProcess {
                entrypoint: vec![],
                cmd: vec!["sh".into()],
                env: vec!["PATH=/usr/bin:/bin".into(), "FIXTURE_ENV=from-image".into()],
                working_dir: String::new(),
                user: String::new(),
            },
            users: UserDb::parse(PASSWD, GROUP),
            namespaces: PodNamespaces {
                network: Some("/run/crid/ns/net/p1".into()),
                ipc: Some("/run/crid/ns/ipc/p1".into()),
                uts: Some("/run/crid/ns/uts/p1".into()),
                pid: PidNamespace::Private,
                cgroup: false,
            },
            files: PodFiles {
                hostname: Some("/run/crid/pods/p1/hostname".into()),
                hosts: Some("/run/crid/pods/p1/hosts".into()),
                resolv_conf: Some("/run/crid/pods/p1/resolv.conf".into()),
                shm: Some("/run/crid/pods/p1/shm".into()),
            },
            caps: all_caps(),
            host: HostResources::default(),
            apparmor: false,
            image_volumes: Vec::new(),
        }
    }

    fn build(&self, container: &cri::ContainerConfig) -> Result<oci::Spec, SpecError> {
        build(&SpecInput {
            container,
            sandbox: &self.sandbox,
            sandbox_id: "p1",
            container_id: "c1",
            image: &self.image,
            users: &self.users,
            rootfs: "/var/lib/crid/storage/containers/c1/rootfs",
            namespaces: &self.namespaces,
            files: &self.files,
            cgroups_path: "/crid/p1/c1",
            host_capabilities: &self.caps,
            devices: &[],
            host_devices: &[],
            localhost_seccomp: None,
            host: &self.host,
            apparmor: self.apparmor,
            image_volumes: &self.image_volumes,
        })
    }
}

fn container(f: impl FnOnce(&mut cri::ContainerConfig)) -> cri::ContainerConfig {
    let mut c = cri::ContainerConfig {
        metadata: Some(cri::ContainerMetadata {
            name: "app".into(),
            attempt: 0,
        }),
        image: Some(cri::ImageSpec {
            image: "127.0.0.1:5000/busybox:latest".into(),
            ..Default::default()
        }),
        ..Default::default()
    };
    f(&mut c);
    c
}

fn security(
    f: impl FnOnce(&mut cri::LinuxContainerSecurityContext),
) -> Option<cri::LinuxContainerConfig> {
    let mut sc = cri::LinuxContainerSecurityContext::default();
    f(&mut sc);
    Some(cri::LinuxContainerConfig {
        resources: None,
        security_context: Some(sc),
    })
}

// oci-runtime:config.md#process: args, env, cwd, user from image defaults.
#[test]
fn minimal_container_takes_image_defaults() {
    let spec = Fixture::new().build(&container(|_| {})).expect("spec");
    assert_eq!(spec.process.args, ["sh"]);
    assert_eq!(spec.process.cwd, "/");
    assert_eq!((spec.process.user.uid, spec.process.user.gid), (0, 0));
    assert!(
        spec.process
            .env
            .contains(&"FIXTURE_ENV=from-image".to_owned())
    );
    assert!(spec.process.env.contains(&"HOSTNAME=pod-host".to_owned()));
    assert!(spec.process.env.contains(&"HOME=/root".to_owned()));
    assert_eq!(spec.linux.seccomp, None, "no profile requested: unconfined");
    assert_eq!(spec.annotations["io.kubernetes.cri.sandbox-id"], "p1");
}

// cri:LinuxContainerSecurityContext#privileged requires a privileged pod.
#[test]
fn privileged_container_needs_privileged_pod() {
    let mut fx = Fixture::new();
    let c = container(|c| c.linux = security(|s| s.privileged = true));
    let err = fx.build(&c).expect_err("unprivileged pod");
    assert!(
        err.to_string().contains("security_context.privileged"),
        "{err}"
    );

    fx.sandbox.linux = Some(cri::LinuxPodSandboxConfig {
        security_context: Some(cri::LinuxSandboxSecurityContext {
            privileged: true,
            ..Default::default()
        }),
        ..Default::default()
    });
    let spec = fx.build(&c).expect("privileged pod");
    let caps = spec.process.capabilities.expect("caps");
    assert_eq!(caps.bounding.len(), security::ALL_CAPABILITIES.len());
    assert!(spec.linux.masked_paths.is_empty());
    assert!(spec.linux.resources.expect("res").devices[0].allow);
}

// cri:LinuxContainerSecurityContext#seccomp: RuntimeDefault, Unconfined, Localhost.
#[test]
fn seccomp_profiles() {
    let fx = Fixture::new();
    let with = |t: cri::security_profile::ProfileType, r: &str| {
        container(|c| {
            c.linux = security(|s| {
                s.seccomp = Some(cri::SecurityProfile {
                    profile_type: t as i32,
                    localhost_ref: r.into(),
                })
            })
        })
    };
    let rd = fx
        .build(&with(
            cri::security_profile::ProfileType::RuntimeDefault,
            "",
        ))
        .expect("rd");
    assert_eq!(rd.linux.seccomp, Some(security::runtime_default_seccomp()));
    let un = fx
        .build(&with(cri::security_profile::ProfileType::Unconfined, ""))
        .expect("un");
    assert_eq!(un.linux.seccomp, None);
    let err = fx
        .build(&with(
            cri::security_profile::ProfileType::Localhost,
            "/p.json",
        ))
        .expect_err("not loaded");
    assert!(err.to_string().contains("localhost_ref"), "{err}");
}

// cri:LinuxContainerSecurityContext#apparmor reaches oci-runtime:config.md#process
// (`apparmorProfile`) only where the host enforces AppArmor.
#[test]
fn apparmor_profiles_reach_the_process() {
    let mut fx = Fixture::new();
    let localhost = container(|c| {
        c.linux = security(|s| {
            s.apparmor = Some(cri::SecurityProfile {
                profile_type: cri::security_profile::ProfileType::Localhost as i32,
                localhost_ref: "k8s-test".into(),
            })
        })
    });
    let unset = container(|_| {});
    assert_eq!(fx.build(&unset).expect("spec").process.apparmor_profile, "");
    let err = fx.build(&localhost).expect_err("no AppArmor here");
    assert!(err.to_string().contains("apparmor.localhost_ref"), "{err}");

    fx.apparmor = true;
    let spec = fx.build(&unset).expect("spec");
    assert_eq!(spec.process.apparmor_profile, apparmor::DEFAULT_PROFILE);
    let spec = fx.build(&localhost).expect("spec");
    assert_eq!(spec.process.apparmor_profile, "k8s-test");
    let json = serde_json::to_value(&spec).expect("json");
    assert_eq!(json["process"]["apparmorProfile"], "k8s-test");
}

// cri:LinuxContainerResources → oci-runtime:config-linux.md#control-groups.
#[test]
fn resources_translate_and_zero_means_unset() {
    let fx = Fixture::new();
    let c = container(|c| {
        c.linux = Some(cri::LinuxContainerConfig {
            resources: Some(cri::LinuxContainerResources {
                cpu_period: 100_000,
                cpu_quota: 50_000,
                cpu_shares: 512,
                memory_limit_in_bytes: 64 << 20,
                oom_score_adj: 500,
                cpuset_cpus: "0".into(),
                ..Default::default()
            }),
            security_context: None,
        })
    });
    let spec = fx.build(&c).expect("spec");
    let r = spec.linux.resources.expect("resources");
    assert_eq!(r.memory.expect("memory").limit, Some(64 << 20));
    let cpu = r.cpu.expect("cpu");
    assert_eq!(
        (cpu.quota, cpu.period, cpu.shares),
        (Some(50_000), Some(100_000), Some(512))
    );
    assert_eq!(spec.process.oom_score_adj, Some(500));

    let spec = fx.build(&container(|_| {})).expect("spec");
    let r = spec.linux.resources.expect("resources");
    assert_eq!((r.memory, r.cpu), (None, None));
}

// Namespaces: joined by path from the pod, host when the pod uses the node's.
/// The kubelet's resources for every container (one hugepage entry per page size of the
/// node, swap equal to memory) on the hosts crid meets: the spec keeps what each enforces.
#[test]
fn kubelet_resources_follow_the_hosts_cgroups() {
    let c = container(|c| {
        c.linux.get_or_insert_with(Default::default).resources =
            Some(cri::LinuxContainerResources {
                memory_limit_in_bytes: 64 << 20,
                memory_swap_limit_in_bytes: 64 << 20,
                oom_score_adj: -997,
                hugepage_limits: ["2MB", "1GB"]
                    .map(|p| cri::HugepageLimit {
                        page_size: p.into(),
                        limit: 0,
                    })
                    .into(),
                unified: [("memory.high".to_owned(), "max".to_owned())].into(),
                ..Default::default()
            });
    });
    // cgroup v2 with every controller, CAP_SYS_RESOURCE: everything is kept.
    let mut fx = Fixture::new();
    let spec = fx.build(&c).expect("v2");
    let r = spec.linux.resources.as_ref().expect("resources");
    assert_eq!(r.hugepage_limits.len(), 2);
    assert_eq!(r.memory.as_ref().and_then(|m| m.swap), Some(64 << 20));
    assert_eq!(
        r.unified.get("memory.high").map(String::as_str),
        Some("max")
    );
    assert_eq!(spec.process.oom_score_adj, Some(-997));
    // A hybrid host without hugetlb and without CAP_SYS_RESOURCE (this project's CI host).
    fx.host = HostResources {
        hugetlb_controller: false,
        hugetlb_sizes: Default::default(),
        swap_accounting: true,
        unified_controllers: None,
        oom_score_adj_min: 0,
        memory_nodes: [0].into(),
    };
    let spec = fx.build(&c).expect("v1");
    let r = spec.linux.resources.as_ref().expect("resources");
    assert!(r.hugepage_limits.is_empty());
    assert!(r.unified.is_empty());
    assert_eq!(r.memory.as_ref().and_then(|m| m.limit), Some(64 << 20));
    assert_eq!(spec.process.oom_score_adj, Some(0));
    // UpdateContainerResources goes through the same rules.
    let r = resources(&c, &fx.host);
    assert!(r.hugepage_limits.is_empty());
}

#[test]
fn namespaces_follow_the_pod() {
    let mut fx = Fixture::new();
    fx.namespaces.network = None;
    fx.namespaces.pid = PidNamespace::Host;
    let spec = fx.build(&container(|_| {})).expect("spec");
    let kinds: Vec<_> = spec
        .linux
        .namespaces
        .iter()
        .map(|n| n.kind.as_str())
        .collect();
    assert_eq!(kinds, ["mount", "ipc", "uts"]);
    assert_eq!(spec.linux.namespaces[1].path, "/run/crid/ns/ipc/p1");
}

#[test]
fn image_volume_mounts_are_refused() {
    let c = container(|c| {
        c.mounts.push(cri::Mount {
            container_path: "/data".into(),
            image: Some(cri::ImageSpec::default()),
            ..Default::default()
        })
    });
    let err = Fixture::new().build(&c).expect_err("image mount");
    assert!(err.to_string().contains("config.mounts.image"), "{err}");
}

#[test]
fn snapshot_default_container() {
    insta::assert_json_snapshot!(
        "default_container",
        Fixture::new().build(&container(|_| {})).expect("spec")
    );
}

#[test]
fn snapshot_restricted_container() {
    let c = container(|c| {
        c.command = vec!["/bin/httpd".into()];
        c.args = vec!["-f".into(), "-p".into(), "8080".into()];
        c.working_dir = "/www".into();
        c.envs = vec![cri::KeyValue {
            key: "MODE".into(),
            value: "test".into(),
        }];
        c.mounts = vec![cri::Mount {
            container_path: "/data".into(),
            host_path: "/srv/data".into(),
            readonly: true,
            propagation: cri::MountPropagation::PropagationHostToContainer as i32,
            ..Default::default()
        }];
        c.linux = security(|s| {
            s.run_as_username = "crid".into();
            s.readonly_rootfs = true;
            s.no_new_privs = true;
            s.capabilities = Some(cri::Capability {
                drop_capabilities: vec!["ALL".into()],
                add_capabilities: vec!["NET_BIND_SERVICE".into()],
                ..Default::default()
            });
            s.masked_paths = vec!["/proc/kcore".into()];
            s.readonly_paths = vec!["/proc/sys".into()];
            s.seccomp = Some(cri::SecurityProfile {
                profile_type: cri::security_profile::ProfileType::RuntimeDefault as i32,
                localhost_ref: String::new(),
            });
        });
    });
    insta::assert_json_snapshot!(
        "restricted_container",
        Fixture::new().build(&c).expect("spec")
    );
}

fn arb_name() -> impl Strategy<Value = String> {
    "[a-z][a-z0-9_]{0,8}"
}

fn arb_container() -> impl Strategy<Value = cri::ContainerConfig> {
    let caps = prop::sample::subsequence(security::ALL_CAPABILITIES.to_vec(), 0..4);
    let drops = prop::sample::subsequence(security::ALL_CAPABILITIES.to_vec(), 0..4);
    (
        prop::collection::vec(arb_name(), 0..3),
        prop::collection::vec(arb_name(), 0..3),
        prop::collection::vec((arb_name(), "[ -~]{0,12}"), 0..4),
        prop::option::of(0i64..70_000),
        prop::option::of(0i64..70_000),
        (caps, drops, any::<bool>(), any::<bool>(), any::<bool>()),
        prop::collection::vec(
            ("/[a-z]{1,6}(/[a-z]{1,6}){0,2}", 0i32..3, any::<bool>()),
            0..4,
        ),
        (0i64..(1 << 31), 0i64..200_000, -1000i64..1000),
    )
        .prop_map(|(cmd, args, envs, uid, gid, sec, mounts, res)| {
            let (add, drop, ro, nnp, drop_all) = sec;
            container(|c| {
                c.command = cmd.iter().map(|s| format!("/bin/{s}")).collect();
                c.args = args;
                c.envs = envs
                    .into_iter()
                    .map(|(key, value)| cri::KeyValue { key, value })
                    .collect();
                c.mounts = mounts
                    .into_iter()
                    .map(|(path, propagation, readonly)| cri::Mount {
                        container_path: path.clone(),
                        host_path: format!("/host{path}"),
                        readonly,
                        propagation,
                        ..Default::default()
                    })
                    .collect();
                let mut drop: Vec<String> = drop.into_iter().map(str::to_owned).collect();
                if drop_all {
                    drop.push("ALL".into());
                }
                c.linux = Some(cri::LinuxContainerConfig {
                    resources: Some(cri::LinuxContainerResources {
                        memory_limit_in_bytes: res.0,
                        cpu_quota: res.1,
                        oom_score_adj: res.2,
                        ..Default::default()
                    }),
                    security_context: Some(cri::LinuxContainerSecurityContext {
                        run_as_user: uid.map(|value| cri::Int64Value { value }),
                        run_as_group: if uid.is_some() {
                            gid.map(|value| cri::Int64Value { value })
                        } else {
                            None
                        },
                        readonly_rootfs: ro,
                        no_new_privs: nnp,
                        capabilities: Some(cri::Capability {
                            add_capabilities: add.into_iter().map(str::to_owned).collect(),
                            drop_capabilities: drop,
                            add_ambient_capabilities: vec![],
                        }),
                        ..Default::default()
                    }),
                })
            })
        })
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    // Invariants every generated spec keeps, whatever the valid request.
    #[test]
    fn spec_invariants(c in arb_container()) {
        let fx = Fixture::new();
        let spec = fx.build(&c).expect("a valid request always yields a spec");
        let sc = c.linux.as_ref().and_then(|l| l.security_context.clone()).unwrap_or_default();
        let caps = spec.process.capabilities.clone().expect("caps");
        // Capabilities: equal sets, nothing inheritable, drops honoured, adds present.
        prop_assert_eq!(&caps.bounding, &caps.effective);
        prop_assert_eq!(&caps.bounding, &caps.permitted);
        prop_assert!(caps.inheritable.is_empty());
        let requested = sc.capabilities.clone().unwrap_or_default();
        for d in requested.drop_capabilities.iter().filter(|d| *d != "ALL") {
            prop_assert!(!caps.bounding.contains(&format!("CAP_{d}")), "dropped {} still present", d);
        }
        for a in &requested.add_capabilities {
            if !requested.drop_capabilities.contains(a) {
                prop_assert!(caps.bounding.contains(&format!("CAP_{a}")), "added {} missing", a);
            }
        }
        // Process: argv non-empty, cwd absolute, uid as asked, env keys unique.
        prop_assert!(!spec.process.args.is_empty());
        prop_assert!(spec.process.cwd.starts_with('/'));
        if let Some(u) = sc.run_as_user { prop_assert_eq!(i64::from(spec.process.user.uid), u.value); }
        if let Some(g) = sc.run_as_group { prop_assert_eq!(i64::from(spec.process.user.gid), g.value); }
        let mut keys: Vec<_> = spec.process.env.iter().map(|e| e.split('=').next().unwrap_or_default()).collect();
        let before = keys.len();
        keys.sort_unstable();
        keys.dedup();
        prop_assert_eq!(before, keys.len(), "duplicate env keys in {:?}", spec.process.env);
        // Mounts: absolute destinations, unique, parents before children; every CRI mount present.
        let dests: Vec<_> = spec.mounts.iter().map(|m| m.destination.trim_end_matches('/').to_owned()).collect();
        let mut unique = dests.clone();
        unique.sort();
        unique.dedup();
        prop_assert_eq!(unique.len(), dests.len());
        for (i, d) in dests.iter().enumerate() {
            prop_assert!(d.starts_with('/'));
            for later in &dests[i + 1..] {
                prop_assert!(!d.starts_with(&format!("{later}/")), "{} mounted before its parent {}", d, later);
            }
        }
        for m in &c.mounts {
            let got = spec.mounts.iter().rev().find(|x| x.destination == m.container_path).expect("CRI mount present");
            prop_assert_eq!(&got.source, &m.host_path);
            let mode = if m.readonly { "ro" } else { "rw" };
            prop_assert!(got.options.iter().any(|o| o == mode), "mount {} lacks {}", m.container_path, mode);
        }
        prop_assert_eq!(spec.root.readonly, sc.readonly_rootfs);
        prop_assert_eq!(spec.process.no_new_privileges, sc.no_new_privs);
        // The JSON runc reads round-trips.
        let json = serde_json::to_string(&spec).expect("serialize");
        let back: oci::Spec = serde_json::from_str(&json).expect("parse");
        prop_assert_eq!(back, spec);
    }
}

/// A runc bundle whose rootfs holds Debian's static busybox; removed on drop.
struct Bundle {
    dir: tempfile::TempDir,
}

impl Bundle {
    fn new() -> Self {
        let dir = tempfile::tempdir().expect("tempdir");
        let root = dir.path().join("rootfs");
        for d in ["bin", "etc", "proc", "sys", "dev", "tmp", "pod"] {
            std::fs::create_dir_all(root.join(d)).expect("mkdir");
        }
        std::fs::copy("/bin/busybox", root.join("bin/busybox"))
            .expect("copy busybox (apt-get install busybox-static)");
        std::fs::write(root.join("etc/passwd"), PASSWD).expect("passwd");
        std::fs::write(root.join("etc/group"), GROUP).expect("group");
        for f in ["hostname", "hosts", "resolv.conf"] {
            std::fs::write(dir.path().join(f), "").expect("pod file");
        }
        std::fs::create_dir_all(dir.path().join("shm")).expect("shm");
        Self { dir }
    }

    fn path(&self, rel: &str) -> String {
        self.dir.path().join(rel).display().to_string()
    }

    /// Runs runc; its stdio goes to files, because a created container's init keeps the
    /// inherited descriptors open and a pipe would never reach EOF.
    fn runc(&self, args: &[&str]) -> (bool, String) {
        let err_path = self.dir.path().join("runc.err");
        let err = std::fs::File::create(&err_path).expect("stderr file");
        let status = std::process::Command::new("runc")
            .arg("--root")
            .arg(self.path("state"))
            .args(args)
            .stdin(std::process::Stdio::null())
            .stdout(std::process::Stdio::null())
            .stderr(err)
            .status()
            .expect("run runc (apt-get install runc)");
        (
            status.success(),
            std::fs::read_to_string(&err_path).unwrap_or_default(),
        )
    }
}

impl Drop for Bundle {
    fn drop(&mut self) {
        // Whatever a failed case left in this bundle's runc state: force-delete by id.
        if let Ok(entries) = std::fs::read_dir(self.dir.path().join("state")) {
            for e in entries.flatten() {
                let id = e.file_name().to_string_lossy().into_owned();
                let _ = self.runc(&["delete", "--force", &id]);
            }
        }
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(24))]

    // oci-runtime:config.md: every spec built from a valid request is accepted by runc
    // (`runc create` sets up namespaces, mounts, cgroups and the process, then we delete it).
    // Needs root and Debian's runc and busybox-static.
    #[test]
    fn runc_accepts_generated_specs_needs_root(mut c in arb_container(), id in "[a-z0-9]{12}") {
        let bundle = Bundle::new();
        // What runc must find on this host: a real binary, real mount sources, limits the
        // host can grant (no negative oom_score_adj without CAP_SYS_RESOURCE, room to start).
        c.command = vec!["/bin/busybox".into(), "true".into()];
        for m in &mut c.mounts {
            m.host_path = bundle.path(&format!("host{}", m.container_path));
            std::fs::create_dir_all(&m.host_path).expect("mount source");
        }
        if let Some(r) = c.linux.as_mut().and_then(|l| l.resources.as_mut()) {
            r.oom_score_adj = r.oom_score_adj.abs();
            if r.memory_limit_in_bytes > 0 {
                r.memory_limit_in_bytes = r.memory_limit_in_bytes.max(32 << 20);
            }
            if r.cpu_quota > 0 {
                r.cpu_quota = r.cpu_quota.max(1000);
                r.cpu_period = 100_000;
            }
        }
        let mut fx = Fixture::new();
        fx.caps = crate::host::bounding_capabilities();
        fx.namespaces = PodNamespaces { network: None, ipc: None, uts: None, pid: PidNamespace::Private, cgroup: false };
        fx.files = PodFiles {
            hostname: Some(bundle.path("hostname")),
            hosts: Some(bundle.path("hosts")),
            resolv_conf: Some(bundle.path("resolv.conf")),
            shm: Some(bundle.path("shm")),
        };
        let rootfs = bundle.path("rootfs");
        // Top level, so `runc delete` removes all of it.
        let cgroups_path = format!("/crid-spec-test-{id}");
        let spec = build(&SpecInput {
            container: &c,
            sandbox: &fx.sandbox,
            sandbox_id: "p1",
            container_id: &id,
            image: &fx.image,
            users: &fx.users,
            rootfs: &rootfs,
            namespaces: &fx.namespaces,
            files: &fx.files,
            cgroups_path: &cgroups_path,
            host_capabilities: &fx.caps,
            devices: &[],
            host_devices: &[],
            localhost_seccomp: None,
            host: &HostResources::default(),
            apparmor: false,
            image_volumes: &[],
        }).expect("spec");
        std::fs::write(bundle.dir.path().join("config.json"), serde_json::to_vec_pretty(&spec).expect("json")).expect("write");
        let (created, create_err) = bundle.runc(&["create", "--bundle", &bundle.path(""), &id]);
        let (deleted, delete_err) = bundle.runc(&["delete", "--force", &id]);
        prop_assert!(created, "runc create failed: {}\nspec: {}", create_err, serde_json::to_string(&spec).unwrap_or_default());
        prop_assert!(deleted, "runc delete failed: {}", delete_err);
    }
}

// cri:Mount#image: the volume the caller mounted is bind-mounted read-only at
// container_path, whatever `readonly` says; a volume nobody mounted is an error.
#[test]
fn image_volumes_are_read_only_binds_of_the_mounted_volume() {
    let mut fx = Fixture::new();
    let c = container(|c| {
        c.mounts = vec![
            cri::Mount {
                container_path: "/data".into(),
                host_path: "/srv/data".into(),
                ..Default::default()
            },
            cri::Mount {
                container_path: "/vol".into(),
                image: Some(cri::ImageSpec {
                    image: "sha256:abc".into(),
                    ..Default::default()
                }),
                ..Default::default()
            },
        ]
    });
    assert!(matches!(
        fx.build(&c),
        Err(SpecError::Invalid {
            field: "config.mounts.image",
            ..
        })
    ));
    fx.image_volumes = vec![None, Some("/run/crid/containers/c1/image-volumes/1".into())];
    let spec = fx.build(&c).expect("spec");
    let vol = spec
        .mounts
        .iter()
        .find(|m| m.destination == "/vol")
        .expect("the volume is mounted");
    assert_eq!(vol.source, "/run/crid/containers/c1/image-volumes/1");
    assert_eq!(vol.options, ["rbind", "rprivate", "ro"]);
    let data = spec
        .mounts
        .iter()
        .find(|m| m.destination == "/data")
        .expect("the host path is mounted");
    assert_eq!(data.source, "/srv/data");
    assert!(data.options.contains(&"rw".to_owned()));
}
