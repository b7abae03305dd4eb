//! Replaying one pod's trace: each recorded request is rewritten for this host, sent with
//! the kubelet's deadline, and its answer judged the way the kubelet judges it
//! ([`super::judge`]): the gRPC code, pod state and ready IP, container state, exit code,
//! log path and log file, probe results, the pod's own objects in every list and in the
//! stats, image presence. Where the kubelet would poll again (status, lists, probes), the
//! replay does too, for as long as two of its poll periods.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use crid_api::cri;
use serde_json::Value;
use tonic::{Code, Request};

use super::{host, judge};
use crate::cases::status_text;
use crate::cases::support::{Scope, log_root};
use crate::fixtures::image::{BUSYBOX, LATEST};
use crate::kubelet_corpus::rewrite::{Rewrite, fresh_uid, rfc3339};
use crate::kubelet_corpus::{self as corpus, Call, NODE};

/// How long a status poll may wait for the state the kubelet saw (its poll period, twice).
const STATE_WAIT: Duration = Duration::from_secs(20);
/// How long a probe may keep failing before its answer counts (a readiness probe's
/// period, twice: the kubelet would probe again).
const PROBE_WAIT: Duration = Duration::from_secs(10);
const POLL: Duration = Duration::from_millis(200);
/// How [`Replay::refusal`] introduces what a refused request left.
pub(super) const LEFT_BEHIND: &str = "left behind:";

/// A container of the replayed pod.
#[derive(Debug, Clone)]
pub(super) struct Container {
    /// The id the endpoint returned.
    pub id: String,
    /// `metadata.name`.
    pub name: String,
    /// The request that created it, rewritten.
    pub config: cri::ContainerConfig,
}

/// One pod's replay in progress.
pub(super) struct Replay {
    scope: Arc<Scope>,
    calls: Vec<Call>,
    next: usize,
    rw: Rewrite,
    /// The case's stand-in for the kubelet's directories: `kubelet/`, `pods/`, `hostpath/`.
    pub root: PathBuf,
    /// The pod's uid in this replay.
    pub uid: String,
    /// The sandbox: (recorded id, live id) once created.
    pub sandbox: Option<(String, String)>,
    /// The rewritten sandbox config, once RunPodSandbox was sent.
    pub sandbox_config: Option<cri::PodSandboxConfig>,
    /// Containers by recorded id.
    pub containers: BTreeMap<String, Container>,
    /// The pod IP the endpoint reported.
    pub pod_ip: Option<String>,
    /// Recorded ids of containers that may be seen later in their life than recorded.
    moved_on: BTreeSet<String>,
    /// Live ids removed by a replayed call.
    removed: BTreeSet<String>,
    cgroups_before: Vec<PathBuf>,
}

