//! Image volumes (KEP-4639): a Mount whose `image` names a pulled image (and no host
//! path) gives the container that image's filesystem, read-only, at container_path; with
//! `image_sub_path`, only that directory of it.

use std::collections::BTreeSet;
use std::sync::Arc;
use std::time::Duration;

use crid_api::cri;
use tonic::Code;

use super::container::CONTAINER_NEEDS;
use super::support::{SLEEP_SCRIPT, Scope, refused, scoped};
use super::{Area, Case, CaseResult, ensure};
use crate::fixtures::image::rootfs::{BASE_MARKER, IMAGE_MARKER, WHITED_OUT};
use crate::fixtures::image::{BUSYBOX, HTTPD, LATEST};

const CASE_TIMEOUT: Duration = Duration::from_secs(90);
/// Where the cases mount the volume.
const AT: &str = "/vol";

pub(super) fn cases() -> Vec<Case> {
    let cases = Area::Container
        .cases()
        .needs(CONTAINER_NEEDS)
        .timeout(CASE_TIMEOUT);
    vec![
        cases.required(
            "container/image-volume",
            "cri:RuntimeService.CreateContainer#config.mounts.image",
            "a Mount naming a pulled image (with the run's runtime handler) shows the image's layers merged, read-only, at container_path; ContainerStatus lists it with its image; after RemoveContainer no mount it made is left on the host",
            |ctx| Box::pin(scoped(ctx, "civ", image_volume)),
        ),
        cases.required(
            "container/image-volume-sub-path",
            "cri:RuntimeService.CreateContainer#config.mounts.image_sub_path",
            "image_sub_path mounts only that directory of the image; a sub path the image lacks, or one leaving it with `..`, is refused and leaves no container",
            |ctx| Box::pin(scoped(ctx, "cis", sub_path)),
        ),
        cases.required(
            "container/image-volume-refusals",
            "cri:RuntimeService.CreateContainer#config.mounts.image",
            "a Mount naming an image that is not pulled, or an unknown runtime handler for it, is refused naming the image or the handler, and leaves no container",
            |ctx| Box::pin(scoped(ctx, "cir", refusals)),
        ),
    ]
}

/// A Mount of `image` (with `handler`) at [`AT`], `sub` inside it.
fn volume(image: &str, handler: &str, sub: &str) -> cri::Mount {
    cri::Mount {
        container_path: AT.into(),
        readonly: true,
        image: Some(cri::ImageSpec {
            image: image.to_owned(),
            runtime_handler: handler.to_owned(),
            ..Default::default()
        }),
        image_sub_path: sub.to_owned(),
        ..Default::default()
    }
}

/// What identifies a filesystem in a mountinfo line, whichever namespace shows it: the
/// device (field 3) and what follows the ` - ` separator (type, source, super options).
fn filesystem_of(line: &str) -> Option<(String, String)> {
    let dev = line.split(' ').nth(2)?;
    let (_, fs) = line.split_once(" - ")?;
    Some((dev.to_owned(), fs.trim().to_owned()))
}

/// The host mount points (`/proc/self/mountinfo` of the harness) of filesystem `fs`. On an
/// endpoint of another host none shows, and the check that they are gone passes.
fn host_mounts_of(fs: &(String, String)) -> BTreeSet<String> {
    std::fs::read_to_string("/proc/self/mountinfo")
        .unwrap_or_default()
        .lines()
        .filter(|l| filesystem_of(l).as_ref() == Some(fs))
        .filter_map(|l| l.split(' ').nth(4).map(str::to_owned))
        .collect()
}

/// The pulled HTTPD fixture's reference as the kubelet passes it: PullImage's image_ref.
async fn volume_image(s: &Scope) -> Result<String, String> {
    let image = s.image(HTTPD, LATEST)?;
    s.pull_ref(&image, None).await
}

async fn image_volume(s: Arc<Scope>) -> CaseResult {
    let image_ref = volume_image(&s).await?;
    let busybox = s.pulled(BUSYBOX, LATEST).await?;
    let (pod_id, pod) = s.pod().await?;
    let mut config = s.container_config(&pod, &busybox, &["sh", "-c", SLEEP_SCRIPT]);
    config.mounts = vec![volume(&image_ref, &s.ctx.runtime_handler, "")];
    let id = s.create(&pod_id, &pod, &config).await?;
    s.start(&id).await?;
    // The image's own file, from its top layer; the base layer's; and the base layer's
    // file the top layer whites out: the layers are merged as for a root filesystem.
    let marker = s.sh(&id, &format!("cat {AT}{IMAGE_MARKER}")).await?;
    ensure(marker == HTTPD, || {
        format!("{AT}{IMAGE_MARKER} reads {marker:?}, expected {HTTPD:?}")
    })?;
    let layers = s
        .sh(
            &id,
            &format!("test -f {AT}{BASE_MARKER} && echo base; test -e {AT}{WHITED_OUT} && echo whited-out; true"),
        )
        .await?;
    ensure(layers == "base", || {
        format!(
            "in the volume: {layers:?}; expected the base layer's marker and no whited-out file"
        )
    })?;
    let (_, _, code) = s
        .exec(&id, &["sh", "-c", &format!("echo x > {AT}/written")], 10)
        .await?;
    ensure(code != 0, || {
        "writing into the image volume succeeded".into()
    })?;
    let status = s.container_status(&id).await?;
    let listed = status.mounts.iter().find(|m| m.container_path == AT);
    ensure(
        listed.is_some_and(|m| m.image.as_ref().is_some_and(|i| i.image == image_ref)),
        || {
            format!(
                "ContainerStatus mounts {:?} lack {AT} of image {image_ref}",
                status.mounts
            )
        },
    )?;
    // The volume's filesystem as the container sees it; the host's mounts of it (the
    // runtime's own, under its state directory) must go with the container.
    let line = s
        .sh(&id, &format!("grep ' {AT} ' /proc/self/mountinfo || true"))
        .await?;
    let fs = filesystem_of(&line)
        .ok_or_else(|| format!("no mountinfo line for {AT} in the container: {line:?}"))?;
    let on_host = host_mounts_of(&fs);
    s.stop(&id, 5).await?;
    s.remove_container(&id).await?;
    let left = host_mounts_of(&fs);
    ensure(left.is_empty(), || {
        format!(
            "the image volume's filesystem ({} {}) is still mounted on the host after RemoveContainer at {left:?}",
            fs.0, fs.1
        )
    })?;
    Ok(if on_host.is_empty() {
        "the volume's host mount is not visible from the harness; its removal was not checked"
            .into()
    } else {
        format!("host mounts of the volume removed: {on_host:?}")
    })
}

