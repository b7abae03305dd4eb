//! The model the endpoint is checked against: which pods and containers exist, in which
//! state, and what every operation may answer. Pure: the executor turns CRI replies into
//! [`Reply`] values and the model judges them, so all of the rules are unit-tested here.
//!
//! Where the CRI leaves a choice to the runtime (stopping a container that never started,
//! creating a container in a stopped pod, stopping something already removed), the model
//! accepts each allowed answer and follows the one the endpoint gave. A container state the
//! model cannot predict is kept as a set and narrowed by the next observation.

use std::collections::BTreeMap;
use std::fmt;

use tonic::Code;

use super::Op;

/// A pod sandbox's state in the model.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PodState {
    /// SANDBOX_READY.
    Ready,
    /// SANDBOX_NOTREADY.
    NotReady,
    /// Removed (or never existed): status is NotFound, lists leave it out.
    Removed,
    /// A value outside PodSandboxState, as the endpoint sent it: never accepted.
    Invalid(i32),
}

/// A container's state as the endpoint reports it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum CState {
    /// CONTAINER_CREATED.
    Created,
    /// CONTAINER_RUNNING.
    Running,
    /// CONTAINER_EXITED.
    Exited,
    /// CONTAINER_UNKNOWN: never allowed here; every container the model makes is known.
    Unknown,
}

/// A set of container states (the model's knowledge); `REMOVED` is the removed bit.
#[derive(Clone, Copy, PartialEq, Eq)]
pub struct States(u8);

impl States {
    const CREATED: States = States(1);
    const RUNNING: States = States(2);
    const EXITED: States = States(4);
    const REMOVED: States = States(8);

    fn of(s: CState) -> States {
        match s {
            CState::Created => States::CREATED,
            CState::Running => States::RUNNING,
            CState::Exited => States::EXITED,
            CState::Unknown => States(0),
        }
    }
    fn has(self, o: States) -> bool {
        self.0 & o.0 != 0
    }
    fn only(self, o: States) -> bool {
        self.0 == o.0
    }
    fn union(self, o: States) -> States {
        States(self.0 | o.0)
    }
    fn live(self) -> bool {
        !self.only(States::REMOVED)
    }
}

impl fmt::Debug for States {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let names: Vec<&str> = [
            (States::CREATED, "created"),
            (States::RUNNING, "running"),
            (States::EXITED, "exited"),
            (States::REMOVED, "removed"),
        ]
        .iter()
        .filter(|(s, _)| self.has(*s))
        .map(|(_, n)| *n)
        .collect();
        write!(f, "{}", names.join("|"))
    }
}

/// What the endpoint answered, reduced to what the model judges.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Reply {
    /// OK without a payload the model needs.
    Ok,
    /// OK with the id of the created object (RunPodSandbox, CreateContainer).
    Created(String),
    /// PodSandboxStatus: the state.
    PodStatus(PodState),
    /// ContainerStatus: the state.
    ContainerStatus(CState),
    /// PullImage: the image_ref.
    Pulled(String),
    /// ListImages: every id, tag and digest reference.
    Images(Vec<String>),
    /// ListPodSandbox / ListContainers answered; the observation is checked separately.
    Listed,
    /// An error status.
    Err(Code, String),
    /// No answer within the time limit: a hang, never a valid refusal.
    TimedOut(std::time::Duration),
}

/// Codes that refuse an op for the state of its object (starting a container that is not
/// created, stopping one that never started): FailedPrecondition, as the CRI's state rules
/// call for, or Unknown, which runtimes written in Go answer for errors that carry no
/// status (containerd). Not DeadlineExceeded, Unimplemented, Unavailable, Internal, or a
/// code about the request itself (InvalidArgument, NotFound of an object that exists).
fn state_refusal(code: Code) -> bool {
    matches!(code, Code::FailedPrecondition | Code::Unknown)
}

/// Codes that refuse an op in a stopped pod (a new container, a start): a state refusal,
/// or Internal when the runtime itself fails to join the stopped pod's namespaces.
fn stopped_pod_refusal(code: Code) -> bool {
    state_refusal(code) || code == Code::Internal
}

