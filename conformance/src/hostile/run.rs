//! One hostile run against an endpoint: set-up (the fixture image, a ready pod, a running
//! container), the generated requests with a round of concurrent duplicates every
//! thousand, the streaming checks, the comparison with the oracle, clean-up.

use std::collections::BTreeSet;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use crid_api::{ImageServiceClient, RuntimeServiceClient, cri};
use futures_util::future::join_all;
use proptest::strategy::{Strategy, ValueTree};
use proptest::test_runner::{Config, RngAlgorithm, TestRng, TestRunner};
use prost::Message;
use tonic::Code;
use tonic::transport::Channel;

use super::build::{self, Fixture};
use super::checks::{Dirs, log_check, socket_check};
use super::judge::{self, Expected};
use super::oracle::{Listing, Oracle};
use super::probe::{Mutation, Probe, Target, probe_strategy};
use super::report::{Finding, Report, Tally, code_name, cut};
use super::rpc::Rpc;
use super::streams::{self, Check};
use super::wire::{self, Answer};

/// What a run needs.
#[derive(Debug, Clone)]
pub struct Options {
    /// The endpoint as given (`unix:///…`).
    pub endpoint: String,
    /// A channel to it.
    pub channel: Channel,
    /// `runtime_name runtime_version`.
    pub runtime: String,
    /// The fixture registry's `host:port`.
    pub registry: String,
    /// The image containers run (the fixture busybox).
    pub image: String,
    /// Registry credentials, if it wants them.
    pub credentials: Option<(String, String)>,
    /// Generated requests to send.
    pub requests: u64,
    /// The generator's seed.
    pub seed: u64,
    /// Time limit of one request.
    pub op_timeout: Duration,
    /// The daemon's log, checked for panics at the end.
    pub daemon_log: Option<PathBuf>,
}

/// Concurrent copies in a duplicate round.
const DUPLICATES: usize = 8;
/// Generated requests between two duplicate rounds.
const ROUND_EVERY: u64 = 1000;
/// Generated requests between two liveness checks (and oversize requests).
const ALIVE_EVERY: u64 = 500;
/// The mutation kind of duplicate rounds in the figures.
const DUPLICATE: &str = "concurrent-duplicate";
/// The most wrong answers kept in full (all are counted).
const MAX_FINDINGS: usize = 5000;

fn seeded(seed: u64) -> TestRunner {
    let mut bytes = [0u8; 32];
    bytes[..8].copy_from_slice(&seed.to_le_bytes());
    TestRunner::new_with_rng(
        Config::default(),
        TestRng::from_seed(RngAlgorithm::ChaCha, &bytes),
    )
}

fn rs(ch: &Channel) -> RuntimeServiceClient<Channel> {
    RuntimeServiceClient::new(ch.clone()).max_decoding_message_size(usize::MAX)
}

fn is(ch: &Channel) -> ImageServiceClient<Channel> {
    ImageServiceClient::new(ch.clone()).max_decoding_message_size(usize::MAX)
}

fn status_text(s: &tonic::Status) -> String {
    format!("{:?}: {}", s.code(), cut(s.message(), 300))
}

/// Everything the endpoint lists.
async fn listing(ch: &Channel) -> Result<Listing, String> {
    let pods = rs(ch)
        .list_pod_sandbox(cri::ListPodSandboxRequest { filter: None })
        .await
        .map_err(|s| format!("ListPodSandbox: {}", status_text(&s)))?
        .into_inner()
        .items;
    let containers = rs(ch)
        .list_containers(cri::ListContainersRequest { filter: None })
        .await
        .map_err(|s| format!("ListContainers: {}", status_text(&s)))?
        .into_inner()
        .containers;
    let images = is(ch)
        .list_images(cri::ListImagesRequest { filter: None })
        .await
        .map_err(|s| format!("ListImages: {}", status_text(&s)))?
        .into_inner()
        .images;
    Ok(Listing {
        pods: pods.into_iter().map(|p| p.id).collect(),
        containers: containers
            .into_iter()
            .map(|c| (c.id, c.pod_sandbox_id))
            .collect(),
        images: images.into_iter().map(|i| i.id).collect(),
    })
}

