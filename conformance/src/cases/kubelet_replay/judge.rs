//! How the kubelet judges an answer, as pure functions of what containerd answered in the
//! capture (rewritten for this replay) and what the endpoint answers now.
//!
//! A replay is faster than the kubelet was, so a container the capture saw running may
//! already be exited when it exits on its own (init containers) or was stopped: such
//! containers are "moved on", and a later state is accepted for them (and their absence
//! from a list filtered by state). Everything else must match.

use std::collections::{BTreeMap, BTreeSet};
use std::net::IpAddr;

use crid_api::cri;
use tonic::Code;

use crate::cases::support::container_state_name;
use crate::cases::{ensure, status_text};

/// Judges the gRPC code against the one recorded: `Some(answer)` when both succeeded,
/// `None` when both failed alike. The kubelet accepts OK where containerd answered
/// Unimplemented (RuntimeConfig).
pub(super) fn code<T>(
    recorded: &str,
    live: Result<tonic::Response<T>, tonic::Status>,
) -> Result<Option<T>, String> {
    match live {
        Ok(r) if recorded == "OK" || recorded == "UNIMPLEMENTED" => Ok(Some(r.into_inner())),
        Ok(_) => Err(format!(
            "answered OK; the kubelet got {recorded} and relies on it"
        )),
        Err(s) if code_name(s.code()) == recorded => Ok(None),
        Err(s) => Err(format!(
            "answered {}; containerd answered {recorded}",
            status_text(&s)
        )),
    }
}

/// PodSandboxStatus: the state the kubelet saw; when it saw an IP, a valid one. Returns
/// the live IP in that case.
pub(super) fn pod(
    want: &cri::PodSandboxStatus,
    live: &cri::PodSandboxStatus,
) -> Result<Option<String>, String> {
    ensure(live.state == want.state, || {
        format!(
            "pod state {}, the kubelet saw {}",
            sandbox_state_name(live.state),
            sandbox_state_name(want.state)
        )
    })?;
    let want_ip = want.network.as_ref().map(|n| n.ip.as_str()).unwrap_or("");
    if want_ip.is_empty() {
        return Ok(None);
    }
    let ip = live
        .network
        .as_ref()
        .map(|n| n.ip.clone())
        .unwrap_or_default();
    ensure(ip.parse::<IpAddr>().is_ok(), || {
        format!("ready pod reports IP {ip:?}, the kubelet needs one")
    })?;
    Ok(Some(ip))
}

/// ContainerStatus: name, log path, and the state with its exit code, a later state
/// accepted when the container moved on.
pub(super) fn container(
    want: &cri::ContainerStatus,
    live: &cri::ContainerStatus,
    moved_on: bool,
) -> Result<(), String> {
    let name = |s: &cri::ContainerStatus| {
        s.metadata
            .as_ref()
            .map(|m| m.name.clone())
            .unwrap_or_default()
    };
    ensure(name(live) == name(want), || {
        format!(
            "metadata.name {:?}, the kubelet saw {:?}",
            name(live),
            name(want)
        )
    })?;
    ensure(
        want.log_path.is_empty() || live.log_path == want.log_path,
        || {
            format!(
                "log_path {:?}, the kubelet saw {:?}",
                live.log_path, want.log_path
            )
        },
    )?;
    if live.state == want.state {
        let exited = live.state == cri::ContainerState::ContainerExited as i32;
        return ensure(!exited || live.exit_code == want.exit_code, || {
            format!(
                "exit code {}, the kubelet saw {}",
                live.exit_code, want.exit_code
            )
        });
    }
    ensure(
        moved_on && state_rank(live.state) > state_rank(want.state),
        || {
            format!(
                "state {}, the kubelet saw {}",
                container_state_name(live.state),
                container_state_name(want.state)
            )
        },
    )
}

/// ExecSync: the probe's exit code and output.
pub(super) fn probe(
    cmd: &[String],
    want: &cri::ExecSyncResponse,
    want_out: &str,
    live: &cri::ExecSyncResponse,
) -> Result<(), String> {
    let out = String::from_utf8_lossy(&live.stdout);
    ensure(live.exit_code == want.exit_code && out == want_out, || {
        format!(
            "probe {cmd:?} exited {} with stdout {out:?}; the kubelet saw {} with {want_out:?}",
            live.exit_code, want.exit_code
        )
    })
}

