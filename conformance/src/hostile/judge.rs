//! Which answers are right: per RPC, per target and per mutation, the status codes a
//! conforming runtime may give, and the clause that says so. Pure: it sees the probe, never
//! the answer's content. Never Internal, Unknown or Unavailable for a request that is
//! wrong: those say the runtime failed.

use tonic::Code;

use super::probe::{BadValue, Mutation, Probe, Target};
use super::rpc::{Names, Rpc};

/// The right answers to one probe.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Expected {
    /// Any of these codes is right.
    pub codes: Vec<Code>,
    /// The clause that says so.
    pub clause: String,
    /// An OK answer created an object (a pod or a container) the oracle must track.
    pub creates: bool,
}

fn expected(codes: &[Code], clause: impl Into<String>) -> Expected {
    Expected {
        codes: codes.to_vec(),
        clause: clause.into(),
        creates: false,
    }
}

fn service(rpc: Rpc) -> &'static str {
    if rpc >= Rpc::ListImages {
        "ImageService"
    } else {
        "RuntimeService"
    }
}

/// The right answers to `probe`.
pub fn expect(probe: &Probe) -> Expected {
    let rpc = probe.rpc;
    let at = |what: &str| format!("cri:{}.{rpc}#{what}", service(rpc));
    // A request that cannot be decoded is the client's fault.
    if probe.mutation.undecodable() {
        let mut codes = vec![Code::InvalidArgument];
        if rpc.unimplemented() {
            codes.push(Code::Unimplemented);
        }
        return expected(
            &codes,
            "grpc:statuscodes.md#INVALID_ARGUMENT (a request that does not parse)",
        );
    }
    if probe.mutation == Mutation::Oversize {
        return expected(
            &[Code::ResourceExhausted],
            "grpc:statuscodes.md#RESOURCE_EXHAUSTED (request larger than the server's limit)",
        );
    }
    if rpc.unimplemented() {
        return expected(
            &[Code::Unimplemented],
            "grpc:statuscodes.md#UNIMPLEMENTED (crid serves no such RPC)",
        );
    }
    if rpc.names() != Names::Nothing && probe.target != Target::Own {
        return expect_target(rpc, &probe.target, at);
    }
    expect_body(rpc, &probe.mutation, at)
}

/// The request's ID field names no object of its kind; the rest is well-formed.
fn expect_target(rpc: Rpc, target: &Target, at: impl Fn(&str) -> String) -> Expected {
    use Code::*;
    let image = rpc.names() == Names::Image;
    match target {
        Target::Own => unreachable!("an own target is judged by its body"),
        Target::Empty => expected(&[InvalidArgument], at("required field empty")),
        // A prefix names the object in runtimes that resolve prefixes (containerd).
        Target::Prefix => expected(&[Ok, NotFound], at("NotFound")),
        Target::Missing(_) | Target::OtherKind => {
            if rpc.idempotent() {
                expected(&[Ok], at("idempotent"))
            } else if rpc == Rpc::ImageStatus {
                expected(&[Ok], at("image (unset when the image is not present)"))
            } else {
                expected(&[NotFound], at("NotFound"))
            }
        }
        Target::Huge(_) | Target::Traversal(_) => {
            if rpc == Rpc::PullImage {
                expected(&[InvalidArgument], at("image (not a valid reference)"))
            } else if rpc.idempotent() || rpc == Rpc::ImageStatus {
                let clause = if image {
                    "image (not present, or not a valid reference)"
                } else {
                    "idempotent (or an ID no object can have)"
                };
                expected(&[Ok, InvalidArgument], at(clause))
            } else {
                expected(
                    &[NotFound, InvalidArgument],
                    at("NotFound (or an ID no object can have)"),
                )
            }
        }
    }
}