/// Pulls the image and starts the run's own pod and container.
async fn set_up(opts: &Options, dirs: &Dirs, run_id: &str) -> Result<Fixture, String> {
    let ch = &opts.channel;
    let mut fx = Fixture {
        run_id: run_id.to_owned(),
        pod_id: String::new(),
        pod_config: cri::PodSandboxConfig::default(),
        container_id: String::new(),
        image: opts.image.clone(),
        registry: opts.registry.clone(),
        log_root: dirs.path("logs"),
        canary: dirs.path("canary"),
        host_dir: dirs.path("mount"),
        credentials: opts.credentials.clone(),
    };
    is(ch)
        .pull_image(fx.pull_request())
        .await
        .map_err(|s| format!("pulling {}: {}", fx.image, status_text(&s)))?;
    fx.pod_config = fx.pod_config(0);
    fx.pod_id = rs(ch)
        .run_pod_sandbox(cri::RunPodSandboxRequest {
            config: Some(fx.pod_config.clone()),
            runtime_handler: String::new(),
        })
        .await
        .map_err(|s| format!("the run's pod: {}", status_text(&s)))?
        .into_inner()
        .pod_sandbox_id;
    fx.container_id = rs(ch)
        .create_container(cri::CreateContainerRequest {
            pod_sandbox_id: fx.pod_id.clone(),
            config: Some(fx.container_config(0)),
            sandbox_config: Some(fx.pod_config.clone()),
        })
        .await
        .map_err(|s| format!("the run's container: {}", status_text(&s)))?
        .into_inner()
        .container_id;
    rs(ch)
        .start_container(cri::StartContainerRequest {
            container_id: fx.container_id.clone(),
        })
        .await
        .map_err(|s| format!("starting the run's container: {}", status_text(&s)))?;
    Ok(fx)
}

/// The run's state between requests.
struct Run<'a> {
    opts: &'a Options,
    fx: Fixture,
    oracle: Oracle,
    tally: Tally,
}

