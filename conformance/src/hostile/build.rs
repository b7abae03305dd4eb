//! A probe as the bytes sent: the run's own objects fill the well-formed parts, the probe's
//! target and mutation the rest. Every pod and container the run asks for carries the
//! run's label.

use std::collections::HashMap;

use crid_api::cri;
use prost::Message;

pub use super::fixture::{Fixture, RUN_LABEL, filler};
use super::probe::{BadValue, Mutation, PathField, Probe};
use super::rpc::{Names, Rpc};
use super::wire;

/// The string spliced into bytes that are not UTF-8 after encoding.
const MARKER: &str = "HOSTILE-NOT-UTF8-MARKER";

fn deep_labels(entries: usize, size: usize) -> HashMap<String, String> {
    (0..entries)
        .map(|i| {
            let key = format!("k{i}-{}", filler(size));
            (key, filler(size))
        })
        .collect()
}

/// The bytes to send for `probe`; `n` is the request's serial number (unique names).
pub fn encode(probe: &Probe, fx: &Fixture, n: u64) -> Vec<u8> {
    let not_utf8 = match probe.mutation {
        Mutation::NotUtf8 { deep } => Some(deep || probe.rpc.names() == Names::Nothing),
        _ => None,
    };
    let id = fx.id(probe.rpc, &probe.target);
    if let Some(deep) = not_utf8 {
        let nested = deep
            .then(|| message(probe.rpc, id, &probe.mutation, Some(MARKER), fx, n))
            .and_then(|b| wire::splice_not_utf8(&b, MARKER.as_bytes()));
        // No nested string in this request: the ID field carries it.
        let first = || {
            let b = message(probe.rpc, MARKER.into(), &probe.mutation, None, fx, n);
            wire::splice_not_utf8(&b, MARKER.as_bytes()).unwrap_or_else(|| wire::truncated(&b))
        };
        return nested.unwrap_or_else(first);
    }
    let bytes = message(probe.rpc, id, &probe.mutation, None, fx, n);
    match &probe.mutation {
        Mutation::Truncated => wire::truncated(&bytes),
        Mutation::VarintOverflow => wire::varint_overflow(&bytes),
        Mutation::UnknownField => wire::unknown_field(&bytes),
        _ => bytes,
    }
}

/// A message over the server's 16 MiB limit: a Version request with a 17 MiB version.
pub fn oversize() -> Vec<u8> {
    cri::VersionRequest {
        version: filler(17 << 20),
    }
    .encode_to_vec()
}

fn marker_map(deep: Option<&str>) -> HashMap<String, String> {
    deep.map(|m| HashMap::from([(m.to_owned(), "v".to_owned())]))
        .unwrap_or_default()
}

