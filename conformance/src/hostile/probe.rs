//! One hostile request, in the abstract: which RPC, which object its ID field names, and
//! what is wrong with the rest of it. [`crate::hostile::judge`] decides from this alone
//! which answers are right; [`crate::hostile::build`] turns it into bytes.

use std::fmt;

use proptest::prelude::*;

use super::rpc::{Names, Rpc};

/// What the request's ID field holds.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Target {
    /// The run's own object of the right kind (its pod, its running container, the
    /// fixture image), or nothing for RPCs without an ID.
    Own,
    /// A well-formed ID that names nothing (64 hex digits; for images, a repository of the
    /// fixture registry that does not exist).
    Missing(String),
    /// The run's own object of another kind: the container's ID where a pod's is due, the
    /// pod's where a container's is, the image ID where either is.
    OtherKind,
    /// The first 12 characters of the own object's ID (lookups only).
    Prefix,
    /// The empty string.
    Empty,
    /// A string of this many bytes.
    Huge(usize),
    /// A path or path-like string: `../../…/<canary>`, `/`, `..`, a NUL byte.
    Traversal(String),
}

/// A path field of a create request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PathField {
    /// PodSandboxConfig.log_directory (must be absolute, without `..`).
    LogDirectory,
    /// ContainerConfig.log_path (relative to the pod's log_directory, without `..`).
    LogPath,
    /// Mount.container_path (absolute, without `..`).
    ContainerPath,
    /// Mount.host_path (absolute).
    HostPath,
    /// Mount.image_sub_path (image volumes; never a way out of the image).
    ImageSubPath,
    /// LinuxContainerSecurityContext.seccomp.localhost_ref (an absolute path to a
    /// profile).
    SeccompProfile,
}

/// A value out of its domain, per field.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BadValue {
    /// PodSandboxConfig.hostname `../etc`.
    HostnameWithSlash,
    /// PodSandboxConfig.hostname of 300 characters.
    LongHostname,
    /// A sysctl outside the pod's namespaces (`kernel.panic`): it would change the host.
    HostSysctl,
    /// A sysctl in the pod's namespace that this kernel does not have.
    MissingSysctl,
    /// `net.ipv4.ip_forward = banana`: a value the kernel refuses.
    SysctlValue,
    /// PortMapping.host_port 70000.
    HostPort,
    /// DNSConfig.servers with a newline and a second `nameserver` line.
    DnsInjection,
    /// ContainerConfig.stop_signal 9999 (no such Signal).
    StopSignal,
    /// Device.container_path relative.
    DeviceRelative,
    /// Device.host_path `/dev/../etc/passwd` (a regular file).
    DeviceNotADevice,
    /// ContainerConfig.working_dir relative.
    WorkingDir,
    /// PortForwardRequest.port out of 1..=65535.
    Port(i32),
    /// NetworkConfig.pod_cidr that is no CIDR.
    PodCidr(&'static str),
    /// Filter state 99 (no such enum value).
    FilterState,
}

/// What is wrong with the request apart from its ID field.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Mutation {
    /// Nothing: a well-formed request.
    None,
    /// A required part is absent (config, metadata, image, command, every stream).
    MissingRequired,
    /// A path field that leads elsewhere.
    PathTraversal(PathField, String),
    /// Label and annotation maps (or a label selector) with this many entries of this size.
    DeepLabels {
        /// Entries per map.
        entries: usize,
        /// Bytes per key and per value.
        size: usize,
    },
    /// Names (metadata name, image name in a filter) of this many bytes.
    HugeNames(usize),
    /// A value out of its domain.
    BadValue(BadValue),
    /// A string field holds bytes that are not UTF-8 (spliced at wire level); `deep`: a
    /// nested field (a map key, a config field), else the first string.
    NotUtf8 {
        /// In a nested field.
        deep: bool,
    },
    /// A field says it is longer than the message.
    Truncated,
    /// A varint that does not end within ten bytes.
    VarintOverflow,
    /// A field the message does not define, holding bytes that are not UTF-8 (a decoder
    /// skips it).
    UnknownField,
    /// The message is larger than the server's limit (16 MiB in crid).
    Oversize,
}

