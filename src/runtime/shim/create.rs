//! Create: the FIFOs, the shim's start (or the pod's running shim), the task, and the
//! undoing of all of it when something fails.

use std::path::Path;

use containerd_shim_protos::api;

use super::attach::AttachHub;
use super::client::{CallError, ProcessRef, TaskClient};
use super::{ShimHandler, TaskRecord, io};
use crate::monitor::attach::StdinMode;
use crate::monitor::log::LogWriter;
use crate::runtime::RuntimeError;
use crate::runtime::oci::{CreateRequest, Created};

impl ShimHandler {
    /// See [`crate::runtime::RuntimeHandler::create`] of [`ShimHandler`].
    pub(super) async fn create_container(
        &self,
        req: &CreateRequest,
    ) -> Result<Created, RuntimeError> {
        let id = req.id.as_str();
        self.check_id(id)?;
        if self.load(id)?.is_some() {
            return Err(RuntimeError::Exists {
                handler: self.name.clone(),
                id: id.to_owned(),
            });
        }
        let fifos =
            io::FifoPair::make(&req.bundle, "shim").map_err(|e| self.io("create", id, e))?;
        let (stdout, stderr) = fifos.open().map_err(|e| self.io("create", id, e))?;
        let log = LogWriter::open(&req.log_path, req.log_max_size)
            .map_err(|e| self.io("create", id, e))?;
        match self.create_task(req, &fifos).await {
            Ok(Task {
                record,
                client,
                pid,
                stdin,
                process,
            }) => {
                let (reopen, requests) = tokio::sync::mpsc::unbounded_channel();
                self.log_reopens
                    .lock()
                    .unwrap_or_else(|p| p.into_inner())
                    .insert(id.to_owned(), reopen);
                let init = ProcessRef {
                    client: client.clone(),
                    id: id.to_owned(),
                    exec_id: String::new(),
                    timeout: self.timeout,
                };
                let hub = AttachHub::new(init, stdin, process.stdin, process.terminal);
                self.hubs
                    .lock()
                    .unwrap_or_else(|p| p.into_inner())
                    .insert(id.to_owned(), hub.clone());
                io::copy_to_log(id.to_owned(), (stdout, stderr), log, requests, Some(hub));
                let _ = std::fs::write(&req.pid_file, pid.to_string());
                self.watch_exit(id, &client, &record.exit_file);
                tracing::debug!(handler = %self.name, container = %id, pid, shim = %record.shim.address, "task created");
                Ok(Created {
                    pid: pid as i32,
                    monitor_pid: 0,
                })
            }
            Err(e) => {
                self.abandon(id).await;
                fifos.remove();
                Err(e)
            }
        }
    }

    /// Starts (or joins) the shim of `req` and creates the task in it.
    async fn create_task(
        &self,
        req: &CreateRequest,
        fifos: &io::FifoPair,
    ) -> Result<Task, RuntimeError> {
        let id = req.id.as_str();
        self.serve_events().await;
        let process = BundleProcess::of(&req.bundle);
        // cri:ContainerConfig#stdin: kept open (a reader blocks, as under containerd) by a
        // writer crid holds while the container lives; attached clients write to it.
        let (stdin_path, stdin) = if process.stdin != StdinMode::Closed {
            let path = req.bundle.join("shim-stdin");
            let writer = io::stdin_fifo(&path).map_err(|e| self.io("create", id, e))?;
            (Some(path), Some(writer))
        } else {
            (None, None)
        };
        let log_fifo = req.bundle.join("log");
        io::make_fifo(&log_fifo).map_err(|e| self.io("create", id, e))?;
        let shim_log = io::lasting_reader(&log_fifo).map_err(|e| self.io("create", id, e))?;
        let shim = self.launcher.start(id, &req.bundle).await?;
        let record = TaskRecord {
            shim,
            bundle: req.bundle.clone(),
            exit_file: req.exit_file.clone(),
        };
        // Saved before Create: a crid killed from here on finds the shim again.
        self.save(id, &record)?;
        let client = self
            .client(&record.shim)
            .await
            .map_err(|e| self.failed("connect", id, e))?;
        if let Ok(c) = client.connect_task(id, self.timeout).await {
            io::copy_shim_log(shim_log, req.bundle.join("shim.log"), c.shim_pid);
        }
        let create = api::CreateTaskRequest {
            id: id.to_owned(),
            bundle: req.bundle.display().to_string(),
            // With a terminal the shim holds the pty and copies it to stdout.
            terminal: process.terminal,
            stdin: stdin_path
                .map(|p| p.display().to_string())
                .unwrap_or_default(),
            stdout: fifos.stdout.display().to_string(),
            stderr: fifos.stderr.display().to_string(),
            ..Default::default()
        };
        let resp = client
            .create(&create, self.timeout)
            .await
            .map_err(|e| self.failed("create", id, e))?;
        Ok(Task {
            record,
            client,
            pid: resp.pid,
            stdin,
            process,
        })
    }

    /// Undoes a failed create: the task if the shim made it, the shim if it serves nothing.
    async fn abandon(&self, id: &str) {
        if let Ok(Some(record)) = self.load(id) {
            match self.client(&record.shim).await {
                Ok(c) => {
                    let killed = c
                        .kill(id, "", libc::SIGKILL as u32, true, self.timeout)
                        .await;
                    if let Err(CallError::Timeout { .. }) = killed {
                        // A shim that takes connections but answers nothing: clean up as
                        // after a dead one, without two more calls' worth of waiting.
                        self.drop_client(&record.shim.address).await;
                        let _ = self.launcher.delete(id, &record.bundle).await;
                    } else {
                        let _ = c.delete(id, "", self.timeout).await;
                        let _ = c.shutdown(id, self.timeout).await;
                        self.drop_client(&record.shim.address).await;
                    }
                }
                Err(_) => {
                    let _ = self.launcher.delete(id, &record.bundle).await;
                }
            }
        }
        self.forget(id);
    }
}

/// A task the shim created, with what crid keeps of it.
struct Task {
    record: TaskRecord,
    client: TaskClient,
    pid: u32,
    /// crid's end of the task's stdin FIFO, when its stdin is open.
    stdin: Option<tokio::net::unix::pipe::Sender>,
    process: BundleProcess,
}

/// What the bundle's config.json asks of the container's stdio.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct BundleProcess {
    /// `process.terminal`.
    terminal: bool,
    /// crid's stdin annotation (cri:ContainerConfig#stdin and #stdin_once).
    stdin: StdinMode,
}

impl BundleProcess {
    fn of(bundle: &Path) -> BundleProcess {
        let config = std::fs::read(bundle.join("config.json"))
            .ok()
            .and_then(|b| serde_json::from_slice::<serde_json::Value>(&b).ok())
            .unwrap_or_default();
        BundleProcess {
            terminal: config["process"]["terminal"].as_bool().unwrap_or(false),
            stdin: StdinMode::of_config(&config),
        }
    }
}