fn message(
    rpc: Rpc,
    id: String,
    m: &Mutation,
    deep: Option<&str>,
    fx: &Fixture,
    n: u64,
) -> Vec<u8> {
    use Rpc::*;
    match rpc {
        Version => cri::VersionRequest {
            version: deep.unwrap_or("0.1.0").into(),
        }
        .encode_to_vec(),
        Status => cri::StatusRequest {
            verbose: n.is_multiple_of(2),
        }
        .encode_to_vec(),
        RuntimeConfig => cri::RuntimeConfigRequest {}.encode_to_vec(),
        ImageFsInfo => cri::ImageFsInfoRequest {}.encode_to_vec(),
        GetContainerEvents => cri::GetEventsRequest {}.encode_to_vec(),
        ListMetricDescriptors => cri::ListMetricDescriptorsRequest {}.encode_to_vec(),
        ListPodSandboxMetrics => cri::ListPodSandboxMetricsRequest {}.encode_to_vec(),
        StreamPodSandboxMetrics => cri::StreamPodSandboxMetricsRequest {}.encode_to_vec(),
        UpdateRuntimeConfig => {
            let cidr = match (m, deep) {
                (_, Some(d)) => Some(d.to_owned()),
                (Mutation::BadValue(BadValue::PodCidr(c)), _) => Some((*c).to_owned()),
                _ => None,
            };
            let runtime_config = (*m != Mutation::MissingRequired).then(|| cri::RuntimeConfig {
                network_config: cidr.map(|pod_cidr| cri::NetworkConfig { pod_cidr }),
            });
            cri::UpdateRuntimeConfigRequest { runtime_config }.encode_to_vec()
        }
        RunPodSandbox => cri::RunPodSandboxRequest {
            config: pod_config(m, deep, fx, n),
            runtime_handler: String::new(),
        }
        .encode_to_vec(),
        CreateContainer => cri::CreateContainerRequest {
            pod_sandbox_id: id,
            config: container_config(m, deep, fx, n),
            sandbox_config: Some(fx.pod_config.clone()),
        }
        .encode_to_vec(),
        StopPodSandbox => cri::StopPodSandboxRequest { pod_sandbox_id: id }.encode_to_vec(),
        RemovePodSandbox => cri::RemovePodSandboxRequest { pod_sandbox_id: id }.encode_to_vec(),
        PodSandboxStatus => cri::PodSandboxStatusRequest {
            pod_sandbox_id: id,
            verbose: n.is_multiple_of(2),
        }
        .encode_to_vec(),
        PodSandboxStats => cri::PodSandboxStatsRequest { pod_sandbox_id: id }.encode_to_vec(),
        UpdatePodSandboxResources => cri::UpdatePodSandboxResourcesRequest {
            pod_sandbox_id: id,
            ..Default::default()
        }
        .encode_to_vec(),
        PortForward => cri::PortForwardRequest {
            pod_sandbox_id: id,
            port: match m {
                Mutation::BadValue(BadValue::Port(p)) => vec![*p],
                _ => vec![80],
            },
        }
        .encode_to_vec(),
        StartContainer => cri::StartContainerRequest { container_id: id }.encode_to_vec(),
        StopContainer => cri::StopContainerRequest {
            container_id: id,
            timeout: 0,
        }
        .encode_to_vec(),
        RemoveContainer => cri::RemoveContainerRequest { container_id: id }.encode_to_vec(),
        ContainerStatus => cri::ContainerStatusRequest {
            container_id: id,
            verbose: n.is_multiple_of(2),
        }
        .encode_to_vec(),
        ContainerStats => cri::ContainerStatsRequest { container_id: id }.encode_to_vec(),
        ReopenContainerLog => cri::ReopenContainerLogRequest { container_id: id }.encode_to_vec(),
        CheckpointContainer => cri::CheckpointContainerRequest {
            container_id: id,
            location: deep.unwrap_or("/tmp/hostile-checkpoint.tar").into(),
            timeout: 1,
        }
        .encode_to_vec(),
        UpdateContainerResources => cri::UpdateContainerResourcesRequest {
            container_id: id,
            linux: Some(cri::LinuxContainerResources {
                cpu_shares: 1024,
                ..Default::default()
            }),
            windows: None,
            annotations: marker_map(deep),
        }
        .encode_to_vec(),
        ExecSync => cri::ExecSyncRequest {
            container_id: id,
            cmd: match (m, deep) {
                (_, Some(d)) => vec![d.to_owned()],
                (Mutation::MissingRequired, _) => vec![],
                _ => vec!["true".into()],
            },
            timeout: 10,
        }
        .encode_to_vec(),
        Exec => {
            let missing = *m == Mutation::MissingRequired;
            cri::ExecRequest {
                container_id: id,
                cmd: match deep {
                    Some(d) => vec![d.to_owned()],
                    None if missing && n.is_multiple_of(2) => vec![],
                    None => vec!["true".into()],
                },
                tty: false,
                stdin: false,
                stdout: !(missing && n % 2 == 1),
                stderr: false,
                ..Default::default()
            }
            .encode_to_vec()
        }
        Attach => cri::AttachRequest {
            container_id: id,
            stdin: false,
            tty: false,
            stdout: *m != Mutation::MissingRequired,
            stderr: false,
            ..Default::default()
        }
        .encode_to_vec(),
        ListPodSandbox | StreamPodSandboxes => {
            let filter = Some(cri::PodSandboxFilter {
                id: huge_id(m),
                state: (*m == Mutation::BadValue(BadValue::FilterState))
                    .then_some(cri::PodSandboxStateValue { state: 99 }),
                label_selector: selector(m, deep, fx),
            });
            if rpc == ListPodSandbox {
                cri::ListPodSandboxRequest { filter }.encode_to_vec()
            } else {
                cri::StreamPodSandboxesRequest { filter }.encode_to_vec()
            }
        }
        ListContainers | StreamContainers => {
            let filter = Some(cri::ContainerFilter {
                id: huge_id(m),
                state: (*m == Mutation::BadValue(BadValue::FilterState))
                    .then_some(cri::ContainerStateValue { state: 99 }),
                pod_sandbox_id: String::new(),
                label_selector: selector(m, deep, fx),
            });
            if rpc == ListContainers {
                cri::ListContainersRequest { filter }.encode_to_vec()
            } else {
                cri::StreamContainersRequest { filter }.encode_to_vec()
            }
        }
        ListContainerStats | StreamContainerStats => {
            let filter = Some(cri::ContainerStatsFilter {
                id: huge_id(m),
                pod_sandbox_id: String::new(),
                label_selector: selector(m, deep, fx),
            });
            if rpc == ListContainerStats {
                cri::ListContainerStatsRequest { filter }.encode_to_vec()
            } else {
                cri::StreamContainerStatsRequest { filter }.encode_to_vec()
            }
        }
        ListPodSandboxStats | StreamPodSandboxStats => {
            let filter = Some(cri::PodSandboxStatsFilter {
                id: huge_id(m),
                label_selector: selector(m, deep, fx),
            });
            if rpc == ListPodSandboxStats {
                cri::ListPodSandboxStatsRequest { filter }.encode_to_vec()
            } else {
                cri::StreamPodSandboxStatsRequest { filter }.encode_to_vec()
            }
        }
        ListImages | StreamImages => {
            let image = match (m, deep) {
                (_, Some(d)) => Some(d.to_owned()),
                (Mutation::HugeNames(len), _) => Some(format!("{}/{}", fx.registry, filler(*len))),
                _ => None,
            };
            let filter = image.map(|i| cri::ImageFilter {
                image: Some(fx.spec(&i)),
            });
            if rpc == ListImages {
                cri::ListImagesRequest { filter }.encode_to_vec()
            } else {
                cri::StreamImagesRequest { filter }.encode_to_vec()
            }
        }
        ImageStatus => cri::ImageStatusRequest {
            image: (*m != Mutation::MissingRequired).then(|| cri::ImageSpec {
                image: id,
                annotations: deep
                    .map(|d| HashMap::from([("a".to_owned(), d.to_owned())]))
                    .unwrap_or_default(),
                ..Default::default()
            }),
            verbose: n.is_multiple_of(2),
        }
        .encode_to_vec(),
        PullImage => {
            let mut r = fx.pull_request();
            r.image = (*m != Mutation::MissingRequired).then(|| fx.spec(&id));
            if let Some(d) = deep {
                r.auth = Some(cri::AuthConfig {
                    username: d.to_owned(),
                    ..Default::default()
                });
            }
            r.encode_to_vec()
        }
        RemoveImage => cri::RemoveImageRequest {
            image: Some(cri::ImageSpec {
                image: id,
                user_specified_image: deep.unwrap_or_default().to_owned(),
                ..Default::default()
            }),
        }
        .encode_to_vec(),
    }
}