impl Mutation {
    /// A short name for the figures.
    pub fn kind(&self) -> &'static str {
        match self {
            Mutation::None => "well-formed",
            Mutation::MissingRequired => "missing-required",
            Mutation::PathTraversal(..) => "path-traversal",
            Mutation::DeepLabels { .. } => "deep-labels",
            Mutation::HugeNames(_) => "huge-names",
            Mutation::BadValue(_) => "bad-value",
            Mutation::NotUtf8 { .. } => "not-utf8",
            Mutation::Truncated => "truncated",
            Mutation::VarintOverflow => "varint-overflow",
            Mutation::UnknownField => "unknown-field",
            Mutation::Oversize => "oversize",
        }
    }

    /// Whether the mutation is made to the encoded bytes (the request cannot decode).
    pub fn undecodable(&self) -> bool {
        matches!(
            self,
            Mutation::NotUtf8 { .. } | Mutation::Truncated | Mutation::VarintOverflow
        )
    }
}

impl Target {
    /// A short name for the figures.
    pub fn kind(&self) -> &'static str {
        match self {
            Target::Own => "own",
            Target::Missing(_) => "missing",
            Target::OtherKind => "other-kind",
            Target::Prefix => "prefix",
            Target::Empty => "empty",
            Target::Huge(_) => "huge",
            Target::Traversal(_) => "traversal",
        }
    }
}

/// One generated request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Probe {
    /// The RPC.
    pub rpc: Rpc,
    /// What its ID field holds.
    pub target: Target,
    /// What else is wrong with it.
    pub mutation: Mutation,
}

impl fmt::Display for Probe {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let target = match &self.target {
            Target::Huge(n) => format!("huge({n} bytes)"),
            Target::Traversal(s) => format!("traversal({s:?})"),
            Target::Missing(s) => format!("missing({})", short(s)),
            t => t.kind().to_owned(),
        };
        let mutation = match &self.mutation {
            Mutation::PathTraversal(field, p) => format!("path-traversal({field:?} = {p:?})"),
            Mutation::DeepLabels { entries, size } => {
                format!("deep-labels({entries} entries of {size} bytes)")
            }
            Mutation::HugeNames(n) => format!("huge-names({n} bytes)"),
            Mutation::BadValue(b) => format!("bad-value({b:?})"),
            Mutation::NotUtf8 { deep } => {
                format!("not-utf8({})", if *deep { "nested" } else { "first" })
            }
            m => m.kind().to_owned(),
        };
        write!(f, "{} target={target} mutation={mutation}", self.rpc)
    }
}

fn short(s: &str) -> String {
    if s.len() > 40 {
        format!(
            "{}…",
            &s[..s.char_indices().nth(40).map_or(s.len(), |(i, _)| i)]
        )
    } else {
        s.to_owned()
    }
}

/// Whether the request has a string field to put bytes that are not UTF-8 in.
pub fn has_strings(rpc: Rpc) -> bool {
    !matches!(
        rpc,
        Rpc::Status
            | Rpc::RuntimeConfig
            | Rpc::ImageFsInfo
            | Rpc::GetContainerEvents
            | Rpc::ListMetricDescriptors
            | Rpc::ListPodSandboxMetrics
            | Rpc::StreamPodSandboxMetrics
    )
}