/// CreateContainer with `mount` in a busybox container of `pod`: must be refused, with a
/// message containing one of `names`, and leave no container. Returns the code.
async fn refused_mount(
    s: &Scope,
    (pod_id, pod): &(String, cri::PodSandboxConfig),
    mount: cri::Mount,
    names: &[&str],
) -> Result<Code, String> {
    let busybox = s.image(BUSYBOX, LATEST)?;
    let mut config = s.container_config(pod, &busybox, &["true"]);
    config.mounts = vec![mount.clone()];
    let (r, left) = s.create_refused(pod_id, pod, config).await?;
    let message = r
        .as_ref()
        .err()
        .map(|e| e.message().to_owned())
        .unwrap_or_default();
    let what = format!(
        "CreateContainer with image volume {:?} sub path {:?}",
        mount.image.as_ref().map(|i| (&i.image, &i.runtime_handler)),
        mount.image_sub_path
    );
    let code = refused(&what, r)?;
    ensure(names.iter().any(|n| message.contains(n)), || {
        format!("{what} refused with {code:?}, but the message names none of {names:?}: {message}")
    })?;
    ensure(left.is_empty(), || {
        format!("{what}: refused, but left containers {left:?}")
    })?;
    Ok(code)
}

async fn sub_path(s: Arc<Scope>) -> CaseResult {
    let image_ref = volume_image(&s).await?;
    let busybox = s.pulled(BUSYBOX, LATEST).await?;
    let pod = s.pod().await?;
    let handler = s.ctx.runtime_handler.clone();
    // etc/fixture holds the markers: only it shows, at the mount point.
    let mut config = s.container_config(&pod.1, &busybox, &["sh", "-c", SLEEP_SCRIPT]);
    config.mounts = vec![volume(&image_ref, &handler, "etc/fixture")];
    let id = s.create(&pod.0, &pod.1, &config).await?;
    s.start(&id).await?;
    let seen = s
        .sh(
            &id,
            &format!(
                "cat {AT}/image; test -e {AT}/bin && echo bin; test -e {AT}/etc && echo etc; true"
            ),
        )
        .await?;
    ensure(seen == HTTPD, || {
        format!(
            "with image_sub_path etc/fixture, {AT} shows {seen:?}; expected only the marker {HTTPD:?}"
        )
    })?;
    let missing = "etc/no-such-directory";
    let code = refused_mount(
        &s,
        &pod,
        volume(&image_ref, &handler, missing),
        &[missing, "image_sub_path"],
    )
    .await?;
    let escape = "etc/../../..";
    refused_mount(
        &s,
        &pod,
        volume(&image_ref, &handler, escape),
        &[escape, "image_sub_path"],
    )
    .await?;
    Ok(format!("missing sub path: {code:?}"))
}

async fn refusals(s: Arc<Scope>) -> CaseResult {
    let pod = s.pod().await?;
    s.pulled(BUSYBOX, LATEST).await?;
    let absent = s.image(HTTPD, &s.name("never-pushed"))?;
    let code = refused_mount(
        &s,
        &pod,
        volume(&absent, &s.ctx.runtime_handler, ""),
        &[&absent, "mounts.image"],
    )
    .await?;
    ensure(
        matches!(
            code,
            Code::NotFound | Code::FailedPrecondition | Code::InvalidArgument
        ),
        || format!("an image volume of an absent image answered {code:?}"),
    )?;
    let image_ref = volume_image(&s).await?;
    let bad = s.name("no-such-handler");
    let code = refused_mount(
        &s,
        &pod,
        volume(&image_ref, &bad, ""),
        &[&bad, "runtime_handler"],
    )
    .await?;
    ensure(
        matches!(code, Code::InvalidArgument | Code::NotFound),
        || format!("an image volume for an unknown runtime handler answered {code:?}"),
    )?;
    Ok(String::new())
}