fn huge_id(m: &Mutation) -> String {
    match m {
        Mutation::HugeNames(n) => filler(*n),
        _ => String::new(),
    }
}

fn selector(m: &Mutation, deep: Option<&str>, fx: &Fixture) -> HashMap<String, String> {
    match m {
        Mutation::DeepLabels { entries, size } => fx.labels(deep_labels(*entries, *size)),
        _ => fx.labels(marker_map(deep)),
    }
}

fn pod_config(
    m: &Mutation,
    deep: Option<&str>,
    fx: &Fixture,
    n: u64,
) -> Option<cri::PodSandboxConfig> {
    let mut c = fx.pod_config(n);
    if let Some(d) = deep {
        c.labels.insert("m".into(), d.to_owned());
    }
    match m {
        Mutation::MissingRequired => match n % 3 {
            0 => return None,
            1 => c.metadata = None,
            _ => {
                if let Some(md) = c.metadata.as_mut() {
                    md.name.clear();
                }
            }
        },
        Mutation::BadValue(b) => {
            let sysctl = |k: &str, v: &str| {
                Some(cri::LinuxPodSandboxConfig {
                    sysctls: HashMap::from([(k.to_owned(), v.to_owned())]),
                    ..Default::default()
                })
            };
            match b {
                BadValue::HostnameWithSlash => c.hostname = "../etc".into(),
                BadValue::HostSysctl => c.linux = sysctl("kernel.panic", "1"),
                BadValue::LongHostname => c.hostname = filler(300),
                BadValue::HostPort => {
                    c.port_mappings = vec![cri::PortMapping {
                        protocol: cri::Protocol::Tcp as i32,
                        container_port: 80,
                        host_port: 70000,
                        host_ip: String::new(),
                    }]
                }
                BadValue::DnsInjection => {
                    c.dns_config = Some(cri::DnsConfig {
                        servers: vec!["10.0.0.10\nnameserver 6.6.6.6".into()],
                        ..Default::default()
                    })
                }
                BadValue::MissingSysctl => c.linux = sysctl("net.hostile.no_such_key", "1"),
                BadValue::SysctlValue => c.linux = sysctl("net.ipv4.ip_forward", "banana"),
                _ => {}
            }
        }
        Mutation::HugeNames(len) => {
            if let Some(md) = c.metadata.as_mut() {
                md.name = format!("{}{}", filler(*len), n);
            }
        }
        Mutation::DeepLabels { entries, size } => {
            c.labels = fx.labels(deep_labels(*entries, *size));
            c.annotations = deep_labels(*entries, *size);
        }
        Mutation::PathTraversal(PathField::LogDirectory, p) => c.log_directory = p.clone(),
        _ => {}
    }
    Some(c)
}