/// The mutations the body of `rpc` can carry with an own (or no) target.
fn body_mutations(rpc: Rpc) -> Vec<Mutation> {
    use Rpc::*;
    match rpc {
        RunPodSandbox => vec![
            Mutation::None,
            Mutation::MissingRequired,
            Mutation::BadValue(BadValue::HostSysctl),
            Mutation::HugeNames(0),
            Mutation::DeepLabels {
                entries: 0,
                size: 0,
            },
            Mutation::PathTraversal(PathField::LogDirectory, String::new()),
        ],
        CreateContainer => vec![
            Mutation::None,
            Mutation::MissingRequired,
            Mutation::BadValue(BadValue::StopSignal),
            Mutation::HugeNames(0),
            Mutation::DeepLabels {
                entries: 0,
                size: 0,
            },
            Mutation::PathTraversal(PathField::LogPath, String::new()),
            Mutation::PathTraversal(PathField::ContainerPath, String::new()),
            Mutation::PathTraversal(PathField::HostPath, String::new()),
            Mutation::PathTraversal(PathField::ImageSubPath, String::new()),
            Mutation::PathTraversal(PathField::SeccompProfile, String::new()),
        ],
        ExecSync | Exec | Attach | ImageStatus | PullImage => {
            vec![Mutation::None, Mutation::MissingRequired]
        }
        PortForward => vec![Mutation::None, Mutation::BadValue(BadValue::Port(0))],
        UpdateRuntimeConfig => vec![Mutation::None, Mutation::BadValue(BadValue::PodCidr(""))],
        ListPodSandbox | ListContainers | StreamPodSandboxes | StreamContainers => vec![
            Mutation::None,
            Mutation::BadValue(BadValue::FilterState),
            Mutation::HugeNames(0),
            Mutation::DeepLabels {
                entries: 0,
                size: 0,
            },
        ],
        ListContainerStats | ListPodSandboxStats | StreamContainerStats | StreamPodSandboxStats => {
            vec![
                Mutation::None,
                Mutation::HugeNames(0),
                Mutation::DeepLabels {
                    entries: 0,
                    size: 0,
                },
            ]
        }
        ListImages | StreamImages => vec![Mutation::None, Mutation::HugeNames(0)],
        _ => vec![Mutation::None],
    }
}

/// Paths that lead out of where they belong, for `field`.
fn escapes(field: PathField) -> Vec<&'static str> {
    match field {
        PathField::LogDirectory => vec![
            "relative/logs",
            "/var/log/pods/../../../etc",
            "/tmp/..",
            "..",
            "/tmp/a\0b",
        ],
        PathField::LogPath => vec![
            "../../../../etc/cron.d/x",
            "/etc/passwd",
            "c/../../x.log",
            "..",
            "a\0b.log",
            "dir/",
        ],
        PathField::ContainerPath => vec!["../etc", "/data/../../etc", "relative", "/", "/a/.."],
        PathField::HostPath => vec!["relative/dir", "../../etc", "tmp", "./x"],
        PathField::ImageSubPath => vec!["../../../etc", "/etc", "a/../../b", "x"],
        PathField::SeccompProfile => vec![
            "../../../../etc/passwd",
            "/etc/passwd",
            "relative/profile.json",
            "/proc/self/environ",
        ],
    }
}

fn hex(n: usize) -> impl Strategy<Value = String> {
    proptest::collection::vec(0u8..16, n).prop_map(|v| {
        v.into_iter()
            .map(|d| char::from_digit(u32::from(d), 16).unwrap_or('0'))
            .collect()
    })
}

/// Sizes for huge strings: mostly tens of KiB, sometimes megabytes (under the 16 MiB
/// message limit).
fn huge_size() -> impl Strategy<Value = usize> {
    prop_oneof![
        6 => 256usize..70_000,
        3 => 70_000usize..600_000,
        1 => 1_000_000usize..4_000_000,
    ]
}

/// ID-like strings that are paths; `canary` is a directory outside the daemon's state that
/// must survive.
fn traversal(canary: String) -> impl Strategy<Value = String> {
    prop_oneof![
        Just(format!("../../../../../../../..{canary}")),
        Just(format!("../../../../../../../..{canary}/victim")),
        Just("..".to_owned()),
        Just(".".to_owned()),
        Just("/".to_owned()),
        Just("../".to_owned()),
        Just("a/../../b".to_owned()),
        Just("x\0y".to_owned()),
        Just("%2e%2e%2f%2e%2e%2fetc".to_owned()),
        Just("*".to_owned()),
        Just("\u{202e}gnp.exe".to_owned()),
    ]
}