/// The ID field names the right object (or there is none); the body carries `mutation`.
fn expect_body(rpc: Rpc, mutation: &Mutation, at: impl Fn(&str) -> String) -> Expected {
    use Code::*;
    let creates = matches!(rpc, Rpc::RunPodSandbox | Rpc::CreateContainer);
    let mut e = match mutation {
        Mutation::None | Mutation::UnknownField => expected(&[Ok], at("well-formed request")),
        Mutation::MissingRequired => match rpc {
            Rpc::UpdateRuntimeConfig => expected(&[Ok], at("runtime_config (nothing to change)")),
            _ => expected(&[InvalidArgument], at("required field absent")),
        },
        Mutation::PathTraversal(field, _) => expected(
            &[InvalidArgument],
            at(&format!("{field:?} (a path that leaves where it belongs)")),
        ),
        Mutation::DeepLabels { .. } | Mutation::HugeNames(_) => {
            if creates {
                expected(
                    &[Ok, InvalidArgument],
                    at("labels, metadata (size unbounded by the CRI)"),
                )
            } else if matches!(rpc, Rpc::ListImages | Rpc::StreamImages) {
                expected(
                    &[Ok, InvalidArgument],
                    at("filter (no image, or no valid reference)"),
                )
            } else {
                expected(&[Ok], at("filter (matches nothing)"))
            }
        }
        Mutation::BadValue(BadValue::FilterState) => expected(
            &[Ok, InvalidArgument],
            at("filter.state (a value the enum lacks)"),
        ),
        // crid drops a sysctl the kernel lacks unless configured to refuse it
        // (FailedPrecondition); a client's typo would be InvalidArgument. The CRI is silent.
        Mutation::BadValue(BadValue::MissingSysctl) => expected(
            &[Ok, InvalidArgument, FailedPrecondition],
            at("config.linux.sysctls (a sysctl this kernel lacks)"),
        ),
        Mutation::BadValue(b) => expected(
            &[InvalidArgument],
            at(&format!("{b:?} (a value out of its domain)")),
        ),
        Mutation::NotUtf8 { .. }
        | Mutation::Truncated
        | Mutation::VarintOverflow
        | Mutation::Oversize => unreachable!("judged before"),
    };
    e.creates = creates && e.codes.contains(&Ok);
    e
}

