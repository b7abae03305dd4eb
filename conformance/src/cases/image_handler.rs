//! Images per runtime handler (KEP-4216, RuntimeClassInImageCriApi): ImageSpec's
//! runtime_handler in PullImage, ImageStatus, ListImages, StreamImages, RemoveImage and
//! CreateContainer. A handler the endpoint runs finds the images pulled for it and answers
//! with it in `Image.spec`; a handler it does not know is refused (InvalidArgument or
//! NotFound, naming the handler or the field) before anything is pulled or removed.

use std::sync::Arc;
use std::time::Duration;

use crid_api::cri;
use tonic::Code;

use super::support::{Scope, refused, scoped};
use super::{Area, Case, CaseResult, Needs, ensure, status_text};
use crate::fixtures::image::{BUSYBOX, LATEST};

/// The handler must be one the endpoint runs; nothing is run.
const HANDLER: Needs = Needs {
    root: false,
    runtime_handler: true,
    image: Some(BUSYBOX),
    not_ready_endpoint: false,
};
/// Containers too.
const RUN: Needs = Needs {
    root: true,
    runtime_handler: true,
    image: Some(BUSYBOX),
    not_ready_endpoint: false,
};
const CASE_TIMEOUT: Duration = Duration::from_secs(90);
/// The tag these cases pull: one no other case leaves behind.
const TAG: &str = "1.0";

pub(super) fn cases() -> Vec<Case> {
    let cases = Area::Image.cases().needs(HANDLER).timeout(CASE_TIMEOUT);
    vec![
        cases.required(
            "image/runtime-handler-known",
            "cri:ImageService.PullImage#image.runtime_handler",
            "with the run's runtime handler in ImageSpec.runtime_handler, PullImage pulls, ImageStatus and ListImages filtered by it find the image and name the handler in spec.runtime_handler, and RemoveImage removes it",
            |ctx| Box::pin(scoped(ctx, "ihk", known)),
        ),
        cases.required(
            "image/runtime-handler-unknown-refused",
            "cri:ImageService.PullImage#image.runtime_handler",
            "an unknown runtime handler in ImageSpec is refused by PullImage (nothing is pulled), ImageStatus, ListImages and RemoveImage (the image stays), naming the handler",
            |ctx| Box::pin(scoped(ctx, "ihu", unknown)),
        ),
        cases.optional(
            "image/runtime-handler-stream",
            "cri:ImageService.StreamImages#filter.image.runtime_handler",
            "StreamImages filtered by the run's runtime handler streams a pulled image with the handler in spec.runtime_handler; an unknown handler is refused",
            |ctx| Box::pin(scoped(ctx, "ihs", stream)),
        ),
        cases.needs(RUN).required(
            "image/runtime-handler-create-container",
            "cri:RuntimeService.CreateContainer#config.image.runtime_handler",
            "CreateContainer with the run's runtime handler in config.image runs the container and ContainerStatus names the handler; an unknown handler is refused and leaves no container",
            |ctx| Box::pin(scoped(ctx, "ihc", create_container)),
        ),
    ]
}

/// An ImageSpec for `image` asking for `handler`.
fn spec_for(image: &str, handler: &str) -> cri::ImageSpec {
    cri::ImageSpec {
        image: image.to_owned(),
        runtime_handler: handler.to_owned(),
        ..Default::default()
    }
}

fn filter_for(image: &str, handler: &str) -> Option<cri::ImageFilter> {
    Some(cri::ImageFilter {
        image: Some(spec_for(image, handler)),
    })
}

/// ImageStatus of `image` for `handler`.
async fn status_for(s: &Scope, image: &str, handler: &str) -> Result<Option<cri::Image>, String> {
    s.is()
        .image_status(cri::ImageStatusRequest {
            image: Some(spec_for(image, handler)),
            verbose: false,
        })
        .await
        .map(|r| r.into_inner().image)
        .map_err(|e| {
            format!(
                "ImageStatus({image}, handler {handler:?}): {}",
                status_text(&e)
            )
        })
}

