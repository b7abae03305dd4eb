//! Records → CRI messages, and the List filters. Pure translation, no decisions.

use std::collections::HashMap;

use crid_api::runtime::v1 as cri;

use crate::state::{ContainerRecord, ContainerState, PodRecord, PodState};

fn pod_state(s: PodState) -> i32 {
    match s {
        PodState::Ready => cri::PodSandboxState::SandboxReady as i32,
        PodState::NotReady if crate::faults::on(crate::faults::Fault::StoppedPodReady) => {
            cri::PodSandboxState::SandboxReady as i32
        }
        PodState::Creating | PodState::NotReady => cri::PodSandboxState::SandboxNotready as i32,
    }
}

fn container_state(s: ContainerState) -> i32 {
    match s {
        ContainerState::Creating | ContainerState::Created => {
            cri::ContainerState::ContainerCreated as i32
        }
        ContainerState::Running => cri::ContainerState::ContainerRunning as i32,
        ContainerState::Exited => cri::ContainerState::ContainerExited as i32,
    }
}

fn labels(m: &HashMap<String, String>) -> HashMap<String, String> {
    m.clone()
}

/// cri:PodSandboxStatus.
pub fn pod_status(r: &PodRecord) -> cri::PodSandboxStatus {
    let mut ips = r.ips.iter();
    cri::PodSandboxStatus {
        id: r.id.clone(),
        metadata: Some(r.metadata()),
        state: pod_state(r.state),
        created_at: r.created_at_ns,
        network: Some(cri::PodSandboxNetworkStatus {
            ip: ips
                .next()
                .filter(|_| !crate::faults::on(crate::faults::Fault::PodIpMissing))
                .cloned()
                .unwrap_or_default(),
            additional_ips: ips.map(|ip| cri::PodIp { ip: ip.clone() }).collect(),
        }),
        linux: Some(cri::LinuxPodSandboxStatus {
            namespaces: Some(cri::Namespace {
                options: Some(crate::pod::sandbox::namespace_options(&r.config)),
            }),
        }),
        labels: labels(&r.config.labels),
        annotations: if crate::faults::on(crate::faults::Fault::PodStatusDropsAnnotations) {
            HashMap::new()
        } else {
            labels(&r.config.annotations)
        },
        runtime_handler: r.runtime_handler.clone(),
    }
}

/// cri:PodSandbox (ListPodSandbox).
pub fn pod(r: &PodRecord) -> cri::PodSandbox {
    cri::PodSandbox {
        id: r.id.clone(),
        metadata: Some(r.metadata()),
        state: pod_state(r.state),
        created_at: r.created_at_ns,
        labels: labels(&r.config.labels),
        annotations: labels(&r.config.annotations),
        runtime_handler: r.runtime_handler.clone(),
    }
}

/// Whether every `key=value` of the selector is among the labels.
fn selected(selector: &HashMap<String, String>, labels: &HashMap<String, String>) -> bool {
    selector.iter().all(|(k, v)| labels.get(k) == Some(v))
}

/// cri:PodSandboxFilter: ID (a prefix, as crictl abbreviates), state, labels.
pub fn pod_matches(f: Option<&cri::PodSandboxFilter>, r: &PodRecord) -> bool {
    let Some(f) = f else { return true };
    (f.id.is_empty() || r.id.starts_with(&f.id))
        && (crate::faults::on(crate::faults::Fault::PodListIgnoresState)
            || f.state
                .as_ref()
                .is_none_or(|s| s.state == pod_state(r.state)))
        && (crate::faults::on(crate::faults::Fault::PodListIgnoresLabels)
            || selected(&f.label_selector, &r.config.labels))
}

/// cri:ContainerFilter: ID prefix, state, pod ID prefix, labels.
pub fn container_matches(f: Option<&cri::ContainerFilter>, r: &ContainerRecord) -> bool {
    let Some(f) = f else { return true };
    (f.id.is_empty() || r.id.starts_with(&f.id))
        && (crate::faults::on(crate::faults::Fault::ContainerListIgnoresPod)
            || f.pod_sandbox_id.is_empty()
            || r.pod_id.starts_with(&f.pod_sandbox_id))
        && f.state
            .as_ref()
            .is_none_or(|s| s.state == container_state(r.state))
        && (crate::faults::on(crate::faults::Fault::ContainerListIgnoresLabels)
            || selected(&f.label_selector, &r.config.labels))
}

fn image_spec(r: &ContainerRecord) -> cri::ImageSpec {
    let mut image = r.config.image.clone().unwrap_or_default();
    image.user_specified_image = image.image.clone();
    image
}

/// cri:Container (ListContainers).
pub fn container(r: &ContainerRecord) -> cri::Container {
    cri::Container {
        id: r.id.clone(),
        pod_sandbox_id: r.pod_id.clone(),
        metadata: Some(r.metadata()),
        image: Some(image_spec(r)),
        image_ref: r.image_ref.clone(),
        state: container_state(r.state),
        created_at: r.created_at_ns,
        labels: labels(&r.config.labels),
        annotations: labels(&r.config.annotations),
        image_id: r.image_id.clone(),
    }
}