/// ListPodSandbox: the pod's sandboxes and their states; under a selector of the pod's
/// uid, nothing but them.
pub(super) fn pod_list(
    live: &[cri::PodSandbox],
    want: &[cri::PodSandbox],
    mine: &BTreeSet<&str>,
    by_uid: bool,
) -> Result<(), String> {
    let strays: Vec<&str> = live
        .iter()
        .map(|p| p.id.as_str())
        .filter(|id| by_uid && !mine.contains(id))
        .collect();
    ensure(strays.is_empty(), || {
        format!("lists sandboxes {strays:?} under the pod's uid that it never created")
    })?;
    let states = |items: &[cri::PodSandbox], all: bool| -> BTreeMap<String, String> {
        items
            .iter()
            .filter(|p| all || mine.contains(p.id.as_str()))
            .map(|p| (p.id.clone(), sandbox_state_name(p.state)))
            .collect()
    };
    let (got, want) = (states(live, false), states(want, true));
    ensure(got == want, || {
        format!("the pod's sandboxes are {got:?}, the kubelet saw {want:?}")
    })
}

/// ListContainers: the pod's containers and their states (moved-on ones may be later,
/// or absent under a state filter); under a selector of the pod's uid, nothing but them.
pub(super) fn container_list(
    live: &[cri::Container],
    want: &[cri::Container],
    mine: &BTreeSet<&str>,
    moved_on: &BTreeSet<&str>,
    by_uid: bool,
    by_state: bool,
) -> Result<(), String> {
    let strays: Vec<&str> = live
        .iter()
        .map(|k| k.id.as_str())
        .filter(|id| by_uid && !mine.contains(id))
        .collect();
    ensure(strays.is_empty(), || {
        format!("lists containers {strays:?} under the pod's uid that were never created")
    })?;
    let got: BTreeMap<&str, i32> = live
        .iter()
        .filter(|k| mine.contains(k.id.as_str()))
        .map(|k| (k.id.as_str(), k.state))
        .collect();
    let want: BTreeMap<&str, i32> = want.iter().map(|k| (k.id.as_str(), k.state)).collect();
    for id in got.keys().chain(want.keys()).collect::<BTreeSet<_>>() {
        let moved = moved_on.contains(id);
        let ok = match (got.get(id), want.get(id)) {
            (Some(g), Some(w)) => g == w || (moved && state_rank(*g) > state_rank(*w)),
            (None, Some(_)) => by_state && moved,
            (Some(_), None) => false,
            (None, None) => true,
        };
        ensure(ok, || {
            let show = |m: &BTreeMap<&str, i32>| {
                m.get(id)
                    .map(|s| container_state_name(*s))
                    .unwrap_or_else(|| "absent".to_owned())
            };
            format!(
                "container {id} is {}, the kubelet saw it {}",
                show(&got),
                show(&want)
            )
        })?;
    }
    Ok(())
}

/// ListContainerStats: stats for the pod's containers the kubelet got them for (unless
/// they moved on), none for removed ones.
pub(super) fn stats(
    live: &cri::ListContainerStatsResponse,
    want: &cri::ListContainerStatsResponse,
    mine: &BTreeSet<&str>,
    moved_on: &BTreeSet<&str>,
    removed: &BTreeSet<String>,
) -> Result<(), String> {
    let ids = |r: &cri::ListContainerStatsResponse| -> BTreeSet<String> {
        r.stats
            .iter()
            .filter_map(|s| s.attributes.as_ref())
            .map(|a| a.id.clone())
            .collect()
    };
    let (live, want) = (ids(live), ids(want));
    let stale: Vec<&String> = live
        .iter()
        .filter(|id| mine.contains(id.as_str()) && removed.contains(*id))
        .collect();
    ensure(stale.is_empty(), || {
        format!("stats of removed containers {stale:?}")
    })?;
    let missing: Vec<&String> = want
        .iter()
        .filter(|id| !live.contains(*id) && !moved_on.contains(id.as_str()))
        .collect();
    ensure(missing.is_empty(), || {
        format!("no stats for running containers {missing:?}")
    })
}

/// CREATED < RUNNING < EXITED; UNKNOWN is never later than anything.
pub(super) fn state_rank(state: i32) -> i32 {
    match cri::ContainerState::try_from(state) {
        Ok(cri::ContainerState::ContainerCreated) => 0,
        Ok(cri::ContainerState::ContainerRunning) => 1,
        Ok(cri::ContainerState::ContainerExited) => 2,
        _ => -1,
    }
}

fn sandbox_state_name(v: i32) -> String {
    cri::PodSandboxState::try_from(v)
        .map(|s| s.as_str_name().to_owned())
        .unwrap_or_else(|_| format!("state {v}"))
}

/// The proto name of a gRPC code, as the capture writes it.
pub(super) fn code_name(code: Code) -> &'static str {
    match code {
        Code::Ok => "OK",
        Code::Cancelled => "CANCELLED",
        Code::Unknown => "UNKNOWN",
        Code::InvalidArgument => "INVALID_ARGUMENT",
        Code::DeadlineExceeded => "DEADLINE_EXCEEDED",
        Code::NotFound => "NOT_FOUND",
        Code::AlreadyExists => "ALREADY_EXISTS",
        Code::PermissionDenied => "PERMISSION_DENIED",
        Code::ResourceExhausted => "RESOURCE_EXHAUSTED",
        Code::FailedPrecondition => "FAILED_PRECONDITION",
        Code::Aborted => "ABORTED",
        Code::OutOfRange => "OUT_OF_RANGE",
        Code::Unimplemented => "UNIMPLEMENTED",
        Code::Internal => "INTERNAL",
        Code::Unavailable => "UNAVAILABLE",
        Code::DataLoss => "DATA_LOSS",
        Code::Unauthenticated => "UNAUTHENTICATED",
    }
}

