//! The events sink: what a shim posts to containerd's ttrpc address (`TTRPC_ADDRESS`,
//! service `containerd.services.events.ttrpc.v1.Events`), served by crid so that shims
//! neither retry their posts nor linger before exiting. Exits come from the task API's
//! Wait; of the events only `/tasks/oom` is kept: it marks the container OOM-killed
//! (`<state dir>/<id>.oom`), which its exit record then says.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use containerd_shim_protos::events::task::TaskOOM;
use containerd_shim_protos::protobuf::Message;
use containerd_shim_protos::protobuf::well_known_types::empty::Empty;
use containerd_shim_protos::shim::events::ForwardRequest;
use containerd_shim_protos::shim_async::{Events, create_events};
use containerd_shim_protos::ttrpc;
use containerd_shim_protos::ttrpc::asynchronous::{Server, TtrpcContext};

/// containerd's topic of an OOM kill.
pub const OOM_TOPIC: &str = "/tasks/oom";

/// Where the OOM mark of container `id` lives.
pub fn oom_mark(state_dir: &Path, id: &str) -> PathBuf {
    state_dir.join(format!("{id}.oom"))
}

struct Sink {
    state_dir: PathBuf,
}

#[async_trait::async_trait]
impl Events for Sink {
    async fn forward(&self, _ctx: &TtrpcContext, req: ForwardRequest) -> ttrpc::Result<Empty> {
        if let Some(envelope) = req.envelope.as_ref() {
            tracing::debug!(topic = %envelope.topic, "shim event");
            if envelope.topic == OOM_TOPIC
                && let Some(any) = envelope.event.as_ref()
                && let Ok(oom) = TaskOOM::parse_from_bytes(&any.value)
                && is_id(&oom.container_id)
            {
                tracing::info!(container = %oom.container_id, "the shim reports an OOM kill");
                let _ = std::fs::write(oom_mark(&self.state_dir, &oom.container_id), b"");
            }
        }
        Ok(Empty::new())
    }
}

fn is_id(id: &str) -> bool {
    !id.is_empty()
        && !id.starts_with('.')
        && id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"_+-.".contains(&b))
}

/// A running events server; stops when dropped. (In a mutex: ttrpc's server is not Sync.)
pub struct EventServer(#[allow(dead_code)] std::sync::Mutex<Server>);

impl std::fmt::Debug for EventServer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("EventServer")
    }
}

/// Serves the events API on the unix socket `socket`, marking OOM kills in `state_dir`.
pub async fn serve(socket: &Path, state_dir: &Path) -> Result<EventServer, String> {
    std::fs::create_dir_all(state_dir).map_err(|e| format!("{}: {e}", state_dir.display()))?;
    // A socket left by an earlier crid.
    let _ = std::fs::remove_file(socket);
    let sink = Arc::new(Sink {
        state_dir: state_dir.to_path_buf(),
    });
    let mut server = Server::new()
        .bind(&format!("unix://{}", socket.display()))
        .map_err(|e| format!("binding {}: {e}", socket.display()))?
        .register_service(create_events(sink));
    server
        .start()
        .await
        .map_err(|e| format!("serving {}: {e}", socket.display()))?;
    Ok(EventServer(std::sync::Mutex::new(server)))
}
