//! Runs op sequences against a real endpoint over CRI: each op becomes one RPC (with a time
//! limit), its reply is judged by the model, then the sequence's pods and containers are
//! listed (by label) and compared with the model. Everything a sequence created is removed
//! when it ends, pass or fail, and whatever the run labelled is swept at the end.

use std::collections::{BTreeMap, HashMap};
use std::time::Duration;

use crid_api::{ImageServiceClient, RuntimeServiceClient, cri};
use tonic::transport::Channel;
use tonic::{Code, Status};

use super::model::{CState, Model, PodState, Reply};
use super::{Budget, Op, PropsReport, check_sequences};

/// Label naming the run that created an object.
pub const RUN_LABEL: &str = "crid-conformance.run";
/// Label naming the sequence that created an object.
pub const SEQ_LABEL: &str = "crid-conformance.sequence";

/// Where and how to run sequences.
#[derive(Debug, Clone)]
pub struct PropsOptions {
    /// A channel to the endpoint.
    pub channel: Channel,
    /// Unique per run: a label and a name prefix.
    pub run_id: String,
    /// Runtime handler for pods.
    pub runtime_handler: String,
    /// The image containers run and PullImage pulls (the fixture busybox).
    pub image: String,
    /// Basic-auth credentials for the image's registry.
    pub credentials: Option<(String, String)>,
    /// Time limit of one RPC (pulls get four times as long).
    pub op_timeout: Duration,
}

/// Talks CRI for the sequences of one run.
#[derive(Clone)]
pub struct Executor {
    opts: PropsOptions,
    rs: RuntimeServiceClient<Channel>,
    is: ImageServiceClient<Channel>,
}

/// What one sequence did, step by step, for failure messages and `--replay`.
#[derive(Debug, Default)]
pub struct Trace {
    /// One line per step: the op, the id it targeted, the reply.
    pub lines: Vec<String>,
}

/// Why an RPC gave no reply: the endpoint's error status, or no answer in time. A timeout
/// is never turned into a status: DeadlineExceeded from the endpoint may be a refusal, a
/// hang never is.
#[derive(Debug)]
pub enum CallError {
    /// The endpoint answered with an error status.
    Status(Status),
    /// No answer within the limit.
    TimedOut(Duration),
}

impl std::fmt::Display for CallError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            CallError::Status(s) => write!(f, "{:?}: {}", s.code(), s.message()),
            CallError::TimedOut(d) => write!(f, "no answer within {d:?}"),
        }
    }
}

fn reply_of<T>(r: Result<T, CallError>, ok: impl FnOnce(T) -> Reply) -> Reply {
    match r {
        Ok(v) => ok(v),
        Err(CallError::Status(s)) => Reply::Err(s.code(), s.message().to_owned()),
        Err(CallError::TimedOut(d)) => Reply::TimedOut(d),
    }
}

/// A PodSandboxState value; one outside the enum is kept as such (and never accepted).
fn pod_state(v: i32) -> PodState {
    match cri::PodSandboxState::try_from(v) {
        Ok(cri::PodSandboxState::SandboxReady) => PodState::Ready,
        Ok(cri::PodSandboxState::SandboxNotready) => PodState::NotReady,
        Err(_) => PodState::Invalid(v),
    }
}

fn ctr_state(v: i32) -> CState {
    match cri::ContainerState::try_from(v) {
        Ok(cri::ContainerState::ContainerCreated) => CState::Created,
        Ok(cri::ContainerState::ContainerRunning) => CState::Running,
        Ok(cri::ContainerState::ContainerExited) => CState::Exited,
        _ => CState::Unknown,
    }
}

impl Executor {
    /// An executor for `opts`.
    pub fn new(opts: PropsOptions) -> Executor {
        Executor {
            rs: RuntimeServiceClient::new(opts.channel.clone()),
            is: ImageServiceClient::new(opts.channel.clone()),
            opts,
        }
    }

    /// Runs `fut` with the op time limit (`factor` times it).
    async fn limited<T>(
        &self,
        factor: u32,
        fut: impl Future<Output = Result<tonic::Response<T>, Status>>,
    ) -> Result<T, CallError> {
        let limit = self.opts.op_timeout * factor;
        match tokio::time::timeout(limit, fut).await {
            Ok(r) => r
                .map(tonic::Response::into_inner)
                .map_err(CallError::Status),
            Err(_) => Err(CallError::TimedOut(limit)),
        }
    }

    fn labels(&self, seq: &str) -> HashMap<String, String> {
        HashMap::from([
            (RUN_LABEL.to_owned(), self.opts.run_id.clone()),
            (SEQ_LABEL.to_owned(), seq.to_owned()),
        ])
    }