impl Run<'_> {
    fn record(
        &mut self,
        probe: &Probe,
        kind: &str,
        expected: &Expected,
        answer: Option<&Answer>,
        latency: Duration,
        extra: Option<String>,
    ) {
        let (got, message) = match answer {
            Some(a) => (code_name(a.code), cut(&a.message, 300)),
            None => (
                "no answer".to_owned(),
                format!("no answer within {:?}", self.opts.op_timeout),
            ),
        };
        let right = answer.is_some_and(|a| expected.codes.contains(&a.code)) && extra.is_none();
        let finding = (!right && self.tally.findings.len() < MAX_FINDINGS).then(|| Finding {
            rpc: probe.rpc.name(),
            mutation: kind.to_owned(),
            target: probe.target.kind().to_owned(),
            probe: probe.to_string(),
            got: got.clone(),
            message: extra.map_or(message.clone(), |e| format!("{e}; {message}")),
            expected: expected.codes.clone(),
            clause: expected.clause.clone(),
        });
        if !right && finding.is_none() {
            // Counted, not kept.
            self.tally.per_rpc.entry(probe.rpc.name()).or_default().1 += 1;
        }
        self.tally
            .record(&probe.rpc.name(), kind, &got, latency, finding);
    }

    /// Notes an object an OK answer created; returns a complaint when the answer does not
    /// say which.
    fn created(&mut self, rpc: Rpc, body: &[u8], by: &str, pod: &str) -> Option<String> {
        match rpc {
            Rpc::RunPodSandbox => match cri::RunPodSandboxResponse::decode(body) {
                Ok(r) if !r.pod_sandbox_id.is_empty() => {
                    self.oracle.pod_created(&r.pod_sandbox_id, by);
                    None
                }
                _ => Some("OK without a pod_sandbox_id".into()),
            },
            Rpc::CreateContainer => match cri::CreateContainerResponse::decode(body) {
                Ok(r) if !r.container_id.is_empty() => {
                    self.oracle.container_created(&r.container_id, pod, by);
                    None
                }
                _ => Some("OK without a container_id".into()),
            },
            _ => None,
        }
    }

    async fn probe(&mut self, probe: &Probe, n: u64) {
        let bytes = if probe.mutation == Mutation::Oversize {
            build::oversize()
        } else {
            build::encode(probe, &self.fx, n)
        };
        let expected = judge::expect(probe);
        let start = Instant::now();
        let answer = wire::call(
            self.opts.channel.clone(),
            &probe.rpc.path(),
            probe.rpc.streaming(),
            bytes,
            self.opts.op_timeout,
        )
        .await;
        let latency = start.elapsed();
        let mut extra = None;
        if let Some(a) = &answer
            && a.code == Code::Ok
        {
            let pod = self.fx.pod_id.clone();
            extra = self.created(probe.rpc, &a.body, &probe.to_string(), &pod);
            // An image that is not there is reported as absent, not made up.
            if probe.rpc == Rpc::ImageStatus
                && matches!(probe.target, Target::Missing(_) | Target::OtherKind)
                && cri::ImageStatusResponse::decode(a.body.as_slice())
                    .map_or(true, |r| r.image.is_some())
            {
                extra = Some("OK with an image for a reference that names none".into());
            }
        }
        self.record(
            probe,
            probe.mutation.kind(),
            &expected,
            answer.as_ref(),
            latency,
            extra,
        );
    }

    /// Sends `bytes` to `rpc` from [`DUPLICATES`] clients at once.
    async fn burst(&self, rpc: Rpc, bytes: Vec<u8>) -> Vec<(Option<Answer>, Duration)> {
        let calls = (0..DUPLICATES).map(|_| {
            let ch = self.opts.channel.clone();
            let (path, bytes, limit) = (rpc.path(), bytes.clone(), self.opts.op_timeout);
            async move {
                let start = Instant::now();
                let a = wire::call(ch, &path, false, bytes, limit).await;
                (a, start.elapsed())
            }
        });
        join_all(calls).await
    }

    /// Judges a burst: `one_wins` (exactly one OK, the others AlreadyExists) or all OK.
    /// Returns the OK answers' bodies.
    fn judge_burst(
        &mut self,
        rpc: Rpc,
        answers: &[(Option<Answer>, Duration)],
        one_wins: bool,
        pod: &str,
    ) -> Vec<Vec<u8>> {
        let probe = Probe {
            rpc,
            target: Target::Own,
            mutation: Mutation::None,
        };
        let (codes, clause) = if one_wins {
            (
                vec![Code::Ok, Code::AlreadyExists],
                format!(
                    "cri:RuntimeService.{rpc}#name (reserved: one of {DUPLICATES} identical calls wins)"
                ),
            )
        } else {
            (
                vec![Code::Ok],
                format!(
                    "cri:{}.{rpc}#idempotent ({DUPLICATES} identical calls at once)",
                    if rpc == Rpc::PullImage {
                        "ImageService"
                    } else {
                        "RuntimeService"
                    }
                ),
            )
        };
        let expected = Expected {
            codes,
            clause,
            creates: false,
        };
        let oks = answers
            .iter()
            .filter(|(a, _)| a.as_ref().is_some_and(|a| a.code == Code::Ok))
            .count();
        let mut bodies = Vec::new();
        let mut ok_seen = 0;
        for (i, (a, latency)) in answers.iter().enumerate() {
            let mut extra = None;
            if let Some(a) = a
                && a.code == Code::Ok
            {
                ok_seen += 1;
                if one_wins && ok_seen > 1 {
                    extra = Some(format!("{oks} of {DUPLICATES} identical calls answered OK"));
                }
                extra =
                    extra.or_else(|| self.created(rpc, &a.body, &format!("{rpc} duplicate"), pod));
                bodies.push(a.body.clone());
            }
            if one_wins && oks == 0 && i == 0 && extra.is_none() {
                extra = Some(format!("none of {DUPLICATES} identical calls answered OK"));
            }
            self.record(&probe, DUPLICATE, &expected, a.as_ref(), *latency, extra);
        }
        bodies
    }

    /// A round of concurrent duplicates: a pod, a container in it, their stop and removal,
    /// a pull.
    async fn duplicates(&mut self, round: u64) {
        let n = 1_000_000 + round;
        let config = self.fx.pod_config(n);
        let run = cri::RunPodSandboxRequest {
            config: Some(config.clone()),
            runtime_handler: String::new(),
        };
        let answers = self.burst(Rpc::RunPodSandbox, run.encode_to_vec()).await;
        let pods = self.judge_burst(Rpc::RunPodSandbox, &answers, true, "");
        let Some(pod) = pods
            .first()
            .and_then(|b| cri::RunPodSandboxResponse::decode(b.as_slice()).ok())
            .map(|r| r.pod_sandbox_id)
        else {
            return;
        };
        let create = cri::CreateContainerRequest {
            pod_sandbox_id: pod.clone(),
            config: Some(self.fx.container_config(n)),
            sandbox_config: Some(config),
        };
        let answers = self
            .burst(Rpc::CreateContainer, create.encode_to_vec())
            .await;
        let containers = self.judge_burst(Rpc::CreateContainer, &answers, true, &pod);
        let container = containers
            .first()
            .and_then(|b| cri::CreateContainerResponse::decode(b.as_slice()).ok())
            .map(|r| r.container_id);
        if let Some(c) = container {
            let stop = cri::StopContainerRequest {
                container_id: c.clone(),
                timeout: 0,
            };
            let answers = self.burst(Rpc::StopContainer, stop.encode_to_vec()).await;
            self.judge_burst(Rpc::StopContainer, &answers, false, &pod);
            let remove = cri::RemoveContainerRequest {
                container_id: c.clone(),
            };
            let answers = self
                .burst(Rpc::RemoveContainer, remove.encode_to_vec())
                .await;
            if !self
                .judge_burst(Rpc::RemoveContainer, &answers, false, &pod)
                .is_empty()
            {
                self.oracle.container_removed(&c);
            }
        }
        let stop = cri::StopPodSandboxRequest {
            pod_sandbox_id: pod.clone(),
        };
        let answers = self.burst(Rpc::StopPodSandbox, stop.encode_to_vec()).await;
        self.judge_burst(Rpc::StopPodSandbox, &answers, false, &pod);
        let remove = cri::RemovePodSandboxRequest {
            pod_sandbox_id: pod.clone(),
        };
        let answers = self
            .burst(Rpc::RemovePodSandbox, remove.encode_to_vec())
            .await;
        if !self
            .judge_burst(Rpc::RemovePodSandbox, &answers, false, &pod)
            .is_empty()
        {
            self.oracle.pod_removed(&pod);
        }
        let answers = self
            .burst(Rpc::PullImage, self.fx.pull_request().encode_to_vec())
            .await;
        let refs: BTreeSet<String> = self
            .judge_burst(Rpc::PullImage, &answers, false, "")
            .iter()
            .filter_map(|b| cri::PullImageResponse::decode(b.as_slice()).ok())
            .map(|r| r.image_ref)
            .collect();
        if refs.len() > 1 {
            self.tally.findings.push(Finding {
                rpc: "PullImage".into(),
                mutation: DUPLICATE.into(),
                target: "own".into(),
                probe: "PullImage of the fixture image, 8 at once".into(),
                got: "Ok".into(),
                message: format!("different image_refs: {refs:?}"),
                expected: vec![Code::Ok],
                clause: "cri:ImageService.PullImage#image_ref".into(),
            });
        }
    }

    async fn alive(&self) -> Result<(), String> {
        let mut client = rs(&self.opts.channel);
        match tokio::time::timeout(
            self.opts.op_timeout,
            client.version(cri::VersionRequest {
                version: "0.1.0".into(),
            }),
        )
        .await
        {
            Ok(Ok(_)) => Ok(()),
            Ok(Err(s)) => Err(status_text(&s)),
            Err(_) => Err(format!("no answer within {:?}", self.opts.op_timeout)),
        }
    }

    /// The run's own pod is still READY and its container RUNNING.
    async fn own_objects(&self) -> Check {
        let ch = &self.opts.channel;
        let pod = rs(ch)
            .pod_sandbox_status(cri::PodSandboxStatusRequest {
                pod_sandbox_id: self.fx.pod_id.clone(),
                verbose: false,
            })
            .await
            .map(|r| r.into_inner().status.map(|s| s.state));
        let container = rs(ch)
            .container_status(cri::ContainerStatusRequest {
                container_id: self.fx.container_id.clone(),
                verbose: false,
            })
            .await
            .map(|r| r.into_inner().status.map(|s| s.state));
        let ready = cri::PodSandboxState::SandboxReady as i32;
        let running = cri::ContainerState::ContainerRunning as i32;
        Check {
            name: "oracle:own-objects-intact",
            passed: matches!(pod, Ok(Some(s)) if s == ready)
                && matches!(container, Ok(Some(s)) if s == running),
            detail: format!(
                "pod {}, container {}",
                pod.map_or_else(
                    |s| status_text(&s),
                    |s| format!("state {s:?} (READY is {ready})")
                ),
                container.map_or_else(
                    |s| status_text(&s),
                    |s| format!("state {s:?} (RUNNING is {running})")
                )
            ),
        }
    }

    /// Removes what the run created; returns what could not be removed.
    async fn clean_up(&self) -> Vec<String> {
        let mut failed = Vec::new();
        let mut client = rs(&self.opts.channel);
        for c in self.oracle.containers() {
            if let Err(s) = client
                .remove_container(cri::RemoveContainerRequest {
                    container_id: c.clone(),
                })
                .await
            {
                failed.push(format!("container {c}: {}", status_text(&s)));
            }
        }
        let mut pods = self.oracle.pods();
        pods.push(self.fx.pod_id.clone());
        for p in pods {
            let _ = client
                .stop_pod_sandbox(cri::StopPodSandboxRequest {
                    pod_sandbox_id: p.clone(),
                })
                .await;
            if let Err(s) = client
                .remove_pod_sandbox(cri::RemovePodSandboxRequest {
                    pod_sandbox_id: p.clone(),
                })
                .await
            {
                failed.push(format!("pod {p}: {}", status_text(&s)));
            }
        }
        failed
    }
}