fn container_config(
    m: &Mutation,
    deep: Option<&str>,
    fx: &Fixture,
    n: u64,
) -> Option<cri::ContainerConfig> {
    let mut c = fx.container_config(n);
    if let Some(d) = deep {
        c.envs.push(cri::KeyValue {
            key: "M".into(),
            value: d.to_owned(),
        });
    }
    let mount = |container_path: &str, host_path: &str| cri::Mount {
        container_path: container_path.to_owned(),
        host_path: host_path.to_owned(),
        ..Default::default()
    };
    match m {
        Mutation::MissingRequired => match n % 4 {
            0 => return None,
            1 => c.metadata = None,
            2 => c.image = None,
            _ => c.image = Some(fx.spec("")),
        },
        Mutation::BadValue(b) => {
            let device = |container_path: &str, host_path: &str| cri::Device {
                container_path: container_path.to_owned(),
                host_path: host_path.to_owned(),
                permissions: "rwm".into(),
            };
            match b {
                BadValue::StopSignal => c.stop_signal = 9999,
                BadValue::DeviceRelative => c.devices = vec![device("dev/null", "/dev/null")],
                BadValue::DeviceNotADevice => {
                    c.devices = vec![device("/dev/hostile", "/dev/../etc/passwd")]
                }
                BadValue::WorkingDir => c.working_dir = "relative/dir".into(),
                _ => {}
            }
        }
        Mutation::HugeNames(len) => {
            if let Some(md) = c.metadata.as_mut() {
                md.name = format!("{}{}", filler(*len), n);
            }
        }
        Mutation::DeepLabels { entries, size } => {
            c.labels = fx.labels(deep_labels(*entries, *size));
            c.annotations = deep_labels(*entries, *size);
        }
        Mutation::PathTraversal(field, p) => match field {
            PathField::LogPath => c.log_path = p.clone(),
            PathField::ContainerPath => c.mounts = vec![mount(p, &fx.host_dir)],
            PathField::HostPath => c.mounts = vec![mount("/data", p)],
            PathField::ImageSubPath => {
                let mut mt = mount("/data", &fx.host_dir);
                mt.image = Some(fx.spec(&fx.image));
                mt.image_sub_path = p.clone();
                c.mounts = vec![mt];
            }
            PathField::SeccompProfile => {
                c.linux = Some(cri::LinuxContainerConfig {
                    security_context: Some(cri::LinuxContainerSecurityContext {
                        seccomp: Some(cri::SecurityProfile {
                            profile_type: cri::security_profile::ProfileType::Localhost as i32,
                            localhost_ref: p.clone(),
                        }),
                        ..Default::default()
                    }),
                    ..Default::default()
                })
            }
            PathField::LogDirectory => {}
        },
        _ => {}
    }
    Some(c)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::hostile::probe::{Target, probe_strategy};
    use proptest::strategy::{Strategy, ValueTree};
    use proptest::test_runner::TestRunner;

    fn fixture() -> Fixture {
        Fixture {
            run_id: "r1".into(),
            pod_id: "p".repeat(64),
            pod_config: cri::PodSandboxConfig::default(),
            container_id: "c".repeat(64),
            image: "127.0.0.1:5000/busybox:latest".into(),
            registry: "127.0.0.1:5000".into(),
            log_root: "/tmp/logs".into(),
            canary: "/tmp/canary".into(),
            host_dir: "/tmp".into(),
            credentials: None,
        }
    }

    #[test]
    fn every_undecodable_probe_fails_to_decode_and_the_rest_decode() {
        let fx = fixture();
        let s = probe_strategy(fx.canary.clone());
        let mut runner = TestRunner::deterministic();
        for n in 0..3000 {
            let p = s.new_tree(&mut runner).expect("tree").current();
            if matches!(p.target, Target::Huge(_)) {
                continue;
            }
            let bytes = encode(&p, &fx, n);
            // Decoding with the generic prost-reflect descriptor would be exact; the
            // messages that matter are checked by type.
            let decoded = match p.rpc {
                Rpc::RunPodSandbox => cri::RunPodSandboxRequest::decode(bytes.as_slice()).is_ok(),
                Rpc::CreateContainer => {
                    cri::CreateContainerRequest::decode(bytes.as_slice()).is_ok()
                }
                Rpc::ContainerStatus => {
                    cri::ContainerStatusRequest::decode(bytes.as_slice()).is_ok()
                }
                Rpc::ListPodSandbox => cri::ListPodSandboxRequest::decode(bytes.as_slice()).is_ok(),
                Rpc::PullImage => cri::PullImageRequest::decode(bytes.as_slice()).is_ok(),
                _ => continue,
            };
            assert_eq!(decoded, !p.mutation.undecodable(), "{p}");
        }
    }

    #[test]
    fn created_objects_carry_the_run_label() {
        let fx = fixture();
        let p = Probe {
            rpc: Rpc::RunPodSandbox,
            target: Target::Own,
            mutation: Mutation::DeepLabels {
                entries: 3,
                size: 2,
            },
        };
        let r = cri::RunPodSandboxRequest::decode(encode(&p, &fx, 1).as_slice()).expect("decodes");
        let c = r.config.expect("config");
        assert_eq!(c.labels[RUN_LABEL], "r1");
        assert_eq!(c.labels.len(), 4);
    }
}