/// One pod of the model.
#[derive(Debug, Clone)]
struct Pod {
    id: String,
    state: PodState,
}

/// One container of the model.
#[derive(Debug, Clone)]
struct Ctr {
    id: String,
    pod: usize,
    states: States,
}

/// The model of one sequence.
#[derive(Debug, Clone, Default)]
pub struct Model {
    pods: Vec<Pod>,
    ctrs: Vec<Ctr>,
    /// The image_ref PullImage answered, once an image was pulled.
    image_ref: Option<String>,
    /// The reference that was pulled.
    pulled: Option<String>,
}

/// The id used for ops on objects when none was created yet: it never exists.
pub const UNKNOWN_ID: &str = "0000000000000000000000000000000000000000000000000000000000000000";

fn unexpected(op: &Op, want: &str, got: &Reply) -> String {
    format!("{op}: expected {want}, got {got:?}")
}

impl Model {
    /// The pod an op's index designates: `idx % created`, or `None` when none was created.
    pub fn pod_target(&self, idx: usize) -> Option<(usize, &str)> {
        if self.pods.is_empty() {
            None
        } else {
            let i = idx % self.pods.len();
            Some((i, self.pods[i].id.as_str()))
        }
    }

    /// The container an op's index designates, like [`Model::pod_target`].
    pub fn ctr_target(&self, idx: usize) -> Option<(usize, &str)> {
        if self.ctrs.is_empty() {
            None
        } else {
            let i = idx % self.ctrs.len();
            Some((i, self.ctrs[i].id.as_str()))
        }
    }

    /// The id an op on pod `idx` sends.
    pub fn pod_id(&self, idx: usize) -> String {
        self.pod_target(idx)
            .map_or(UNKNOWN_ID.to_owned(), |(_, id)| id.to_owned())
    }

    /// The id an op on container `idx` sends.
    pub fn ctr_id(&self, idx: usize) -> String {
        self.ctr_target(idx)
            .map_or(UNKNOWN_ID.to_owned(), |(_, id)| id.to_owned())
    }

    /// The state of the pod an op's index designates (`Removed` when there is none).
    fn pod_state(&self, idx: usize) -> (Option<usize>, PodState) {
        match self.pod_target(idx) {
            None => (None, PodState::Removed),
            Some((i, _)) => (Some(i), self.pods[i].state),
        }
    }

    fn ctr_states(&self, idx: usize) -> (Option<usize>, States) {
        match self.ctr_target(idx) {
            None => (None, States::REMOVED),
            Some((i, _)) => (Some(i), self.ctrs[i].states),
        }
    }

    /// Every id the model created: pods then containers (for cleanup).
    pub fn created_ids(&self) -> (Vec<String>, Vec<String>) {
        (
            self.pods.iter().map(|p| p.id.clone()).collect(),
            self.ctrs.iter().map(|c| c.id.clone()).collect(),
        )
    }

    /// The reference pulled so far, if any.
    pub fn pulled(&self) -> Option<&str> {
        self.pulled.as_deref()
    }

