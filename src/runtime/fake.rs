//! A recording runtime handler for unit tests. It keeps a model of the containers it
//! holds, writes an exit record when a container's init would die (as crid-monitor does),
//! and fails any named operation on demand.

use std::collections::{BTreeMap, BTreeSet};
use std::path::PathBuf;
use std::sync::Mutex;
use std::time::Duration;

use super::RuntimeError;
use super::handler::{Features, RuntimeHandler};
use super::interactive::{Interactive, Streams};
use super::oci::{CreateRequest, Created, ExecOutput, State};
use crate::config::RuntimeKind;
use crate::monitor::exit::{self, ExitRecord};
use crate::spec::oci::{Process, Resources};

#[derive(Debug, Clone)]
struct Held {
    status: &'static str,
    exit_file: PathBuf,
    pid: i32,
}

/// The fake runtime.
#[derive(Debug)]
pub struct FakeRuntime {
    name: String,
    held: Mutex<BTreeMap<String, Held>>,
    calls: Mutex<Vec<String>>,
    fail: Mutex<BTreeSet<&'static str>>,
    /// Signals the containers' processes ignore (a process that traps SIGTERM).
    ignored: Mutex<BTreeSet<String>>,
    /// Whether every pod needs an infra container (a sandboxed runtime).
    needs_infra: std::sync::atomic::AtomicBool,
    /// What the handler reports it supports.
    features: Mutex<Features>,
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

impl FakeRuntime {
    /// A fake handler called `name`.
    pub fn new(name: &str) -> Self {
        FakeRuntime {
            name: name.to_owned(),
            held: Mutex::default(),
            calls: Mutex::default(),
            fail: Mutex::default(),
            ignored: Mutex::default(),
            needs_infra: Default::default(),
            features: Mutex::default(),
        }
    }

    /// Sets what the handler reports it supports.
    pub fn set_features(&self, features: Features) {
        *lock(&self.features) = features;
    }

    /// Makes the handler ask for an infra container in every pod, as runsc does.
    pub fn needs_infra_always(&self, on: bool) {
        self.needs_infra
            .store(on, std::sync::atomic::Ordering::SeqCst);
    }

    /// Makes every later `op` (`create`, `start`, `kill`, `delete`, ...) fail.
    pub fn fail(&self, op: &'static str) {
        lock(&self.fail).insert(op);
    }

    /// Lets `op` succeed again.
    pub fn heal(&self, op: &'static str) {
        lock(&self.fail).remove(op);
    }

    /// Containers' processes ignore `signal` from now on.
    pub fn ignore(&self, signal: &str) {
        lock(&self.ignored).insert(signal.to_owned());
    }

    /// The calls so far, as `op id [args]`.
    pub fn calls(&self) -> Vec<String> {
        lock(&self.calls).clone()
    }

    /// The IDs of the containers the runtime holds.
    pub fn containers(&self) -> Vec<String> {
        lock(&self.held).keys().cloned().collect()
    }

    /// Container `id`'s init exits with `code` (it ends by itself).
    pub fn exit(&self, id: &str, code: i32) {
        let mut held = lock(&self.held);
        if let Some(h) = held.get_mut(id) {
            Self::die(h, code);
        }
    }

    fn die(h: &mut Held, code: i32) {
        if h.status == "stopped" {
            return;
        }
        h.status = "stopped";
        let record = ExitRecord {
            exit_code: code,
            exited_at_ns: crate::state::now_ns(),
            oom_killed: false,
        };
        if let Err(e) = exit::write(&h.exit_file, &record) {
            tracing::error!("fake runtime: writing the exit file: {e}");
        }
    }

    fn call(&self, op: &'static str, id: &str, args: &str) -> Result<(), RuntimeError> {
        lock(&self.calls).push(format!("{op} {id}{args}"));
        if lock(&self.fail).contains(op) {
            return Err(RuntimeError::Command {
                handler: self.name.clone(),
                command: op,
                id: id.to_owned(),
                status: "exit status: 1".into(),
                stderr: format!("injected failure of {op}"),
            });
        }
        Ok(())
    }
}

#[async_trait::async_trait]
impl RuntimeHandler for FakeRuntime {
    fn name(&self) -> &str {
        &self.name
    }

    fn kind(&self) -> RuntimeKind {
        RuntimeKind::Oci
    }

    fn features(&self) -> Features {
        *lock(&self.features)
    }

    fn needs_infra(&self) -> bool {
        self.needs_infra.load(std::sync::atomic::Ordering::SeqCst)
    }

    async fn create(&self, req: &CreateRequest) -> Result<Created, RuntimeError> {
        self.call("create", &req.id, "")?;
        let mut held = lock(&self.held);
        if held.contains_key(&req.id) {
            return Err(RuntimeError::Exists {
                handler: self.name.clone(),
                id: req.id.clone(),
            });
        }
        let pid = 1000 + held.len() as i32;
        held.insert(
            req.id.clone(),
            Held {
                status: "created",
                exit_file: req.exit_file.clone(),
                pid,
            },
        );
        // No monitor process: exits arrive only through the exit file.
        Ok(Created {
            pid,
            monitor_pid: 0,
        })
    }

    async fn start(&self, id: &str) -> Result<(), RuntimeError> {
        self.call("start", id, "")?;
        match lock(&self.held).get_mut(id) {
            Some(h) if h.status == "created" => {
                h.status = "running";
                Ok(())
            }
            _ => Err(RuntimeError::Command {
                handler: self.name.clone(),
                command: "start",
                id: id.to_owned(),
                status: "exit status: 1".into(),
                stderr: "container is not created".into(),
            }),
        }
    }

    async fn state(&self, id: &str) -> Result<Option<State>, RuntimeError> {
        self.call("state", id, "")?;
        Ok(lock(&self.held).get(id).map(|h| State {
            status: h.status.to_owned(),
            pid: if h.status == "stopped" { 0 } else { h.pid },
            bundle: PathBuf::new(),
        }))
    }

    async fn kill(&self, id: &str, signal: &str, all: bool) -> Result<(), RuntimeError> {
        self.call(
            "kill",
            id,
            &format!(" {signal}{}", if all { " --all" } else { "" }),
        )?;
        let ignored = lock(&self.ignored).contains(signal);
        if let Some(h) = lock(&self.held).get_mut(id)
            && !ignored
            && h.status == "running"
        {
            let code = if signal == "KILL" { 137 } else { 143 };
            Self::die(h, code);
        }
        Ok(())
    }

    async fn delete(&self, id: &str, force: bool) -> Result<(), RuntimeError> {
        self.call("delete", id, if force { " --force" } else { "" })?;
        lock(&self.held).remove(id);
        Ok(())
    }

    async fn exec(
        &self,
        id: &str,
        process: &Process,
        _timeout: Option<Duration>,
    ) -> Result<ExecOutput, RuntimeError> {
        self.call("exec", id, &format!(" {}", process.args.join(" ")))?;
        Ok(ExecOutput {
            stdout: process.args.join(" ").into_bytes(),
            ..Default::default()
        })
    }

    async fn exec_interactive(
        &self,
        id: &str,
        _process: &Process,
        _streams: Streams,
    ) -> Result<Interactive, RuntimeError> {
        self.call("exec_interactive", id, "")?;
        Err(RuntimeError::NotOci {
            handler: self.name.clone(),
        })
    }

    async fn update(&self, id: &str, _resources: &Resources) -> Result<(), RuntimeError> {
        self.call("update", id, "")
    }
}