impl Replay {
    /// Loads `pod`'s trace and prepares the host and the rewrites: the fixture busybox
    /// image pulled and standing in for the kubelet's, a fresh uid, the node name, the
    /// case's directories, free host ports and `config.seen`.
    pub async fn prepare(scope: Arc<Scope>, pod: &str) -> Result<Replay, String> {
        let calls = corpus::trace(pod).map_err(|e| format!("trace {pod}: {e}"))?;
        let image = scope.image(BUSYBOX, LATEST)?;
        scope.pull_ref(&image, None).await?;
        let image_id = scope
            .image_status(&image)
            .await?
            .ok_or_else(|| format!("ImageStatus {image}: absent right after PullImage"))?
            .id;
        let run = calls
            .iter()
            .find(|c| c.rpc == "RunPodSandbox")
            .ok_or_else(|| format!("trace {pod} has no RunPodSandbox"))?;
        let str_at = |v: &Value, p: &str| v.pointer(p).and_then(Value::as_str).map(str::to_owned);
        let old_uid = str_at(&run.request, "/config/metadata/uid")
            .ok_or_else(|| format!("trace {pod}: RunPodSandbox without a uid"))?;
        let uid = fresh_uid(&scope.tag);
        let node = scope.tag.clone();
        let root = log_root().join(format!("{}-{pod}", scope.tag));
        scope.track_dir(&root);
        let mut rw = Rewrite::new();
        for (from, to) in [
            ("/var/log/pods", "pods"),
            ("/var/lib/kubelet", "kubelet"),
            ("/var/lib/kcheck-hostpath", "hostpath"),
        ] {
            rw.replace(from, &root.join(to).display().to_string());
        }
        rw.replace(&old_uid, &uid)
            .replace(&format!("-{NODE}"), &format!("-{node}"));
        for c in calls.iter().filter(|c| c.rpc == "CreateContainer") {
            if let Some(id) = str_at(&c.request, "/config/image/image") {
                rw.replace(&id, &image_id);
            }
            if let Some(name) = str_at(&c.request, "/config/image/user_specified_image") {
                rw.replace(&name, &image);
            }
        }
        for c in calls
            .iter()
            .filter(|c| c.rpc == "ImageStatus" || c.rpc == "PullImage")
        {
            if let Some(name) = str_at(&c.request, "/image/image") {
                rw.replace(&name, &image);
            }
            if let Some(id) = c.response.as_ref().and_then(|r| str_at(r, "/image/id")) {
                rw.replace(&id, &image_id);
            }
        }
        for pm in run
            .request
            .pointer("/config/port_mappings")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
        {
            if let Some(p) = pm.get("host_port").and_then(Value::as_u64) {
                rw.port(p, u64::from(free_port()?));
            }
        }
        rw.seen(&rfc3339(SystemTime::now()));
        let cgroup_parent =
            rw.text(&str_at(&run.request, "/config/linux/cgroup_parent").unwrap_or_default());
        Ok(Replay {
            moved_on: moves_on_by_itself(&calls),
            cgroups_before: host::existing_ancestors(&cgroup_parent),
            scope,
            calls,
            next: 0,
            rw,
            root,
            uid,
            sandbox: None,
            sandbox_config: None,
            containers: BTreeMap::new(),
            pod_ip: None,
            removed: BTreeSet::new(),
        })
    }

    /// The case's scope.
    pub fn scope(&self) -> &Scope {
        &self.scope
    }

    /// The recorded calls not yet replayed.
    pub fn remaining(&self) -> &[Call] {
        &self.calls[self.next..]
    }

    /// All recorded calls.
    pub fn calls(&self) -> &[Call] {
        &self.calls
    }

    /// The rewrites in force (ids learned so far included).
    pub fn rewrite(&self) -> &Rewrite {
        &self.rw
    }

    /// The container named `name`.
    pub fn container(&self, name: &str) -> Result<&Container, String> {
        self.containers
            .values()
            .find(|c| c.name == name)
            .ok_or_else(|| format!("no container {name} was created"))
    }

    /// The live sandbox id.
    pub fn sandbox_id(&self) -> Result<&str, String> {
        self.sandbox
            .as_ref()
            .map(|(_, live)| live.as_str())
            .ok_or_else(|| "no sandbox was created".to_owned())
    }

    /// The pod's cgroup parent as sent (cgroupfs form, with this replay's uid).
    pub fn cgroup_parent(&self) -> String {
        self.sandbox_config
            .as_ref()
            .and_then(|c| c.linux.as_ref())
            .map(|l| l.cgroup_parent.clone())
            .unwrap_or_default()
    }

    /// Replays calls up to (not including) the first for which `stop` holds.
    pub async fn run_until(&mut self, stop: impl Fn(&Call) -> bool) -> Result<(), String> {
        while let Some(c) = self.calls.get(self.next).cloned() {
            if stop(&c) {
                return Ok(());
            }
            self.next += 1;
            self.step(&c)
                .await
                .map_err(|e| format!("seq {} {}: {e}", c.seq, c.rpc))?;
        }
        Ok(())
    }

    /// Replays the rest of the trace.
    pub async fn run_to_end(&mut self) -> Result<(), String> {
        self.run_until(|_| false).await
    }

    /// Sends CreateContainer `c` (a recorded call, possibly edited) as the kubelet would,
    /// host paths first; returns the endpoint's answer: the new id (tracked for cleanup,
    /// not learned as the recorded container's) or its refusal.
    pub async fn send_create(&self, c: &Call) -> Result<Result<String, tonic::Status>, String> {
        let m: cri::CreateContainerRequest = self.decode(c)?;
        let config = m.config.clone().unwrap_or_default();
        let sandbox = m.sandbox_config.clone().unwrap_or_default();
        let ip = self.pod_ip.clone().unwrap_or_default();
        host::before_create(&self.root, &sandbox, &config, &ip)?;
        Ok(
            match self.scope.rs().create_container(with_deadline(m, c)).await {
                Ok(resp) => {
                    let id = resp.into_inner().container_id;
                    self.scope.track_container(&id);
                    Ok(id)
                }
                Err(s) => Err(s),
            },
        )
    }