/// The image's spec names `handler` (runtimes answer with the handler they were asked
/// about; an empty one is the default, which they may also spell out).
fn names_handler(img: &cri::Image, handler: &str) -> Result<(), String> {
    let got = img
        .spec
        .as_ref()
        .map(|s| s.runtime_handler.as_str())
        .unwrap_or_default();
    ensure(handler.is_empty() || got == handler, || {
        format!(
            "image {} has spec.runtime_handler {got:?}, asked about {handler:?}",
            img.id
        )
    })
}

/// Judges the refusal of an unknown handler: InvalidArgument or NotFound (never OK, nor
/// Unimplemented), with a message naming the handler or the field.
fn refused_handler<T>(
    rpc: &str,
    r: Result<tonic::Response<T>, tonic::Status>,
    handler: &str,
) -> Result<(), String> {
    let message = r.as_ref().err().map(|e| e.message().to_owned());
    let code = refused(rpc, r)?;
    let message = message.unwrap_or_default();
    ensure(
        matches!(code, Code::InvalidArgument | Code::NotFound),
        || format!("{rpc} answered {code:?}: {message}; expected InvalidArgument or NotFound"),
    )?;
    ensure(
        message.contains(handler) || message.contains("runtime_handler"),
        || {
            format!(
                "{rpc} refused with {code:?} but the message names neither {handler} nor runtime_handler: {message}"
            )
        },
    )
}

async fn known(s: Arc<Scope>) -> CaseResult {
    let handler = s.ctx.runtime_handler.clone();
    let image = s.image(BUSYBOX, TAG)?;
    s.track_image(&image);
    let image_ref = s
        .is()
        .pull_image(cri::PullImageRequest {
            image: Some(spec_for(&image, &handler)),
            auth: None,
            sandbox_config: None,
        })
        .await
        .map_err(|e| {
            format!(
                "PullImage({image}, handler {handler:?}): {}",
                status_text(&e)
            )
        })?
        .into_inner()
        .image_ref;
    ensure(!image_ref.is_empty(), || "image_ref is empty".into())?;
    let img = status_for(&s, &image, &handler).await?.ok_or_else(|| {
        format!("ImageStatus({image}, handler {handler:?}) finds nothing after the pull")
    })?;
    ensure(img.repo_tags.contains(&image), || {
        format!("repo_tags {:?} lack {image}", img.repo_tags)
    })?;
    names_handler(&img, &handler)?;
    let listed = s
        .is()
        .list_images(cri::ListImagesRequest {
            filter: filter_for("", &handler),
        })
        .await
        .map_err(|e| format!("ListImages(handler {handler:?}): {}", status_text(&e)))?
        .into_inner()
        .images;
    let found = listed
        .iter()
        .find(|i| i.id == img.id)
        .ok_or_else(|| format!("ListImages(handler {handler:?}) lacks {} ({image})", img.id))?;
    names_handler(found, &handler)?;
    s.is()
        .remove_image(cri::RemoveImageRequest {
            image: Some(spec_for(&image, &handler)),
        })
        .await
        .map_err(|e| {
            format!(
                "RemoveImage({image}, handler {handler:?}): {}",
                status_text(&e)
            )
        })?;
    let left = status_for(&s, &image, &handler).await?;
    ensure(left.is_none(), || {
        format!("{image} survives RemoveImage with handler {handler:?}")
    })?;
    Ok(format!("handler {handler:?}"))
}