/// cri:ContainerStatus.
pub fn container_status(r: &ContainerRecord) -> cri::ContainerStatus {
    let stop_signal = cri::Signal::from_str_name(&r.stop_signal)
        .or_else(|| cri::Signal::from_str_name(&format!("SIG{}", r.stop_signal)))
        .unwrap_or(cri::Signal::RuntimeDefault);
    cri::ContainerStatus {
        id: r.id.clone(),
        metadata: Some(r.metadata()),
        state: container_state(r.state),
        created_at: r.created_at_ns,
        started_at: r.started_at_ns,
        finished_at: r.finished_at_ns,
        exit_code: r.exit_code,
        image: Some(image_spec(r)),
        image_ref: r.image_ref.clone(),
        reason: r.reason.clone(),
        message: r.message.clone(),
        labels: labels(&r.config.labels),
        annotations: labels(&r.config.annotations),
        mounts: if crate::faults::on(crate::faults::Fault::StatusDropsMounts) {
            Vec::new()
        } else {
            r.config.mounts.clone()
        },
        log_path: r.log_path.display().to_string(),
        resources: r.resources.clone().map(|l| cri::ContainerResources {
            linux: Some(l),
            windows: None,
        }),
        image_id: r.image_id.clone(),
        user: Some(cri::ContainerUser {
            linux: Some(cri::LinuxContainerUser {
                uid: r.uid.into(),
                gid: r.gid.into(),
                supplemental_groups: r.additional_gids.iter().map(|g| i64::from(*g)).collect(),
            }),
        }),
        stop_signal: stop_signal as i32,
    }
}

/// cri:ContainerEventResponse, with the pod's and its containers' status as they were when
/// the event happened.
pub fn event(e: &crate::registry::Event) -> cri::ContainerEventResponse {
    use crate::registry::EventKind;
    let kind = match e.kind {
        // The fault swaps the two, so a watcher sees a container start before it exists.
        EventKind::Created if crate::faults::on(crate::faults::Fault::EventsMisordered) => {
            cri::ContainerEventType::ContainerStartedEvent
        }
        EventKind::Started if crate::faults::on(crate::faults::Fault::EventsMisordered) => {
            cri::ContainerEventType::ContainerCreatedEvent
        }
        EventKind::Created => cri::ContainerEventType::ContainerCreatedEvent,
        EventKind::Started => cri::ContainerEventType::ContainerStartedEvent,
        EventKind::Stopped => cri::ContainerEventType::ContainerStoppedEvent,
        EventKind::Deleted => cri::ContainerEventType::ContainerDeletedEvent,
    };
    cri::ContainerEventResponse {
        container_id: e.container_id.clone(),
        container_event_type: kind as i32,
        created_at: e.at_ns,
        pod_sandbox_status: e.pod.as_ref().map(pod_status),
        containers_statuses: e.containers.iter().map(container_status).collect(),
    }
}

fn u64v(v: Option<u64>) -> Option<cri::UInt64Value> {
    v.map(|value| cri::UInt64Value { value })
}

fn cpu(at: i64, u: &crate::stats::Usage, nano_cores: Option<u64>) -> cri::CpuUsage {
    cri::CpuUsage {
        timestamp: at,
        usage_core_nano_seconds: u64v(u.cpu_ns),
        usage_nano_cores: u64v(nano_cores),
        psi: None,
    }
}

fn memory(at: i64, u: &crate::stats::Usage) -> cri::MemoryUsage {
    cri::MemoryUsage {
        timestamp: at,
        working_set_bytes: u64v(u.working_set),
        available_bytes: None,
        usage_bytes: u64v(u.memory),
        rss_bytes: u64v(u.rss),
        page_faults: u64v(u.page_faults),
        major_page_faults: u64v(u.major_page_faults),
        psi: None,
    }
}

/// cri:ContainerStats.
pub fn container_stats(c: &crate::container::stats::ContainerUsage) -> cri::ContainerStats {
    let r = &c.record;
    cri::ContainerStats {
        attributes: Some(cri::ContainerAttributes {
            id: r.id.clone(),
            metadata: Some(r.metadata()),
            labels: labels(&r.config.labels),
            annotations: labels(&r.config.annotations),
        }),
        cpu: c.usage.as_ref().map(|u| cpu(c.at_ns, u, c.nano_cores)),
        memory: c
            .usage
            .as_ref()
            .filter(|_| !crate::faults::on(crate::faults::Fault::StatsMemoryMissing))
            .map(|u| memory(c.at_ns, u)),
        writable_layer: c
            .writable
            .filter(|_| !crate::faults::on(crate::faults::Fault::StatsWritableLayerMissing))
            .map(|w| cri::FilesystemUsage {
                timestamp: c.at_ns,
                fs_id: Some(cri::FilesystemIdentifier {
                    mountpoint: c.mountpoint.clone(),
                }),
                used_bytes: Some(cri::UInt64Value { value: w.bytes }),
                inodes_used: Some(cri::UInt64Value { value: w.inodes }),
            }),
        swap: None,
        io: None,
    }
}