/// Runs the generated requests, the duplicate rounds and the checks; cleans up after.
pub async fn run(opts: Options) -> Result<Report, String> {
    let started = Instant::now();
    let mut report = Report {
        runtime: opts.runtime.clone(),
        endpoint: opts.endpoint.clone(),
        seed: opts.seed,
        generated: opts.requests,
        ..Report::default()
    };
    report.checks.push(socket_check(&opts.endpoint));
    let dirs = Dirs::new()?;
    let initial = listing(&opts.channel).await?;
    let run_id = crate::runner::new_run_id();
    let fx = set_up(&opts, &dirs, &run_id).await?;
    let before = listing(&opts.channel).await?;
    let mut run = Run {
        opts: &opts,
        fx,
        oracle: Oracle::new(before),
        tally: Tally::default(),
    };
    let strategy = probe_strategy(run.fx.canary.clone());
    let mut runner = seeded(opts.seed);
    let mut dead = None;
    for i in 0..opts.requests {
        if i > 0 && i.is_multiple_of(ROUND_EVERY) {
            run.duplicates(i / ROUND_EVERY).await;
        }
        if i % ALIVE_EVERY == ALIVE_EVERY - 1
            && let Err(e) = run.alive().await
        {
            dead = Some(format!("after {i} requests: {e}"));
            break;
        }
        let probe = if i % ALIVE_EVERY == ALIVE_EVERY / 2 {
            Probe {
                rpc: Rpc::Version,
                target: Target::Own,
                mutation: Mutation::Oversize,
            }
        } else {
            strategy
                .new_tree(&mut runner)
                .map_err(|e| format!("generator: {e}"))?
                .current()
        };
        run.probe(&probe, i + 1).await;
        if (i + 1).is_multiple_of(1000) {
            eprintln!(
                "hostile: {} requests, {} wrong answers, {:.0}s",
                i + 1,
                run.tally.findings.len(),
                started.elapsed().as_secs_f64()
            );
        }
    }
    let (checks, sent) =
        streams::check_all(opts.channel.clone(), &run.fx.pod_id, &run.fx.container_id).await;
    report.checks.extend(checks);
    report.streaming = sent;
    let alive = match dead {
        Some(e) => Err(e),
        None => run.alive().await,
    };
    report.checks.push(Check {
        name: "daemon:alive",
        passed: alive.is_ok(),
        detail: alive
            .err()
            .unwrap_or_else(|| "Version answers after the run".into()),
    });
    report.checks.push(run.own_objects().await);
    report.checks.push(dirs.canary_check());
    match listing(&opts.channel).await {
        Ok(now) => {
            let d = run.oracle.compare(&now);
            report.leaked = d.leaked;
            report.lost = d.lost;
        }
        Err(e) => report.lost.push(format!("the final listing failed: {e}")),
    }
    report.created = run.oracle.ever_created();
    let mut left = run.clean_up().await;
    match listing(&opts.channel).await {
        Ok(after) => {
            left.extend(
                after
                    .pods
                    .difference(&initial.pods)
                    .map(|p| format!("pod {p}")),
            );
            left.extend(
                after
                    .containers
                    .keys()
                    .filter(|c| !initial.containers.contains_key(*c))
                    .map(|c| format!("container {c}")),
            );
        }
        Err(e) => left.push(format!("the listing after clean-up failed: {e}")),
    }
    report.left_behind = left;
    if let Some(log) = &opts.daemon_log {
        report.checks.push(log_check(log));
    }
    report.tally.clone_from(&run.tally);
    report.duration = started.elapsed();
    Ok(report)
}