#[cfg(test)]
mod tests {
    use cri::ContainerState::{ContainerCreated, ContainerExited, ContainerRunning};

    use super::*;

    fn status(name: &str, state: cri::ContainerState, exit: i32) -> cri::ContainerStatus {
        cri::ContainerStatus {
            metadata: Some(cri::ContainerMetadata {
                name: name.to_owned(),
                attempt: 0,
            }),
            state: state as i32,
            exit_code: exit,
            log_path: "/logs/c/0.log".to_owned(),
            ..Default::default()
        }
    }

    fn ctr(id: &str, state: cri::ContainerState) -> cri::Container {
        cri::Container {
            id: id.to_owned(),
            state: state as i32,
            ..Default::default()
        }
    }

    #[test]
    fn codes_are_judged_as_the_kubelet_does() {
        let ok = || Ok(tonic::Response::new(()));
        assert_eq!(code("OK", ok()), Ok(Some(())));
        assert_eq!(code("UNIMPLEMENTED", ok()), Ok(Some(())));
        assert!(code("NOT_FOUND", ok()).is_err());
        let nf = || Err::<tonic::Response<()>, _>(tonic::Status::not_found("gone"));
        assert_eq!(code("NOT_FOUND", nf()), Ok(None));
        assert!(code("OK", nf()).is_err());
        assert_eq!(code_name(Code::Unimplemented), "UNIMPLEMENTED");
    }

    #[test]
    fn a_container_may_be_later_only_when_it_moved_on() {
        let want = status("init", ContainerRunning, 0);
        let live = status("init", ContainerExited, 0);
        assert!(container(&want, &live, true).is_ok());
        assert!(container(&want, &live, false).is_err());
        // Never earlier, even when moved on.
        assert!(container(&live, &want, true).is_err());
        // Exit codes must match when both exited.
        let killed = status("init", ContainerExited, 137);
        assert!(container(&killed, &live, true).is_err());
        let other = status("web", ContainerRunning, 0);
        assert!(container(&other, &status("web2", ContainerRunning, 0), false).is_err());
        assert!(state_rank(ContainerExited as i32) > state_rank(ContainerRunning as i32));
        assert!(state_rank(ContainerRunning as i32) > state_rank(ContainerCreated as i32));
    }

    #[test]
    fn lists_hold_the_pods_own_containers() {
        let mine: BTreeSet<&str> = ["a", "b"].into();
        let none = BTreeSet::new();
        let moved: BTreeSet<&str> = ["a"].into();
        let want = [ctr("a", ContainerRunning), ctr("b", ContainerRunning)];
        // Other pods' containers are ignored without a uid selector, refused with one.
        let live = [
            ctr("a", ContainerRunning),
            ctr("b", ContainerRunning),
            ctr("x", ContainerExited),
        ];
        assert!(container_list(&live, &want, &mine, &none, false, false).is_ok());
        assert!(container_list(&live, &want, &mine, &none, true, false).is_err());
        // A moved-on container may have exited, or be filtered out by state.
        let live = [ctr("a", ContainerExited), ctr("b", ContainerRunning)];
        assert!(container_list(&live, &want, &mine, &moved, false, false).is_ok());
        assert!(container_list(&live, &want, &mine, &none, false, false).is_err());
        let live = [ctr("b", ContainerRunning)];
        assert!(container_list(&live, &want, &mine, &moved, false, true).is_ok());
        assert!(container_list(&live, &want, &mine, &moved, false, false).is_err());
        // After removal the kubelet saw nothing of the pod; nothing may be listed.
        assert!(container_list(&live, &[], &mine, &moved, false, false).is_err());
    }

    #[test]
    fn a_ready_pod_has_an_ip() {
        let want = cri::PodSandboxStatus {
            network: Some(cri::PodSandboxNetworkStatus {
                ip: "10.99.0.12".to_owned(),
                ..Default::default()
            }),
            ..Default::default()
        };
        let mut live = want.clone();
        live.network = Some(cri::PodSandboxNetworkStatus {
            ip: "10.1.2.3".to_owned(),
            ..Default::default()
        });
        assert_eq!(pod(&want, &live), Ok(Some("10.1.2.3".to_owned())));
        live.network = None;
        assert!(pod(&want, &live).is_err());
        assert_eq!(pod(&live, &live), Ok(None));
        live.state = cri::PodSandboxState::SandboxNotready as i32;
        assert!(pod(&want, &live).is_err());
    }
}