/// cri:ContainerStatsFilter: ID prefix, pod ID prefix, labels.
pub fn container_stats_match(f: Option<&cri::ContainerStatsFilter>, r: &ContainerRecord) -> bool {
    let Some(f) = f else { return true };
    (crate::faults::on(crate::faults::Fault::StatsFilterIgnored)
        || f.id.is_empty()
        || r.id.starts_with(&f.id))
        && (f.pod_sandbox_id.is_empty() || r.pod_id.starts_with(&f.pod_sandbox_id))
        && selected(&f.label_selector, &r.config.labels)
}

/// cri:PodSandboxStats.
pub fn pod_stats(p: &crate::container::stats::PodUsage) -> cri::PodSandboxStats {
    let r = &p.record;
    cri::PodSandboxStats {
        attributes: Some(cri::PodSandboxAttributes {
            id: r.id.clone(),
            metadata: Some(r.metadata()),
            labels: labels(&r.config.labels),
            annotations: labels(&r.config.annotations),
        }),
        linux: Some(cri::LinuxPodSandboxStats {
            cpu: Some(cpu(p.at_ns, &p.usage, p.nano_cores)),
            memory: Some(memory(p.at_ns, &p.usage)),
            network: None,
            process: Some(cri::ProcessUsage {
                timestamp: p.at_ns,
                process_count: u64v(p.usage.pids),
            }),
            containers: p.containers.iter().map(container_stats).collect(),
            io: None,
        }),
        windows: None,
    }
}

/// cri:PodSandboxStatsFilter: ID prefix, labels.
pub fn pod_stats_match(f: Option<&cri::PodSandboxStatsFilter>, r: &PodRecord) -> bool {
    let Some(f) = f else { return true };
    (f.id.is_empty() || r.id.starts_with(&f.id)) && selected(&f.label_selector, &r.config.labels)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pod_record(id: &str, state: PodState, app: &str) -> PodRecord {
        PodRecord {
            id: id.into(),
            config: cri::PodSandboxConfig {
                metadata: Some(cri::PodSandboxMetadata {
                    name: id.into(),
                    ..Default::default()
                }),
                labels: HashMap::from([("app".to_owned(), app.to_owned())]),
                ..Default::default()
            },
            runtime_handler: "runc".into(),
            state,
            created_at_ns: 1,
            netns: None,
            ipcns: None,
            utsns: None,
            infra: None,
            ips: vec!["10.0.0.2".into(), "fd00::2".into()],
            network_attached: true,
            cgroup_parent: "/crid".into(),
        }
    }

    // cri:RuntimeService.ListPodSandbox#filter (id prefix, state, label_selector)
    #[test]
    fn pod_filters_combine_id_prefix_state_and_labels() {
        let ready = pod_record("abc123", PodState::Ready, "web");
        let stopped = pod_record("abd456", PodState::NotReady, "db");
        let f = |id: &str, state: Option<cri::PodSandboxState>, app: Option<&str>| {
            cri::PodSandboxFilter {
                id: id.into(),
                state: state.map(|s| cri::PodSandboxStateValue { state: s as i32 }),
                label_selector: app
                    .map(|a| HashMap::from([("app".to_owned(), a.to_owned())]))
                    .unwrap_or_default(),
            }
        };
        assert!(pod_matches(None, &ready));
        assert!(pod_matches(Some(&f("ab", None, None)), &stopped));
        assert!(!pod_matches(Some(&f("abc", None, None)), &stopped));
        assert!(pod_matches(
            Some(&f("", Some(cri::PodSandboxState::SandboxNotready), None)),
            &stopped
        ));
        assert!(!pod_matches(
            Some(&f("", Some(cri::PodSandboxState::SandboxReady), None)),
            &stopped
        ));
        assert!(pod_matches(Some(&f("", None, Some("web"))), &ready));
        assert!(!pod_matches(Some(&f("", None, Some("web"))), &stopped));
    }

    // cri:PodSandboxStatus#network (ip, additional_ips)
    #[test]
    fn pod_status_reports_the_primary_ip_then_the_others() {
        let s = pod_status(&pod_record("p", PodState::Ready, "x"));
        let net = s.network.expect("network");
        assert_eq!(net.ip, "10.0.0.2");
        assert_eq!(
            net.additional_ips,
            vec![cri::PodIp {
                ip: "fd00::2".into()
            }]
        );
        assert_eq!(s.state, cri::PodSandboxState::SandboxReady as i32);
    }
}