    fn pod_config(&self, seq: &str, n: usize) -> cri::PodSandboxConfig {
        let name = format!("{}-{seq}-p{n}", self.opts.run_id);
        cri::PodSandboxConfig {
            metadata: Some(cri::PodSandboxMetadata {
                uid: format!("{name}-uid"),
                name,
                namespace: "crid-conformance-props".into(),
                attempt: 0,
            }),
            hostname: format!("p{n}"),
            labels: self.labels(seq),
            ..Default::default()
        }
    }

    /// Pulls the image once before sequences start, so containers can be created from the
    /// first step; the PullImage op pulls it again.
    pub async fn prepare(&mut self) -> Result<String, String> {
        let mut is = self.is.clone();
        let req = self.pull_request();
        self.limited(4, is.pull_image(req))
            .await
            .map(|r| r.image_ref)
            .map_err(|e| format!("cannot pull {}: {e}", self.opts.image))
    }

    fn pull_request(&self) -> cri::PullImageRequest {
        cri::PullImageRequest {
            image: Some(cri::ImageSpec {
                image: self.opts.image.clone(),
                ..Default::default()
            }),
            auth: self
                .opts
                .credentials
                .as_ref()
                .map(|(u, p)| cri::AuthConfig {
                    username: u.clone(),
                    password: p.clone(),
                    ..Default::default()
                }),
            sandbox_config: None,
        }
    }

    /// Executes `ops` as sequence `seq`, checking every reply and, after every step, the
    /// listed state; removes what it created whatever happens. Returns the ops executed.
    pub async fn run_sequence(&mut self, seq: &str, ops: &[Op]) -> (Result<usize, String>, Trace) {
        let mut model = Model::default();
        let mut trace = Trace::default();
        let mut configs: HashMap<String, cri::PodSandboxConfig> = HashMap::new();
        let mut result = Ok(ops.len());
        for (step, op) in ops.iter().enumerate() {
            let reply = self.call(&model, &mut configs, seq, op).await;
            trace.lines.push(format!("{}. {op} -> {reply:?}", step + 1));
            let judged = match model.step(op, &self.opts.image, reply) {
                Ok(()) => self
                    .observe(seq)
                    .await
                    .and_then(|(p, c)| model.observe(&p, &c)),
                Err(e) => Err(e),
            };
            if let Err(e) = judged {
                result = Err(format!(
                    "step {} ({op}) failed: {e}\ntrace:\n  {}",
                    step + 1,
                    trace.lines.join("\n  ")
                ));
                break;
            }
        }
        let leftovers = self.cleanup(seq, &model).await;
        if let (Ok(_), Err(e)) = (&result, leftovers) {
            result = Err(format!(
                "cleanup after a passing sequence failed: {e}\ntrace:\n  {}",
                trace.lines.join("\n  ")
            ));
        }
        (result, trace)
    }