    /// The log file of `config` in the replayed pod (log_directory/log_path).
    pub fn log_file(&self, config: &cri::ContainerConfig) -> PathBuf {
        let dir = self
            .sandbox_config
            .as_ref()
            .map(|s| s.log_directory.clone())
            .unwrap_or_default();
        Path::new(&dir).join(&config.log_path)
    }

    /// Replays `c` (a recorded call, possibly edited) now, out of the trace's order.
    pub async fn replay(&mut self, c: &Call) -> Result<(), String> {
        self.step(c)
            .await
            .map_err(|e| format!("seq {} {} (again): {e}", c.seq, c.rpc))
    }

    /// Checks that nothing of the pod is left: no sandbox or container listed under its
    /// uid, no cgroup under its cgroup parent, no mount naming the case's directories;
    /// then removes the pod cgroup as the kubelet does.
    pub async fn check_nothing_left(&self) -> Result<(), String> {
        let mut left = self.listed_under_uid().await?;
        let parent = self.cgroup_parent();
        if !parent.is_empty() {
            left.extend(
                host::cgroup_children(&parent)
                    .into_iter()
                    .map(|p| format!("cgroup {}", p.display())),
            );
        }
        left.extend(
            host::mounts_mentioning(&self.root.display().to_string())
                .into_iter()
                .map(|m| format!("mount {m}")),
        );
        if !parent.is_empty() {
            host::remove_pod_cgroups(&parent, &self.cgroups_before);
        }
        if left.is_empty() {
            Ok(())
        } else {
            Err(format!("left after the pod's removal: {}", left.join("; ")))
        }
    }

    /// After a failure: removes what the scope tracked (containers, pod, image, the
    /// case's directories) now, then the pod cgroup, which only the kubelet removes.
    pub async fn abort(&self) {
        let _ = self.scope.cleanup().await;
        let parent = self.cgroup_parent();
        if !parent.is_empty() {
            host::remove_pod_cgroups(&parent, &self.cgroups_before);
        }
    }

    /// Sandboxes and containers the endpoint lists under the pod's uid label.
    async fn listed_under_uid(&self) -> Result<Vec<String>, String> {
        let selector: std::collections::HashMap<String, String> =
            [("io.kubernetes.pod.uid".to_owned(), self.uid.clone())].into();
        let pods = self
            .scope
            .rs()
            .list_pod_sandbox(cri::ListPodSandboxRequest {
                filter: Some(cri::PodSandboxFilter {
                    label_selector: selector.clone(),
                    ..Default::default()
                }),
            })
            .await
            .map_err(|s| format!("ListPodSandbox: {}", status_text(&s)))?
            .into_inner()
            .items;
        let ctrs = self
            .scope
            .rs()
            .list_containers(cri::ListContainersRequest {
                filter: Some(cri::ContainerFilter {
                    label_selector: selector,
                    ..Default::default()
                }),
            })
            .await
            .map_err(|s| format!("ListContainers: {}", status_text(&s)))?
            .into_inner()
            .containers;
        Ok(pods
            .iter()
            .map(|p| format!("sandbox {}", p.id))
            .chain(ctrs.iter().map(|c| format!("container {}", c.id)))
            .collect())
    }

    fn decode<T: prost::Message + Default>(&self, c: &Call) -> Result<T, String> {
        corpus::decode(&corpus::request_type(&c.rpc), &self.rw.applied(&c.request))
            .map_err(|e| e.to_string())
    }

    fn recorded<T: prost::Message + Default>(&self, c: &Call) -> Result<T, String> {
        let r = c
            .response
            .clone()
            .unwrap_or(Value::Object(Default::default()));
        corpus::decode(&corpus::response_type(&c.rpc), &self.rw.applied(&r))
            .map_err(|e| e.to_string())
    }

