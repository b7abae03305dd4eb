//! GetContainerEvents: the stream the kubelet's evented PLEG consumes.

use std::sync::Arc;
use std::time::Duration;

use crid_api::cri;

use super::container::CONTAINER_NEEDS;
use super::support::{SLEEP_SCRIPT, Scope, scoped};
use super::{Area, Case, CaseResult, ensure, status_text};
use crate::fixtures::image::{BUSYBOX, LATEST};

const WAIT: Duration = Duration::from_secs(20);

pub(super) fn cases() -> Vec<Case> {
    let cases = Area::Events
        .cases()
        .needs(CONTAINER_NEEDS)
        .timeout(Duration::from_secs(90));
    vec![cases.optional(
        "events/container-lifecycle",
        "cri:RuntimeService.GetContainerEvents#container_event_type",
        "GetContainerEvents streams CREATED, STARTED, STOPPED and DELETED for a container, in order (evented PLEG is a kubelet feature gate)",
        |ctx| Box::pin(scoped(ctx, "vl", lifecycle)),
    )]
}

async fn lifecycle(s: Arc<Scope>) -> CaseResult {
    let image = s.pulled(BUSYBOX, LATEST).await?;
    let (pod_id, pod) = s.pod().await?;
    let mut stream = s
        .rs()
        .get_container_events(cri::GetEventsRequest {})
        .await
        .map_err(|e| format!("GetContainerEvents: {}", status_text(&e)))?
        .into_inner();
    let config = s.container_config(&pod, &image, &["sh", "-c", SLEEP_SCRIPT]);
    let id = s.run(&pod_id, &pod, &config).await?;
    s.stop(&id, 10).await?;
    s.remove_container(&id).await?;
    use cri::ContainerEventType as T;
    let want = [
        T::ContainerCreatedEvent,
        T::ContainerStartedEvent,
        T::ContainerStoppedEvent,
        T::ContainerDeletedEvent,
    ];
    let mut seen = Vec::new();
    let deadline = tokio::time::Instant::now() + WAIT;
    while seen.len() < want.len() {
        let next = tokio::time::timeout_at(deadline, stream.message()).await;
        match next {
            Err(_) => break,
            Ok(Ok(None)) => return Err(format!("stream ended after {seen:?}")),
            Ok(Err(e)) => return Err(format!("stream error: {}", status_text(&e))),
            Ok(Ok(Some(ev))) if ev.container_id == id => {
                seen.push(
                    T::try_from(ev.container_event_type)
                        .map_err(|_| format!("unknown event type {}", ev.container_event_type))?,
                );
            }
            Ok(Ok(Some(_))) => {}
        }
    }
    ensure(seen == want, || {
        format!("events {seen:?}, expected {want:?}")
    })?;
    Ok(String::new())
}