    async fn call(
        &mut self,
        model: &Model,
        configs: &mut HashMap<String, cri::PodSandboxConfig>,
        seq: &str,
        op: &Op,
    ) -> Reply {
        let mut rs = self.rs.clone();
        let mut is = self.is.clone();
        match *op {
            Op::RunPod => {
                let n = model.created_ids().0.len();
                let config = self.pod_config(seq, n);
                let r = self
                    .limited(
                        1,
                        rs.run_pod_sandbox(cri::RunPodSandboxRequest {
                            config: Some(config.clone()),
                            runtime_handler: self.opts.runtime_handler.clone(),
                        }),
                    )
                    .await;
                reply_of(r, |v| {
                    configs.insert(v.pod_sandbox_id.clone(), config);
                    Reply::Created(v.pod_sandbox_id)
                })
            }
            Op::StopPod(i) => {
                let r = self
                    .limited(
                        1,
                        rs.stop_pod_sandbox(cri::StopPodSandboxRequest {
                            pod_sandbox_id: model.pod_id(i),
                        }),
                    )
                    .await;
                reply_of(r, |_| Reply::Ok)
            }
            Op::RemovePod(i) => {
                let r = self
                    .limited(
                        1,
                        rs.remove_pod_sandbox(cri::RemovePodSandboxRequest {
                            pod_sandbox_id: model.pod_id(i),
                        }),
                    )
                    .await;
                reply_of(r, |_| Reply::Ok)
            }
            Op::PodStatus(i) => {
                let r = self
                    .limited(
                        1,
                        rs.pod_sandbox_status(cri::PodSandboxStatusRequest {
                            pod_sandbox_id: model.pod_id(i),
                            verbose: false,
                        }),
                    )
                    .await;
                reply_of(r, |v| match v.status {
                    Some(s) => Reply::PodStatus(pod_state(s.state)),
                    None => Reply::Err(Code::Internal, "OK without a status".into()),
                })
            }
            Op::CreateContainer(i) => {
                let pod = model.pod_id(i);
                let n = model.created_ids().1.len();
                let config = cri::ContainerConfig {
                    metadata: Some(cri::ContainerMetadata {
                        name: format!("c{n}"),
                        attempt: 0,
                    }),
                    image: Some(cri::ImageSpec {
                        image: self.opts.image.clone(),
                        ..Default::default()
                    }),
                    // PID 1 ignores SIGTERM: stops go straight to SIGKILL (timeout 0).
                    command: vec!["sleep".into(), "3600".into()],
                    labels: self.labels(seq),
                    ..Default::default()
                };
                let r = self
                    .limited(
                        1,
                        rs.create_container(cri::CreateContainerRequest {
                            sandbox_config: configs.get(&pod).cloned(),
                            pod_sandbox_id: pod,
                            config: Some(config),
                        }),
                    )
                    .await;
                reply_of(r, |v| Reply::Created(v.container_id))
            }
            Op::StartContainer(i) => {
                let r = self
                    .limited(
                        1,
                        rs.start_container(cri::StartContainerRequest {
                            container_id: model.ctr_id(i),
                        }),
                    )
                    .await;
                reply_of(r, |_| Reply::Ok)
            }
            Op::StopContainer(i) => {
                let r = self
                    .limited(
                        1,
                        rs.stop_container(cri::StopContainerRequest {
                            container_id: model.ctr_id(i),
                            timeout: 0,
                        }),
                    )
                    .await;
                reply_of(r, |_| Reply::Ok)
            }
            Op::RemoveContainer(i) => {
                let r = self
                    .limited(
                        1,
                        rs.remove_container(cri::RemoveContainerRequest {
                            container_id: model.ctr_id(i),
                        }),
                    )
                    .await;
                reply_of(r, |_| Reply::Ok)
            }
            Op::ContainerStatus(i) => {
                let r = self
                    .limited(
                        1,
                        rs.container_status(cri::ContainerStatusRequest {
                            container_id: model.ctr_id(i),
                            verbose: false,
                        }),
                    )
                    .await;
                reply_of(r, |v| match v.status {
                    Some(s) => Reply::ContainerStatus(ctr_state(s.state)),
                    None => Reply::Err(Code::Internal, "OK without a status".into()),
                })
            }
            Op::ListPods | Op::ListContainers => {
                // The observation after every step lists both; the op itself only has to
                // answer an unfiltered list.
                let r = if *op == Op::ListPods {
                    self.limited(
                        1,
                        rs.list_pod_sandbox(cri::ListPodSandboxRequest::default()),
                    )
                    .await
                    .map(|_| ())
                } else {
                    self.limited(1, rs.list_containers(cri::ListContainersRequest::default()))
                        .await
                        .map(|_| ())
                };
                reply_of(r, |_| Reply::Listed)
            }
            Op::PullImage => {
                let req = self.pull_request();
                let r = self.limited(4, is.pull_image(req)).await;
                reply_of(r, |v| Reply::Pulled(v.image_ref))
            }
            Op::ListImages => {
                let r = self
                    .limited(1, is.list_images(cri::ListImagesRequest::default()))
                    .await;
                reply_of(r, |v| {
                    Reply::Images(
                        v.images
                            .into_iter()
                            .flat_map(|i| {
                                std::iter::once(i.id)
                                    .chain(i.repo_tags)
                                    .chain(i.repo_digests)
                            })
                            .collect(),
                    )
                })
            }
        }
    }

    /// The sequence's pods and containers, as the endpoint lists them by label.
    async fn observe(
        &self,
        seq: &str,
    ) -> Result<(BTreeMap<String, PodState>, BTreeMap<String, CState>), String> {
        let mut rs = self.rs.clone();
        let pods = self
            .limited(
                1,
                rs.list_pod_sandbox(cri::ListPodSandboxRequest {
                    filter: Some(cri::PodSandboxFilter {
                        label_selector: self.labels(seq),
                        ..Default::default()
                    }),
                }),
            )
            .await
            .map_err(|e| format!("ListPodSandbox: {e}"))?;
        let ctrs = self
            .limited(
                1,
                rs.list_containers(cri::ListContainersRequest {
                    filter: Some(cri::ContainerFilter {
                        label_selector: self.labels(seq),
                        ..Default::default()
                    }),
                }),
            )
            .await
            .map_err(|e| format!("ListContainers: {e}"))?;
        Ok((
            pods.items
                .into_iter()
                .map(|p| (p.id, pod_state(p.state)))
                .collect(),
            ctrs.containers
                .into_iter()
                .map(|c| (c.id, ctr_state(c.state)))
                .collect(),
        ))
    }