/// Whether a code is one a runtime may only give for its own failure, never for a bad
/// request.
pub fn is_runtime_failure(code: Code) -> bool {
    matches!(code, Code::Internal | Code::Unknown | Code::Unavailable)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::hostile::probe::PathField;

    fn probe(rpc: Rpc, target: Target, mutation: Mutation) -> Probe {
        Probe {
            rpc,
            target,
            mutation,
        }
    }

    #[test]
    fn lookups_of_missing_objects_are_not_found_and_removals_ok() {
        let missing = || Target::Missing("ab".repeat(32));
        let e = expect(&probe(Rpc::PodSandboxStatus, missing(), Mutation::None));
        assert_eq!(e.codes, [Code::NotFound]);
        assert_eq!(e.clause, "cri:RuntimeService.PodSandboxStatus#NotFound");
        for rpc in [Rpc::StopPodSandbox, Rpc::RemoveContainer, Rpc::RemoveImage] {
            assert_eq!(
                expect(&probe(rpc, missing(), Mutation::None)).codes,
                [Code::Ok]
            );
        }
        let other = expect(&probe(
            Rpc::ContainerStatus,
            Target::OtherKind,
            Mutation::None,
        ));
        assert_eq!(other.codes, [Code::NotFound]);
        let image = expect(&probe(Rpc::ImageStatus, missing(), Mutation::None));
        assert_eq!(image.codes, [Code::Ok]);
        let pull = expect(&probe(
            Rpc::PullImage,
            Target::Huge(1 << 20),
            Mutation::None,
        ));
        assert_eq!(pull.codes, [Code::InvalidArgument]);
    }

    #[test]
    fn empty_ids_and_escaping_paths_are_invalid_arguments() {
        for rpc in [Rpc::StopContainer, Rpc::ExecSync, Rpc::PullImage] {
            let e = expect(&probe(rpc, Target::Empty, Mutation::None));
            assert_eq!(e.codes, [Code::InvalidArgument], "{rpc}");
        }
        let e = expect(&probe(
            Rpc::CreateContainer,
            Target::Own,
            Mutation::PathTraversal(PathField::LogPath, "../x".into()),
        ));
        assert_eq!(e.codes, [Code::InvalidArgument]);
        assert!(!e.creates);
    }

    #[test]
    fn undecodable_requests_are_invalid_arguments_everywhere() {
        for rpc in Rpc::ALL {
            for m in [Mutation::Truncated, Mutation::NotUtf8 { deep: true }] {
                let e = expect(&probe(*rpc, Target::Own, m));
                assert_eq!(e.codes[0], Code::InvalidArgument, "{rpc}");
                assert!(!e.creates);
                assert!(!e.codes.iter().any(|c| is_runtime_failure(*c)));
            }
        }
        let unimpl = expect(&probe(
            Rpc::CheckpointContainer,
            Target::Own,
            Mutation::Truncated,
        ));
        assert_eq!(unimpl.codes, [Code::InvalidArgument, Code::Unimplemented]);
    }

    #[test]
    fn creates_are_tracked_only_when_ok_is_right() {
        let ok = expect(&probe(Rpc::RunPodSandbox, Target::Own, Mutation::None));
        assert!(ok.creates);
        let deep = expect(&probe(
            Rpc::CreateContainer,
            Target::Own,
            Mutation::DeepLabels {
                entries: 10_000,
                size: 8,
            },
        ));
        assert!(deep.creates);
        assert_eq!(deep.codes, [Code::Ok, Code::InvalidArgument]);
        let missing = expect(&probe(
            Rpc::RunPodSandbox,
            Target::Own,
            Mutation::MissingRequired,
        ));
        assert!(!missing.creates);
        let unknown = expect(&probe(Rpc::Version, Target::Own, Mutation::UnknownField));
        assert_eq!(unknown.codes, [Code::Ok]);
    }

    #[test]
    fn values_out_of_their_domain_are_invalid_arguments() {
        use crate::hostile::probe::BadValue;
        let bad = |rpc, b| expect(&probe(rpc, Target::Own, Mutation::BadValue(b)));
        let e = bad(Rpc::RunPodSandbox, BadValue::SysctlValue);
        assert_eq!(e.codes, [Code::InvalidArgument]);
        assert!(!e.creates);
        assert_eq!(
            bad(Rpc::PortForward, BadValue::Port(70000)).codes,
            [Code::InvalidArgument]
        );
        // Spec-silent: crid's configuration decides.
        let missing = bad(Rpc::RunPodSandbox, BadValue::MissingSysctl);
        assert!(missing.creates);
        assert!(missing.codes.contains(&Code::FailedPrecondition));
        let state = bad(Rpc::ListPodSandbox, BadValue::FilterState);
        assert_eq!(state.codes, [Code::Ok, Code::InvalidArgument]);
    }

    #[test]
    fn no_right_answer_is_a_runtime_failure() {
        let targets = [
            Target::Own,
            Target::Missing("0".repeat(64)),
            Target::OtherKind,
            Target::Empty,
            Target::Huge(300),
            Target::Traversal("..".into()),
        ];
        for rpc in Rpc::ALL {
            for t in &targets {
                let e = expect(&probe(*rpc, t.clone(), Mutation::None));
                assert!(
                    !e.codes.iter().any(|c| is_runtime_failure(*c)),
                    "{rpc} {t:?}"
                );
                assert!(!e.codes.is_empty());
            }
        }
        let over = expect(&probe(Rpc::Version, Target::Own, Mutation::Oversize));
        assert_eq!(over.codes, [Code::ResourceExhausted]);
    }
}