async fn unknown(s: Arc<Scope>) -> CaseResult {
    let bad = s.name("no-such-handler");
    let image = s.image(BUSYBOX, TAG)?;
    let pulled = s
        .is()
        .pull_image(cri::PullImageRequest {
            image: Some(spec_for(&image, &bad)),
            auth: None,
            sandbox_config: None,
        })
        .await;
    if pulled.is_ok() {
        s.track_image(&image);
    }
    refused_handler("PullImage", pulled, &bad)?;
    ensure(s.image_status(&image).await?.is_none(), || {
        format!("the refused PullImage left {image} in the store")
    })?;
    // With the image present, the other RPCs must refuse rather than answer for it.
    let present = s.pulled(BUSYBOX, TAG).await?;
    let status = s
        .is()
        .image_status(cri::ImageStatusRequest {
            image: Some(spec_for(&present, &bad)),
            verbose: false,
        })
        .await;
    refused_handler("ImageStatus", status, &bad)?;
    let listed = s
        .is()
        .list_images(cri::ListImagesRequest {
            filter: filter_for("", &bad),
        })
        .await;
    refused_handler("ListImages", listed, &bad)?;
    let removed = s
        .is()
        .remove_image(cri::RemoveImageRequest {
            image: Some(spec_for(&present, &bad)),
        })
        .await;
    refused_handler("RemoveImage", removed, &bad)?;
    ensure(s.image_status(&present).await?.is_some(), || {
        format!("the refused RemoveImage removed {present}")
    })?;
    Ok(String::new())
}

async fn stream(s: Arc<Scope>) -> CaseResult {
    let handler = s.ctx.runtime_handler.clone();
    let image = s.pulled(BUSYBOX, TAG).await?;
    let id = s
        .image_status(&image)
        .await?
        .ok_or_else(|| format!("ImageStatus({image}) finds nothing after the pull"))?
        .id;
    let mut st = s
        .is()
        .stream_images(cri::StreamImagesRequest {
            filter: filter_for("", &handler),
        })
        .await
        .map_err(|e| format!("StreamImages(handler {handler:?}): {}", status_text(&e)))?
        .into_inner();
    let mut found = None;
    while let Some(batch) = st
        .message()
        .await
        .map_err(|e| format!("StreamImages(handler {handler:?}): {}", status_text(&e)))?
    {
        found = found.or_else(|| batch.images.into_iter().find(|i| i.id == id));
    }
    let found =
        found.ok_or_else(|| format!("StreamImages(handler {handler:?}) lacks {id} ({image})"))?;
    names_handler(&found, &handler)?;
    let bad = s.name("no-such-handler");
    let refusal = match s
        .is()
        .stream_images(cri::StreamImagesRequest {
            filter: filter_for("", &bad),
        })
        .await
    {
        // A server may report the refusal as the stream's first message.
        Ok(r) => match r.into_inner().message().await {
            Ok(_) => Ok(tonic::Response::new(())),
            Err(e) => Err(e),
        },
        Err(e) => Err(e),
    };
    refused_handler("StreamImages", refusal, &bad)?;
    Ok(String::new())
}

async fn create_container(s: Arc<Scope>) -> CaseResult {
    let handler = s.ctx.runtime_handler.clone();
    let image = s.pulled(BUSYBOX, LATEST).await?;
    let (pod_id, pod) = s.pod().await?;
    // The unknown handler first: a runtime that drops the field fails here, whichever
    // handler the run names.
    let bad = s.name("no-such-handler");
    let mut config = s.container_config(&pod, &image, &["true"]);
    if let Some(i) = config.image.as_mut() {
        i.runtime_handler = bad.clone();
    }
    let (r, left) = s.create_refused(&pod_id, &pod, config).await?;
    refused_handler("CreateContainer", r, &bad)?;
    ensure(left.is_empty(), || {
        format!("the refused CreateContainer left containers {left:?}")
    })?;
    let mut config = s.container_config(&pod, &image, &["true"]);
    if let Some(i) = config.image.as_mut() {
        i.runtime_handler = handler.clone();
    }
    let id = s.create(&pod_id, &pod, &config).await?;
    s.start(&id).await?;
    let st = s
        .wait_state(
            &id,
            cri::ContainerState::ContainerExited,
            Duration::from_secs(20),
        )
        .await?;
    ensure(st.exit_code == 0, || {
        format!("`true` exited {}", st.exit_code)
    })?;
    let status = s.container_status(&id).await?;
    let got = status
        .image
        .as_ref()
        .map(|i| i.runtime_handler.clone())
        .unwrap_or_default();
    ensure(handler.is_empty() || got == handler, || {
        format!("ContainerStatus image.runtime_handler {got:?}, created with {handler:?}")
    })?;
    Ok(format!("handler {handler:?}"))
}