    /// Judges `reply` to `op` and moves the model on. `image` is the reference pulled and
    /// run. An error names the op, what was allowed and what came back.
    pub fn step(&mut self, op: &Op, image: &str, reply: Reply) -> Result<(), String> {
        use Reply as R;
        if let R::TimedOut(limit) = reply {
            return Err(format!(
                "{op}: no answer within {limit:?} (a hang is never a valid answer)"
            ));
        }
        match *op {
            Op::RunPod => match reply {
                R::Created(id) if !id.is_empty() => {
                    if self.pods.iter().any(|p| p.id == id) {
                        return Err(format!("{op}: returned the id of an existing pod {id}"));
                    }
                    self.pods.push(Pod {
                        id,
                        state: PodState::Ready,
                    });
                    Ok(())
                }
                other => Err(unexpected(op, "OK with a new pod id", &other)),
            },
            Op::StopPod(idx) => {
                let (i, state) = self.pod_state(idx);
                match (state, reply) {
                    (PodState::Ready | PodState::NotReady, R::Ok) => {
                        let i = i.unwrap_or_default();
                        self.pods[i].state = PodState::NotReady;
                        for c in self.ctrs.iter_mut().filter(|c| c.pod == i) {
                            // Stopping a pod stops its running containers; one that never
                            // started may stay created or be marked exited.
                            if c.states.has(States::RUNNING) {
                                c.states =
                                    States(c.states.0 & !States::RUNNING.0).union(States::EXITED);
                            }
                            if c.states.has(States::CREATED) {
                                c.states = c.states.union(States::EXITED);
                            }
                        }
                        Ok(())
                    }
                    // Idempotent: a pod already gone may be stopped again, or reported gone.
                    (PodState::Removed, R::Ok) => Ok(()),
                    (PodState::Removed, R::Err(Code::NotFound, _)) => Ok(()),
                    (PodState::Removed, other) => {
                        Err(unexpected(op, "OK or NotFound for a removed pod", &other))
                    }
                    (_, other) => Err(unexpected(op, "OK (stopping a pod is idempotent)", &other)),
                }
            }
            Op::RemovePod(idx) => {
                let (i, _) = self.pod_state(idx);
                match reply {
                    // Removing forcibly stops and removes the pod's containers; removing a
                    // removed pod is OK (idempotent).
                    R::Ok => {
                        if let Some(i) = i {
                            self.pods[i].state = PodState::Removed;
                            for c in self.ctrs.iter_mut().filter(|c| c.pod == i) {
                                c.states = States::REMOVED;
                            }
                        }
                        Ok(())
                    }
                    other => Err(unexpected(
                        op,
                        "OK (RemovePodSandbox removes containers and is idempotent)",
                        &other,
                    )),
                }
            }
            Op::PodStatus(idx) => {
                let (_, state) = self.pod_state(idx);
                match (state, reply) {
                    (PodState::Removed, R::Err(Code::NotFound, _)) => Ok(()),
                    (PodState::Removed, other) => {
                        Err(unexpected(op, "NotFound for a removed pod", &other))
                    }
                    (want, R::PodStatus(got)) if got == want => Ok(()),
                    (want, other) => Err(unexpected(op, &format!("state {want:?}"), &other)),
                }
            }
            Op::CreateContainer(idx) => {
                let (i, state) = self.pod_state(idx);
                match (state, reply) {
                    (PodState::Ready | PodState::NotReady, R::Created(id)) if !id.is_empty() => {
                        if self.ctrs.iter().any(|c| c.id == id) {
                            return Err(format!(
                                "{op}: returned the id of an existing container {id}"
                            ));
                        }
                        self.ctrs.push(Ctr {
                            id,
                            pod: i.unwrap_or_default(),
                            states: States::CREATED,
                        });
                        Ok(())
                    }
                    // The CRI does not say whether a stopped pod takes new containers.
                    (PodState::NotReady, R::Err(code, _)) if stopped_pod_refusal(code) => Ok(()),
                    (PodState::Removed, R::Err(Code::NotFound, _)) => Ok(()),
                    (PodState::Removed, other) => {
                        Err(unexpected(op, "NotFound for a removed pod", &other))
                    }
                    (_, other) => Err(unexpected(op, "OK with a new container id", &other)),
                }
            }
            Op::StartContainer(idx) => {
                let (i, states) = self.ctr_states(idx);
                if states.only(States::REMOVED) {
                    return match reply {
                        R::Err(Code::NotFound, _) => Ok(()),
                        other => Err(unexpected(op, "NotFound for a removed container", &other)),
                    };
                }
                let i = i.unwrap_or_default();
                let pod_ready = self.pods[self.ctrs[i].pod].state == PodState::Ready;
                match reply {
                    R::Ok if states.has(States::CREATED) => {
                        self.ctrs[i].states = States::RUNNING;
                        Ok(())
                    }
                    // In a stopped pod even a created container may fail to start (and the
                    // runtime may then mark it exited).
                    R::Err(code, _) if !pod_ready && stopped_pod_refusal(code) => {
                        self.ctrs[i].states = states.union(States::EXITED);
                        Ok(())
                    }
                    // Only a created container starts: refusing one that may be running or
                    // exited is right, and tells the model it was not created.
                    R::Err(code, _) if !states.only(States::CREATED) && state_refusal(code) => {
                        self.ctrs[i].states = States(states.0 & !States::CREATED.0);
                        Ok(())
                    }
                    other => Err(unexpected(
                        op,
                        &format!(
                            "{} for a {states:?} container",
                            if states.only(States::CREATED) {
                                "OK"
                            } else {
                                "an error"
                            }
                        ),
                        &other,
                    )),
                }
            }
            Op::StopContainer(idx) => {
                let (i, states) = self.ctr_states(idx);
                if states.only(States::REMOVED) {
                    return match reply {
                        R::Ok => Ok(()),
                        R::Err(Code::NotFound, _) => Ok(()),
                        other => Err(unexpected(
                            op,
                            "OK or NotFound for a removed container",
                            &other,
                        )),
                    };
                }
                let i = i.unwrap_or_default();
                match reply {
                    R::Ok => {
                        let mut next = States(0);
                        if states.has(States::RUNNING) || states.has(States::EXITED) {
                            next = next.union(States::EXITED);
                        }
                        if states.has(States::CREATED) {
                            // Stopping a container that never started: left created or
                            // marked exited, both seen in practice.
                            next = next.union(States::CREATED).union(States::EXITED);
                        }
                        self.ctrs[i].states = next;
                        Ok(())
                    }
                    // Stopping a stopped container must succeed (idempotent); only a
                    // never-started one may be refused.
                    R::Err(code, _) if states.has(States::CREATED) && state_refusal(code) => {
                        self.ctrs[i].states = States::CREATED;
                        Ok(())
                    }
                    other => Err(unexpected(op, "OK (StopContainer is idempotent)", &other)),
                }
            }
            Op::RemoveContainer(idx) => {
                let (i, _) = self.ctr_states(idx);
                match reply {
                    R::Ok => {
                        if let Some(i) = i {
                            self.ctrs[i].states = States::REMOVED;
                        }
                        Ok(())
                    }
                    other => Err(unexpected(
                        op,
                        "OK (RemoveContainer removes running containers and is idempotent)",
                        &other,
                    )),
                }
            }
            Op::ContainerStatus(idx) => {
                let (i, states) = self.ctr_states(idx);
                match reply {
                    R::Err(c, _) if c == Code::NotFound && states.only(States::REMOVED) => Ok(()),
                    R::ContainerStatus(got) if states.live() && states.has(States::of(got)) => {
                        if let Some(i) = i {
                            self.ctrs[i].states = States::of(got);
                        }
                        Ok(())
                    }
                    other => Err(unexpected(
                        op,
                        &if states.only(States::REMOVED) {
                            "NotFound for a removed container".to_owned()
                        } else {
                            format!("a state in {states:?}")
                        },
                        &other,
                    )),
                }
            }
            Op::PullImage => match reply {
                R::Pulled(image_ref) if !image_ref.is_empty() => {
                    if let Some(prev) = &self.image_ref
                        && *prev != image_ref
                    {
                        return Err(format!(
                            "{op}: image_ref changed between pulls of {image}: {prev} then {image_ref}"
                        ));
                    }
                    self.image_ref = Some(image_ref);
                    self.pulled = Some(image.to_owned());
                    Ok(())
                }
                other => Err(unexpected(op, "OK with an image_ref", &other)),
            },
            Op::ListImages => match reply {
                R::Images(refs) => match &self.image_ref {
                    Some(image_ref) if !refs.iter().any(|r| r == image_ref || r == image) => Err(
                        format!("{op}: the pulled image {image} ({image_ref}) is not listed"),
                    ),
                    _ => Ok(()),
                },
                other => Err(unexpected(op, "OK with the image list", &other)),
            },
            Op::ListPods | Op::ListContainers => match reply {
                R::Listed => Ok(()),
                other => Err(unexpected(op, "OK", &other)),
            },
        }
    }