fn target_strategy(rpc: Rpc, canary: String) -> BoxedStrategy<Target> {
    let names = rpc.names();
    if names == Names::Nothing {
        return Just(Target::Own).boxed();
    }
    let missing = hex(64).prop_map(Target::Missing);
    // CreateContainer's body carries most mutations: it names the run's pod more often.
    let own_weight = match rpc {
        _ if rpc.destructive() => 0,
        Rpc::CreateContainer => 10,
        _ => 4,
    };
    let prefix_weight = if rpc.destructive() || names == Names::Image {
        0
    } else {
        1
    };
    prop_oneof![
        own_weight => Just(Target::Own),
        3 => missing,
        2 => Just(Target::OtherKind),
        prefix_weight => Just(Target::Prefix),
        1 => Just(Target::Empty),
        1 => huge_size().prop_map(Target::Huge),
        2 => traversal(canary).prop_map(Target::Traversal),
    ]
    .boxed()
}

/// Sizes for huge names: they are kept, and listed with their objects, so a run that
/// creates many must stay under the 16 MiB message limit of a listing.
fn name_size() -> impl Strategy<Value = usize> {
    prop_oneof![
        8 => 256usize..70_000,
        2 => 70_000usize..400_000,
    ]
}

fn fill(m: Mutation) -> BoxedStrategy<Mutation> {
    match m {
        Mutation::HugeNames(_) => name_size().prop_map(Mutation::HugeNames).boxed(),
        Mutation::DeepLabels { .. } => prop_oneof![
            (1000usize..8_000, 1usize..16),
            (1usize..8, 1000usize..16_000),
        ]
        .prop_map(|(entries, size)| Mutation::DeepLabels { entries, size })
        .boxed(),
        Mutation::PathTraversal(field, _) => {
            let choices: Vec<Mutation> = escapes(field)
                .into_iter()
                .map(|p| Mutation::PathTraversal(field, p.to_owned()))
                .collect();
            proptest::sample::select(choices).boxed()
        }
        Mutation::BadValue(b) => {
            let choices: Vec<BadValue> = match b {
                BadValue::HostnameWithSlash
                | BadValue::LongHostname
                | BadValue::HostSysctl
                | BadValue::MissingSysctl
                | BadValue::SysctlValue
                | BadValue::HostPort
                | BadValue::DnsInjection => vec![
                    BadValue::HostnameWithSlash,
                    BadValue::LongHostname,
                    BadValue::HostSysctl,
                    BadValue::MissingSysctl,
                    BadValue::SysctlValue,
                    BadValue::HostPort,
                    BadValue::DnsInjection,
                ],
                BadValue::StopSignal
                | BadValue::DeviceRelative
                | BadValue::DeviceNotADevice
                | BadValue::WorkingDir => vec![
                    BadValue::StopSignal,
                    BadValue::DeviceRelative,
                    BadValue::DeviceNotADevice,
                    BadValue::WorkingDir,
                ],
                BadValue::Port(_) => {
                    vec![BadValue::Port(70000), BadValue::Port(-1), BadValue::Port(0)]
                }
                BadValue::PodCidr(_) => vec![
                    BadValue::PodCidr("../../etc"),
                    BadValue::PodCidr("10.0.0.0/99"),
                    BadValue::PodCidr("not-a-cidr"),
                    BadValue::PodCidr("10.1.0.0/16,::1/200"),
                ],
                BadValue::FilterState => vec![BadValue::FilterState],
            };
            proptest::sample::select(choices)
                .prop_map(Mutation::BadValue)
                .boxed()
        }
        m => Just(m).boxed(),
    }
}

