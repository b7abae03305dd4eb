//! The API surface: every RPC answers, and requests without required fields are refused.

use std::time::Duration;

use crid_api::cri;
use crid_api::{ImageServiceClient, RuntimeServiceClient};
use tonic::Code;

use super::{Area, Case, CaseResult, Ctx, ensure};

/// How long one probe of an RPC may take before a unary RPC counts as hung.
const PROBE_LIMIT: Duration = Duration::from_secs(10);
/// A server stream that stays open this long without a message is a live stream.
const STREAM_GRACE: Duration = Duration::from_secs(2);

pub(super) fn cases() -> Vec<Case> {
    let cases = Area::ApiSurface.cases();
    vec![
        cases.required(
            "api-surface/every-rpc-answers",
            "grpc:status-codes#UNIMPLEMENTED",
            "each of the 41 runtime.v1 RPCs answers with a status (UNIMPLEMENTED when not served), none hangs",
            |ctx| Box::pin(every_rpc_answers(ctx)),
        ),
        cases.required(
            "api-surface/run-pod-sandbox-requires-config",
            "cri:RuntimeService.RunPodSandbox#config",
            "RunPodSandbox without a config is refused",
            |ctx| Box::pin(run_pod_sandbox_requires_config(ctx)),
        ),
        cases.required(
            "api-surface/create-container-requires-config",
            "cri:RuntimeService.CreateContainer#config",
            "CreateContainer without a pod or config is refused",
            |ctx| Box::pin(create_container_requires_config(ctx)),
        ),
        cases.required(
            "api-surface/pull-image-requires-image",
            "cri:ImageService.PullImage#image",
            "PullImage without an image is refused",
            |ctx| Box::pin(pull_image_requires_image(ctx)),
        ),
    ]
}

async fn every_rpc_answers(ctx: Ctx) -> CaseResult {
    let all = crid_api::RUNTIME_SERVICE_RPCS
        .iter()
        .map(|m| (crid_api::RUNTIME_SERVICE, *m))
        .chain(
            crid_api::IMAGE_SERVICE_RPCS
                .iter()
                .map(|m| (crid_api::IMAGE_SERVICE, *m)),
        );
    let mut unimplemented = Vec::new();
    let mut hung = Vec::new();
    for (service, method) in all {
        let streaming = crid_api::SERVER_STREAMING_RPCS.contains(&method);
        let path = crid_api::rpc_path(service, method);
        let call =
            crid_api::client::call_with_default_request(ctx.channel.clone(), &path, streaming);
        let limit = if streaming { STREAM_GRACE } else { PROBE_LIMIT };
        match tokio::time::timeout(limit, call).await {
            Err(_) if streaming => {} // An open stream with nothing to say yet: served.
            Err(_) => hung.push(method),
            Ok(Err(s)) if s.code() == Code::Unimplemented => unimplemented.push(method),
            Ok(_) => {}
        }
    }
    ensure(hung.is_empty(), || {
        format!("no answer within {PROBE_LIMIT:?} from: {}", hung.join(", "))
    })?;
    let served = crid_api::RUNTIME_SERVICE_RPCS.len() + crid_api::IMAGE_SERVICE_RPCS.len()
        - unimplemented.len();
    Ok(if unimplemented.is_empty() {
        format!("all {served} RPCs served")
    } else {
        format!(
            "{served} served; UNIMPLEMENTED: {}",
            unimplemented.join(", ")
        )
    })
}

/// A refusal is an error status judging the request; OK means the endpoint pretended to do
/// something, and Unimplemented means it never looked at the request.
fn refused<T>(rpc: &str, result: Result<tonic::Response<T>, tonic::Status>) -> CaseResult {
    match result {
        Ok(_) => Err(format!(
            "{rpc} accepted a request without its required field"
        )),
        Err(s) if s.code() == Code::Unimplemented => Err(format!(
            "{rpc} is not served ({}), so the missing field was never judged",
            super::status_text(&s)
        )),
        Err(s) => Ok(format!("{:?}", s.code())),
    }
}

async fn run_pod_sandbox_requires_config(ctx: Ctx) -> CaseResult {
    let r = RuntimeServiceClient::new(ctx.channel.clone())
        .run_pod_sandbox(cri::RunPodSandboxRequest::default())
        .await;
    refused("RunPodSandbox", r)
}

async fn create_container_requires_config(ctx: Ctx) -> CaseResult {
    let r = RuntimeServiceClient::new(ctx.channel.clone())
        .create_container(cri::CreateContainerRequest::default())
        .await;
    refused("CreateContainer", r)
}

async fn pull_image_requires_image(ctx: Ctx) -> CaseResult {
    let r = ImageServiceClient::new(ctx.channel.clone())
        .pull_image(cri::PullImageRequest::default())
        .await;
    refused("PullImage", r)
}