    async fn step(&mut self, c: &Call) -> Result<(), String> {
        let mut rs = self.scope.rs();
        let mut is = self.scope.is();
        match c.rpc.as_str() {
            "Version" => {
                let m: cri::VersionRequest = self.decode(c)?;
                if let Some(v) = judge::code(&c.code, rs.version(with_deadline(m, c)).await)? {
                    ensure(v.runtime_api_version == "v1", || {
                        format!(
                            "runtime_api_version {:?}, the kubelet needs v1",
                            v.runtime_api_version
                        )
                    })?;
                }
            }
            "Status" => {
                let m: cri::StatusRequest = self.decode(c)?;
                if let Some(st) = judge::code(&c.code, rs.status(with_deadline(m, c)).await)? {
                    let conditions = st.status.map(|s| s.conditions).unwrap_or_default();
                    for want in ["RuntimeReady", "NetworkReady"] {
                        ensure(
                            conditions.iter().any(|k| k.r#type == want && k.status),
                            || format!("condition {want} is not true: {conditions:?}"),
                        )?;
                    }
                }
            }
            "RuntimeConfig" => {
                let m: cri::RuntimeConfigRequest = self.decode(c)?;
                judge::code(&c.code, rs.runtime_config(with_deadline(m, c)).await)?;
            }
            "ImageFsInfo" => {
                let m: cri::ImageFsInfoRequest = self.decode(c)?;
                judge::code(&c.code, is.image_fs_info(with_deadline(m, c)).await)?;
            }
            "ListImages" => {
                let m: cri::ListImagesRequest = self.decode(c)?;
                judge::code(&c.code, is.list_images(with_deadline(m, c)).await)?;
            }
            "ImageStatus" => {
                let m: cri::ImageStatusRequest = self.decode(c)?;
                if let Some(live) =
                    judge::code(&c.code, is.image_status(with_deadline(m, c)).await)?
                {
                    let want: cri::ImageStatusResponse = self.recorded(c)?;
                    let (want, live) = (want.image.map(|i| i.id), live.image.map(|i| i.id));
                    // The harness pulls the image before the replay: absent then is present now.
                    ensure(want.is_none() || want == live, || {
                        format!("image {live:?}, the kubelet saw {want:?}")
                    })?;
                }
            }
            "PullImage" => {
                let m: cri::PullImageRequest = self.decode(c)?;
                judge::code(&c.code, is.pull_image(with_deadline(m, c)).await)?;
            }
            "RunPodSandbox" => {
                let mut m: cri::RunPodSandboxRequest = self.decode(c)?;
                m.runtime_handler = self.scope.ctx.runtime_handler.clone();
                let config = m.config.clone().unwrap_or_default();
                host::before_run_pod(&config)?;
                self.sandbox_config = Some(config);
                let r = rs.run_pod_sandbox(with_deadline(m, c)).await;
                if let Err(s) = &r {
                    return Err(self.refusal("RunPodSandbox", s, None).await);
                }
                if let Some(live) = judge::code(&c.code, r)? {
                    self.scope.track_pod(&live.pod_sandbox_id);
                    let old = c
                        .response
                        .as_ref()
                        .and_then(|r| r.get("pod_sandbox_id"))
                        .and_then(Value::as_str)
                        .unwrap_or_default();
                    self.rw.replace(old, &live.pod_sandbox_id);
                    self.sandbox = Some((old.to_owned(), live.pod_sandbox_id));
                }
            }
            "PodSandboxStatus" => {
                let m: cri::PodSandboxStatusRequest = self.decode(c)?;
                if let Some(live) =
                    judge::code(&c.code, rs.pod_sandbox_status(with_deadline(m, c)).await)?
                {
                    self.judge_pod_status(c, live)?;
                }
            }
            "CreateContainer" => {
                let m: cri::CreateContainerRequest = self.decode(c)?;
                let config = m.config.clone().unwrap_or_default();
                let sandbox = m.sandbox_config.clone().unwrap_or_default();
                let ip = self.pod_ip.clone().unwrap_or_default();
                host::before_create(&self.root, &sandbox, &config, &ip)?;
                let log = Path::new(&sandbox.log_directory).join(&config.log_path);
                let r = rs.create_container(with_deadline(m, c)).await;
                if let Err(s) = &r {
                    return Err(self.refusal("CreateContainer", s, Some(&log)).await);
                }
                if let Some(live) = judge::code(&c.code, r)? {
                    self.scope.track_container(&live.container_id);
                    let old = c
                        .response
                        .as_ref()
                        .and_then(|r| r.get("container_id"))
                        .and_then(Value::as_str)
                        .unwrap_or_default();
                    self.rw.replace(old, &live.container_id);
                    let name = config
                        .metadata
                        .as_ref()
                        .map(|m| m.name.clone())
                        .unwrap_or_default();
                    self.containers.insert(
                        old.to_owned(),
                        Container {
                            id: live.container_id,
                            name,
                            config,
                        },
                    );
                }
            }
            "StartContainer" => {
                let m: cri::StartContainerRequest = self.decode(c)?;
                let r = rs.start_container(with_deadline(m, c)).await;
                if let Err(s) = &r {
                    return Err(self.refusal("StartContainer", s, None).await);
                }
                judge::code(&c.code, r)?;
            }
            "ContainerStatus" => self.judge_container_status(c).await?,
            "ExecSync" => self.judge_probe(c).await?,
            "ListPodSandbox" => {
                let m: cri::ListPodSandboxRequest = self.decode(c)?;
                let by_uid = selects_uid(m.filter.as_ref().map(|f| &f.label_selector));
                let want: cri::ListPodSandboxResponse = self.recorded(c)?;
                let deadline = Instant::now() + STATE_WAIT;
                while let Some(live) = judge::code(
                    &c.code,
                    rs.list_pod_sandbox(with_deadline(m.clone(), c)).await,
                )? {
                    match judge::pod_list(&live.items, &want.items, &self.sandbox_ids(), by_uid) {
                        Err(e) if Instant::now() > deadline => return Err(e),
                        Err(_) => tokio::time::sleep(POLL).await,
                        Ok(()) => break,
                    }
                }
            }
            "ListContainers" => {
                let m: cri::ListContainersRequest = self.decode(c)?;
                let by_uid = selects_uid(m.filter.as_ref().map(|f| &f.label_selector));
                let by_state = m.filter.as_ref().and_then(|f| f.state.as_ref()).is_some();
                let want: cri::ListContainersResponse = self.recorded(c)?;
                let deadline = Instant::now() + STATE_WAIT;
                while let Some(live) = judge::code(
                    &c.code,
                    rs.list_containers(with_deadline(m.clone(), c)).await,
                )? {
                    match judge::container_list(
                        &live.containers,
                        &want.containers,
                        &self.container_ids(),
                        &self.moved_on_ids(),
                        by_uid,
                        by_state,
                    ) {
                        Err(e) if Instant::now() > deadline => return Err(e),
                        Err(_) => tokio::time::sleep(POLL).await,
                        Ok(()) => break,
                    }
                }
            }
            "ListContainerStats" => {
                let m: cri::ListContainerStatsRequest = self.decode(c)?;
                let want: cri::ListContainerStatsResponse = self.recorded(c)?;
                let deadline = Instant::now() + STATE_WAIT;
                while let Some(live) = judge::code(
                    &c.code,
                    rs.list_container_stats(with_deadline(m.clone(), c)).await,
                )? {
                    match judge::stats(
                        &live,
                        &want,
                        &self.container_ids(),
                        &self.moved_on_ids(),
                        &self.removed,
                    ) {
                        Err(e) if Instant::now() > deadline => return Err(e),
                        Err(_) => tokio::time::sleep(POLL).await,
                        Ok(()) => break,
                    }
                }
            }
            "StopContainer" => {
                let m: cri::StopContainerRequest = self.decode(c)?;
                let id = m.container_id.clone();
                judge::code(&c.code, rs.stop_container(with_deadline(m, c)).await)?;
                self.mark_moved_on(&id);
            }
            "StopPodSandbox" => {
                let m: cri::StopPodSandboxRequest = self.decode(c)?;
                judge::code(&c.code, rs.stop_pod_sandbox(with_deadline(m, c)).await)?;
                let ids: Vec<String> = self.containers.values().map(|k| k.id.clone()).collect();
                ids.iter().for_each(|id| self.mark_moved_on(id));
            }
            "RemoveContainer" => {
                let m: cri::RemoveContainerRequest = self.decode(c)?;
                let id = m.container_id.clone();
                judge::code(&c.code, rs.remove_container(with_deadline(m, c)).await)?;
                self.removed.insert(id);
            }
            "RemovePodSandbox" => {
                let m: cri::RemovePodSandboxRequest = self.decode(c)?;
                let id = m.pod_sandbox_id.clone();
                judge::code(&c.code, rs.remove_pod_sandbox(with_deadline(m, c)).await)?;
                self.removed.insert(id);
                self.removed
                    .extend(self.containers.values().map(|k| k.id.clone()));
            }
            other => return Err(format!("the replay does not know {other}")),
        }
        Ok(())
    }

    fn mark_moved_on(&mut self, live: &str) {
        if let Some((old, _)) = self.containers.iter().find(|(_, k)| k.id == live) {
            self.moved_on.insert(old.clone());
        }
    }

    /// Live ids of the containers that may be later in their life than the capture saw.
    fn moved_on_ids(&self) -> BTreeSet<&str> {
        self.containers
            .iter()
            .filter(|(old, _)| self.moved_on.contains(*old))
            .map(|(_, k)| k.id.as_str())
            .collect()
    }

    /// The live sandbox id, as a set.
    fn sandbox_ids(&self) -> BTreeSet<&str> {
        self.sandbox.iter().map(|(_, l)| l.as_str()).collect()
    }

    /// Live ids of the pod's containers.
    fn container_ids(&self) -> BTreeSet<&str> {
        self.containers.values().map(|k| k.id.as_str()).collect()
    }

    fn judge_pod_status(
        &mut self,
        c: &Call,
        live: cri::PodSandboxStatusResponse,
    ) -> Result<(), String> {
        let want: cri::PodSandboxStatusResponse = self.recorded(c)?;
        let (want, live) = (
            want.status.unwrap_or_default(),
            live.status.unwrap_or_default(),
        );
        let Some(ip) = judge::pod(&want, &live)? else {
            return Ok(());
        };
        match &self.pod_ip {
            None => {
                // The recorded IP, before rewriting, is what env values carry.
                let old = c
                    .response
                    .as_ref()
                    .and_then(|r| r.pointer("/status/network/ip"))
                    .and_then(Value::as_str)
                    .unwrap_or_default();
                self.rw.replace(old, &ip);
                self.pod_ip = Some(ip);
                Ok(())
            }
            Some(first) => ensure(*first == ip, || {
                format!("pod IP changed from {first} to {ip}")
            }),
        }
    }

    async fn judge_container_status(&mut self, c: &Call) -> Result<(), String> {
        let m: cri::ContainerStatusRequest = self.decode(c)?;
        let id = m.container_id.clone();
        let deadline = Instant::now() + STATE_WAIT;
        loop {
            let r = with_deadline(m.clone(), c);
            let Some(live) = judge::code(&c.code, self.scope.rs().container_status(r).await)?
            else {
                return Ok(());
            };
            let want: cri::ContainerStatusResponse = self.recorded(c)?;
            let (want, live) = (
                want.status.unwrap_or_default(),
                live.status.unwrap_or_default(),
            );
            let verdict = judge::container(&want, &live, self.moved_on_ids().contains(id.as_str()));
            match verdict {
                Ok(()) => return self.check_log_file(&live).await,
                Err(e) if Instant::now() > deadline => return Err(e),
                Err(_) => tokio::time::sleep(POLL).await,
            }
        }
    }

    /// The kubelet reads a started container's log at log_directory/log_path.
    async fn check_log_file(&self, live: &cri::ContainerStatus) -> Result<(), String> {
        let started = live.state == cri::ContainerState::ContainerRunning as i32
            || live.state == cri::ContainerState::ContainerExited as i32;
        if !started || live.log_path.is_empty() {
            return Ok(());
        }
        match tokio::fs::metadata(&live.log_path).await {
            Ok(m) if m.is_file() => Ok(()),
            Ok(_) => Err(format!("log_path {} is not a file", live.log_path)),
            Err(e) => Err(format!(
                "log file {} of a started container: {e}",
                live.log_path
            )),
        }
    }

    async fn judge_probe(&self, c: &Call) -> Result<(), String> {
        let m: cri::ExecSyncRequest = self.decode(c)?;
        let want: cri::ExecSyncResponse = self.recorded(c)?;
        let want_out = self.rw.text(&String::from_utf8_lossy(&want.stdout));
        let deadline = Instant::now() + PROBE_WAIT;
        loop {
            let r = with_deadline(m.clone(), c);
            let Some(live) = judge::code(&c.code, self.scope.rs().exec_sync(r).await)? else {
                return Ok(());
            };
            match judge::probe(&m.cmd, &want, &want_out, &live) {
                Ok(()) => return Ok(()),
                Err(e) if Instant::now() > deadline => return Err(e),
                Err(_) => {}
            }
            tokio::time::sleep(POLL).await;
        }
    }

    /// Describes a refused request the kubelet saw succeed: whether the refusal is
    /// InvalidArgument naming a field of the request, and what it left behind.
    pub async fn refusal(&self, rpc: &str, s: &tonic::Status, log: Option<&Path>) -> String {
        let mut out = format!("{rpc} refused: {}", status_text(s));
        if s.code() == Code::InvalidArgument {
            out.push_str(" (InvalidArgument)");
        }
        let mut left = self.listed_under_uid().await.unwrap_or_else(|e| vec![e]);
        let known: BTreeSet<String> = self
            .containers
            .values()
            .map(|k| format!("container {}", k.id))
            .chain(self.sandbox.iter().map(|(_, l)| format!("sandbox {l}")))
            .collect();
        left.retain(|l| !known.contains(l));
        if let Some(log) = log {
            let log = log.display().to_string();
            left.extend(
                host::processes_mentioning(&log)
                    .into_iter()
                    .map(|p| format!("process {p}")),
            );
        }
        left.extend(
            host::mounts_mentioning(&self.root.display().to_string())
                .into_iter()
                .map(|m| format!("mount {m}")),
        );
        if left.is_empty() {
            out.push_str("; nothing of it was left behind");
        } else {
            out.push_str(&format!("; {LEFT_BEHIND} {}", left.join("; ")));
        }
        out
    }
}

/// Recorded ids of containers the capture saw exit before any stop (init containers).
fn moves_on_by_itself(calls: &[Call]) -> BTreeSet<String> {
    let mut stopped = BTreeSet::new();
    let mut out = BTreeSet::new();
    for c in calls {
        let id = c.request.get("container_id").and_then(Value::as_str);
        match c.rpc.as_str() {
            "StopContainer" => stopped.extend(id.map(str::to_owned)),
            "StopPodSandbox" => break,
            "ContainerStatus" => {
                let exited = c
                    .response
                    .as_ref()
                    .and_then(|r| r.pointer("/status/state"))
                    .and_then(Value::as_str)
                    == Some("CONTAINER_EXITED");
                if let Some(id) = id.filter(|id| exited && !stopped.contains(*id)) {
                    out.insert(id.to_owned());
                }
            }
            _ => {}
        }
    }
    out
}

fn selects_uid(selector: Option<&std::collections::HashMap<String, String>>) -> bool {
    selector.is_some_and(|s| s.contains_key("io.kubernetes.pod.uid"))
}

/// `m` with the deadline the kubelet set for `c`.
fn with_deadline<T>(m: T, c: &Call) -> Request<T> {
    let mut r = Request::new(m);
    if let Some(t) = c.timeout_s {
        r.set_timeout(Duration::from_secs_f64(t));
    }
    r
}

/// A loopback TCP port free right now.
fn free_port() -> Result<u16, String> {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .map_err(|e| format!("finding a free port: {e}"))
}

fn ensure(cond: bool, what: impl FnOnce() -> String) -> Result<(), String> {
    crate::cases::ensure(cond, what)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn init_containers_move_on_by_themselves_and_others_do_not() {
        let calls = corpus::trace("shared-volume-static").expect("trace");
        let moved = moves_on_by_itself(&calls);
        assert_eq!(moved.len(), 1, "{moved:?}");
        let init = calls
            .iter()
            .find(|c| {
                c.rpc == "CreateContainer"
                    && c.request
                        .pointer("/config/metadata/name")
                        .and_then(Value::as_str)
                        == Some("init")
            })
            .and_then(|c| c.response.as_ref())
            .and_then(|r| r.get("container_id"))
            .and_then(Value::as_str)
            .expect("init's id");
        assert!(moved.contains(init));
        assert!(moves_on_by_itself(&corpus::trace("busybox-static").expect("trace")).is_empty());
    }
}