fn mutation_strategy(rpc: Rpc, target: &Target) -> BoxedStrategy<Mutation> {
    // Body mutations only on a request whose ID names the right object: otherwise two
    // things are wrong at once and either answer would be right.
    let body: Vec<BoxedStrategy<Mutation>> = if *target == Target::Own {
        body_mutations(rpc).into_iter().map(fill).collect()
    } else {
        vec![Just(Mutation::None).boxed()]
    };
    let body = proptest::strategy::Union::new(body);
    let wire_weight = if has_strings(rpc) { 2 } else { 0 };
    prop_oneof![
        8 => body,
        wire_weight => any::<bool>().prop_map(|deep| Mutation::NotUtf8 { deep }),
        1 => Just(Mutation::Truncated),
        1 => Just(Mutation::VarintOverflow),
        1 => Just(Mutation::UnknownField),
    ]
    .boxed()
}

/// The generator of one probe: an RPC, then a target and a mutation that fit.
/// `canary` is the directory traversal targets aim at. Oversize messages are added by the
/// runner at a fixed rate rather than generated (each is 17 MiB).
pub fn probe_strategy(canary: String) -> impl Strategy<Value = Probe> {
    // The two creates carry most body mutations: they are drawn twice as often.
    let rpcs = proptest::strategy::Union::new_weighted(
        Rpc::ALL
            .iter()
            .map(|r| {
                let weight = match r {
                    Rpc::RunPodSandbox | Rpc::CreateContainer => 2,
                    _ => 1,
                };
                (weight, Just(*r))
            })
            .collect(),
    );
    rpcs.prop_flat_map(move |rpc| {
        target_strategy(rpc, canary.clone()).prop_flat_map(move |target| {
            mutation_strategy(rpc, &target).prop_map(move |mutation| Probe {
                rpc,
                target: target.clone(),
                mutation,
            })
        })
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::strategy::ValueTree;
    use proptest::test_runner::{Config, RngAlgorithm, TestRng, TestRunner};

    fn runner(seed: u64) -> TestRunner {
        let mut bytes = [0u8; 32];
        bytes[..8].copy_from_slice(&seed.to_le_bytes());
        TestRunner::new_with_rng(
            Config::default(),
            TestRng::from_seed(RngAlgorithm::ChaCha, &bytes),
        )
    }

    #[test]
    fn probes_are_reproducible_and_never_aim_destructive_calls_at_own_objects() {
        let s = probe_strategy("/tmp/canary".into());
        let draw = |seed| {
            let mut r = runner(seed);
            (0..5000)
                .map(|_| s.new_tree(&mut r).expect("tree").current())
                .collect::<Vec<_>>()
        };
        let a = draw(7);
        assert_eq!(a, draw(7));
        for p in &a {
            if p.rpc.destructive() {
                assert!(!matches!(p.target, Target::Own | Target::Prefix), "{p}");
            }
            if p.target != Target::Own {
                assert!(
                    matches!(
                        p.mutation,
                        Mutation::None
                            | Mutation::NotUtf8 { .. }
                            | Mutation::Truncated
                            | Mutation::VarintOverflow
                            | Mutation::UnknownField
                    ),
                    "{p}"
                );
            }
            if !has_strings(p.rpc) {
                assert!(!matches!(p.mutation, Mutation::NotUtf8 { .. }), "{p}");
            }
        }
        for rpc in Rpc::ALL {
            assert!(a.iter().any(|p| p.rpc == *rpc), "{rpc} never drawn");
        }
        for field in [
            PathField::LogDirectory,
            PathField::LogPath,
            PathField::ContainerPath,
            PathField::HostPath,
            PathField::ImageSubPath,
            PathField::SeccompProfile,
        ] {
            assert!(
                a.iter()
                    .any(|p| matches!(&p.mutation, Mutation::PathTraversal(f, _) if *f == field)),
                "{field:?} never drawn"
            );
        }
    }
}