    /// Removes every container and pod the sequence created, then checks that nothing of
    /// it is listed any more.
    async fn cleanup(&self, seq: &str, model: &Model) -> Result<(), String> {
        let mut rs = self.rs.clone();
        let (pods, ctrs) = model.created_ids();
        for id in ctrs {
            let _ = self
                .limited(
                    1,
                    rs.remove_container(cri::RemoveContainerRequest { container_id: id }),
                )
                .await;
        }
        for id in pods {
            let _ = self
                .limited(
                    1,
                    rs.stop_pod_sandbox(cri::StopPodSandboxRequest {
                        pod_sandbox_id: id.clone(),
                    }),
                )
                .await;
            let _ = self
                .limited(
                    1,
                    rs.remove_pod_sandbox(cri::RemovePodSandboxRequest { pod_sandbox_id: id }),
                )
                .await;
        }
        let (p, c) = self.observe(seq).await?;
        if p.is_empty() && c.is_empty() {
            Ok(())
        } else {
            Err(format!("still listed: pods {p:?}, containers {c:?}"))
        }
    }

    /// Removes every pod (with its containers) labelled with this run: the last line of
    /// defence when a sequence was interrupted.
    pub async fn sweep(&self) -> Result<usize, String> {
        let mut rs = self.rs.clone();
        let pods = self
            .limited(
                1,
                rs.list_pod_sandbox(cri::ListPodSandboxRequest {
                    filter: Some(cri::PodSandboxFilter {
                        label_selector: HashMap::from([(
                            RUN_LABEL.to_owned(),
                            self.opts.run_id.clone(),
                        )]),
                        ..Default::default()
                    }),
                }),
            )
            .await
            .map_err(|e| format!("ListPodSandbox: {e}"))?;
        let n = pods.items.len();
        for p in pods.items {
            let _ = self
                .limited(
                    1,
                    rs.stop_pod_sandbox(cri::StopPodSandboxRequest {
                        pod_sandbox_id: p.id.clone(),
                    }),
                )
                .await;
            self.limited(
                1,
                rs.remove_pod_sandbox(cri::RemovePodSandboxRequest {
                    pod_sandbox_id: p.id.clone(),
                }),
            )
            .await
            .map_err(|e| format!("RemovePodSandbox {}: {e}", p.id))?;
        }
        Ok(n)
    }
}

/// Generates and checks sequences against the endpoint within `budget`; sweeps everything
/// the run labelled before returning, even when a sequence failed or panicked.
pub async fn run_props(opts: PropsOptions, budget: Budget) -> Result<PropsReport, String> {
    let mut exec = Executor::new(opts);
    exec.prepare().await?;
    let handle = tokio::runtime::Handle::current();
    let worker = exec.clone();
    let counter = std::sync::atomic::AtomicUsize::new(0);
    // proptest's runner is synchronous: it runs on a blocking thread and blocks on each
    // sequence's async execution.
    let joined = tokio::task::spawn_blocking(move || {
        check_sequences(budget, |ops| {
            let n = counter.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            let mut w = worker.clone();
            handle.block_on(async move { w.run_sequence(&format!("s{n}"), ops).await.0 })
        })
    })
    .await;
    let swept = exec.sweep().await;
    let report = joined.map_err(|e| format!("the property runner failed: {e}"))?;
    match swept {
        Ok(0) => Ok(report),
        Ok(n) => Err(format!(
            "{n} pod(s) of this run were still there after every sequence's cleanup (now removed)"
        )),
        Err(e) => Err(format!("sweeping the run's pods: {e}")),
    }
}

/// Runs one given sequence (no generation, no shrinking) and returns its trace.
pub async fn replay(opts: PropsOptions, ops: &[Op]) -> Result<Vec<String>, String> {
    let mut exec = Executor::new(opts);
    exec.prepare().await?;
    let (result, trace) = exec.run_sequence("replay", ops).await;
    let swept = exec.sweep().await;
    result?;
    swept?;
    Ok(trace.lines)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A timed-out RPC reaches the model as a timeout, never as DeadlineExceeded (which the
    /// model may take as a refusal), and enum values outside the CRI's are kept as such.
    #[test]
    fn timeouts_and_unknown_enum_values_are_not_disguised() {
        let limit = Duration::from_secs(3);
        let r: Result<(), CallError> = Err(CallError::TimedOut(limit));
        assert_eq!(reply_of(r, |_| Reply::Ok), Reply::TimedOut(limit));
        let r: Result<(), CallError> = Err(CallError::Status(Status::deadline_exceeded("slow")));
        assert_eq!(
            reply_of(r, |_| Reply::Ok),
            Reply::Err(Code::DeadlineExceeded, "slow".into())
        );
        assert_eq!(pod_state(0), PodState::Ready);
        assert_eq!(pod_state(1), PodState::NotReady);
        assert_eq!(pod_state(7), PodState::Invalid(7));
        assert_eq!(ctr_state(9), CState::Unknown);
        assert_eq!(ctr_state(3), CState::Unknown);
    }
}