    /// Checks what the endpoint lists (only this sequence's objects, by label) against the
    /// model, and narrows container states to what was seen.
    pub fn observe(
        &mut self,
        pods: &BTreeMap<String, PodState>,
        ctrs: &BTreeMap<String, CState>,
    ) -> Result<(), String> {
        let want_pods: BTreeMap<&str, PodState> = self
            .pods
            .iter()
            .filter(|p| p.state != PodState::Removed)
            .map(|p| (p.id.as_str(), p.state))
            .collect();
        let got_pods: BTreeMap<&str, PodState> =
            pods.iter().map(|(k, v)| (k.as_str(), *v)).collect();
        if want_pods != got_pods {
            return Err(format!(
                "ListPodSandbox: expected {want_pods:?}, got {got_pods:?}"
            ));
        }
        let live: Vec<&Ctr> = self.ctrs.iter().filter(|c| c.states.live()).collect();
        let mut errors = Vec::new();
        for c in &live {
            match ctrs.get(&c.id) {
                None => errors.push(format!("{} ({:?}) missing", c.id, c.states)),
                Some(got) if !c.states.has(States::of(*got)) => {
                    errors.push(format!("{} is {got:?}, expected {:?}", c.id, c.states))
                }
                Some(_) => {}
            }
        }
        for id in ctrs.keys() {
            if !live.iter().any(|c| &c.id == id) {
                errors.push(format!("{id} listed but removed or never created"));
            }
        }
        if !errors.is_empty() {
            return Err(format!("ListContainers: {}", errors.join("; ")));
        }
        for c in self.ctrs.iter_mut().filter(|c| c.states.live()) {
            if let Some(got) = ctrs.get(&c.id) {
                c.states = States::of(*got);
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const IMG: &str = "127.0.0.1:5000/busybox:latest";

    fn ok(m: &mut Model, op: Op, reply: Reply) {
        m.step(&op, IMG, reply).unwrap_or_else(|e| panic!("{e}"));
    }

    fn bad(m: &mut Model, op: Op, reply: Reply) -> String {
        m.step(&op, IMG, reply).expect_err("must be refused")
    }

    fn not_found() -> Reply {
        Reply::Err(Code::NotFound, "not found".into())
    }

    fn pods(v: &[(&str, PodState)]) -> BTreeMap<String, PodState> {
        v.iter().map(|(k, s)| (k.to_string(), *s)).collect()
    }

    fn ctrs(v: &[(&str, CState)]) -> BTreeMap<String, CState> {
        v.iter().map(|(k, s)| (k.to_string(), *s)).collect()
    }

    #[test]
    fn ops_before_anything_exists_target_an_unknown_id() {
        let mut m = Model::default();
        assert_eq!(m.pod_id(3), UNKNOWN_ID);
        ok(&mut m, Op::PodStatus(0), not_found());
        ok(&mut m, Op::RemovePod(0), Reply::Ok);
        ok(&mut m, Op::StopPod(0), not_found());
        ok(&mut m, Op::RemoveContainer(0), Reply::Ok);
        ok(&mut m, Op::CreateContainer(0), not_found());
        assert!(
            bad(&mut m, Op::PodStatus(0), Reply::PodStatus(PodState::Ready)).contains("NotFound")
        );
        assert!(bad(&mut m, Op::RemovePod(0), not_found()).contains("idempotent"));
        assert!(
            bad(&mut m, Op::CreateContainer(0), Reply::Created("x".into())).contains("NotFound")
        );
    }

    #[test]
    fn pod_lifecycle_and_idempotence() {
        let mut m = Model::default();
        ok(&mut m, Op::RunPod, Reply::Created("p1".into()));
        ok(&mut m, Op::PodStatus(0), Reply::PodStatus(PodState::Ready));
        ok(&mut m, Op::StopPod(5), Reply::Ok);
        ok(&mut m, Op::StopPod(0), Reply::Ok);
        assert!(bad(&mut m, Op::StopPod(0), not_found()).contains("idempotent"));
        ok(
            &mut m,
            Op::PodStatus(0),
            Reply::PodStatus(PodState::NotReady),
        );
        m.observe(&pods(&[("p1", PodState::NotReady)]), &ctrs(&[]))
            .unwrap();
        ok(&mut m, Op::RemovePod(0), Reply::Ok);
        ok(&mut m, Op::RemovePod(0), Reply::Ok);
        ok(&mut m, Op::PodStatus(0), not_found());
        m.observe(&pods(&[]), &ctrs(&[])).unwrap();
        assert!(
            m.observe(&pods(&[("p1", PodState::NotReady)]), &ctrs(&[]))
                .unwrap_err()
                .contains("ListPodSandbox")
        );
        assert!(bad(&mut m, Op::RunPod, Reply::Created("p1".into())).contains("existing pod"));
    }

    #[test]
    fn container_lifecycle() {
        let mut m = Model::default();
        ok(&mut m, Op::RunPod, Reply::Created("p1".into()));
        ok(&mut m, Op::CreateContainer(0), Reply::Created("c1".into()));
        ok(
            &mut m,
            Op::ContainerStatus(0),
            Reply::ContainerStatus(CState::Created),
        );
        ok(&mut m, Op::StartContainer(0), Reply::Ok);
        assert!(
            bad(
                &mut m,
                Op::ContainerStatus(0),
                Reply::ContainerStatus(CState::Exited)
            )
            .contains("running")
        );
        // Starting a running container is refused, as a state refusal.
        ok(
            &mut m,
            Op::StartContainer(0),
            Reply::Err(Code::FailedPrecondition, "running".into()),
        );
        ok(
            &mut m,
            Op::StartContainer(0),
            Reply::Err(Code::Unknown, "running".into()),
        );
        assert!(bad(&mut m, Op::StartContainer(0), Reply::Ok).contains("an error"));
        ok(&mut m, Op::StopContainer(0), Reply::Ok);
        ok(&mut m, Op::StopContainer(0), Reply::Ok);
        assert!(bad(&mut m, Op::StopContainer(0), not_found()).contains("idempotent"));
        m.observe(
            &pods(&[("p1", PodState::Ready)]),
            &ctrs(&[("c1", CState::Exited)]),
        )
        .unwrap();
        ok(&mut m, Op::RemoveContainer(0), Reply::Ok);
        ok(&mut m, Op::RemoveContainer(0), Reply::Ok);
        ok(&mut m, Op::ContainerStatus(0), not_found());
        ok(&mut m, Op::StartContainer(0), not_found());
        ok(&mut m, Op::StopContainer(0), Reply::Ok);
        assert!(
            m.observe(
                &pods(&[("p1", PodState::Ready)]),
                &ctrs(&[("c1", CState::Exited)])
            )
            .unwrap_err()
            .contains("removed or never created")
        );
    }

    #[test]
    fn stopping_a_pod_stops_its_containers_and_created_ones_may_go_either_way() {
        let mut m = Model::default();
        ok(&mut m, Op::RunPod, Reply::Created("p1".into()));
        ok(&mut m, Op::CreateContainer(0), Reply::Created("c1".into()));
        ok(&mut m, Op::CreateContainer(0), Reply::Created("c2".into()));
        ok(&mut m, Op::StartContainer(0), Reply::Ok);
        ok(&mut m, Op::StopPod(0), Reply::Ok);
        // c1 was running: now exited only. c2 never started: created or exited.
        assert!(
            m.clone()
                .observe(
                    &pods(&[("p1", PodState::NotReady)]),
                    &ctrs(&[("c1", CState::Running), ("c2", CState::Created)])
                )
                .unwrap_err()
                .contains("c1 is Running")
        );
        m.observe(
            &pods(&[("p1", PodState::NotReady)]),
            &ctrs(&[("c1", CState::Exited), ("c2", CState::Created)]),
        )
        .unwrap();
        // Observation narrowed c2 to created; a later status must agree.
        assert!(
            bad(
                &mut m,
                Op::ContainerStatus(1),
                Reply::ContainerStatus(CState::Exited)
            )
            .contains("created")
        );
        // A stopped pod may or may not take a new container.
        ok(
            &mut m,
            Op::CreateContainer(0),
            Reply::Err(Code::Unknown, "not ready".into()),
        );
        // Removing the pod removes its containers.
        ok(&mut m, Op::RemovePod(0), Reply::Ok);
        m.observe(&pods(&[]), &ctrs(&[])).unwrap();
        ok(&mut m, Op::ContainerStatus(0), not_found());
    }

    #[test]
    fn images_pulled_are_listed_with_a_stable_ref() {
        let mut m = Model::default();
        ok(&mut m, Op::ListImages, Reply::Images(vec![]));
        ok(&mut m, Op::PullImage, Reply::Pulled("sha256:aa".into()));
        ok(
            &mut m,
            Op::ListImages,
            Reply::Images(vec!["sha256:aa".into()]),
        );
        ok(&mut m, Op::ListImages, Reply::Images(vec![IMG.into()]));
        assert!(
            bad(&mut m, Op::ListImages, Reply::Images(vec!["other".into()])).contains("not listed")
        );
        assert!(bad(&mut m, Op::PullImage, Reply::Pulled("sha256:bb".into())).contains("changed"));
        assert_eq!(m.pulled(), Some(IMG));
    }

    /// The four places where a refusal is allowed take only refusal codes: a hang, a
    /// server that does not serve the RPC, or an internal failure is not a refusal.
    #[test]
    fn refusals_need_a_refusal_code_and_a_timeout_is_never_one() {
        let not_refusals = [
            Code::DeadlineExceeded,
            Code::Unimplemented,
            Code::Unavailable,
            Code::Cancelled,
            Code::InvalidArgument,
        ];
        let mut m = Model::default();
        ok(&mut m, Op::RunPod, Reply::Created("p1".into()));
        ok(&mut m, Op::CreateContainer(0), Reply::Created("c1".into()));
        ok(&mut m, Op::CreateContainer(0), Reply::Created("c2".into()));
        ok(&mut m, Op::StartContainer(0), Reply::Ok);
        for code in not_refusals.into_iter().chain([Code::Internal]) {
            // Starting a running container.
            bad(&mut m, Op::StartContainer(0), Reply::Err(code, "x".into()));
            // Stopping a created container.
            bad(&mut m, Op::StopContainer(1), Reply::Err(code, "x".into()));
        }
        let timed_out = Reply::TimedOut(std::time::Duration::from_secs(30));
        for op in [Op::StartContainer(0), Op::StopContainer(1), Op::ListPods] {
            assert!(bad(&mut m, op, timed_out.clone()).contains("no answer within 30s"));
        }
        ok(&mut m, Op::StopPod(0), Reply::Ok);
        m.observe(
            &pods(&[("p1", PodState::NotReady)]),
            &ctrs(&[("c1", CState::Exited), ("c2", CState::Created)]),
        )
        .unwrap();
        for code in not_refusals {
            // A new container, or a start, in a stopped pod.
            bad(&mut m, Op::CreateContainer(0), Reply::Err(code, "x".into()));
            bad(&mut m, Op::StartContainer(1), Reply::Err(code, "x".into()));
        }
        bad(&mut m, Op::CreateContainer(0), timed_out.clone());
        bad(&mut m, Op::StartContainer(1), timed_out);
        // The runtime failing to join a stopped pod is a refusal there.
        ok(
            &mut m,
            Op::StartContainer(1),
            Reply::Err(Code::Internal, "runtime: netns gone".into()),
        );
        ok(
            &mut m,
            Op::CreateContainer(0),
            Reply::Err(Code::FailedPrecondition, "pod not ready".into()),
        );
    }

    #[test]
    fn pod_states_outside_the_enum_are_refused() {
        let mut m = Model::default();
        ok(&mut m, Op::RunPod, Reply::Created("p1".into()));
        assert!(
            bad(
                &mut m,
                Op::PodStatus(0),
                Reply::PodStatus(PodState::Invalid(7))
            )
            .contains("Invalid(7)")
        );
        assert!(
            m.observe(&pods(&[("p1", PodState::Invalid(7))]), &ctrs(&[]))
                .is_err()
        );
    }

    #[test]
    fn unknown_container_state_is_never_accepted() {
        let mut m = Model::default();
        ok(&mut m, Op::RunPod, Reply::Created("p1".into()));
        ok(&mut m, Op::CreateContainer(0), Reply::Created("c1".into()));
        assert!(
            m.observe(
                &pods(&[("p1", PodState::Ready)]),
                &ctrs(&[("c1", CState::Unknown)])
            )
            .is_err()
        );
    }
}
