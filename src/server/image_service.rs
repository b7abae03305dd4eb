//! ImageService: thin handlers over [`ImageService`](crate::image::ImageService).

use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};

use crid_api::runtime::v1 as cri;
use tonic::{Request, Response, Status};

use super::error::image_status;
use super::macros::{BoxStream, batched, cri_service};
use crate::daemon::Daemon;
use crate::image::registry::Credentials;
use crate::image::{ImageError, ImageRecord, ImageService, ImageUsers, user_of};

/// The ImageService endpoint.
#[derive(Clone)]
pub struct ImageApi {
    daemon: Arc<Daemon>,
    images: Arc<ImageService>,
    users: Arc<dyn ImageUsers>,
}

impl std::fmt::Debug for ImageApi {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ImageApi")
            .field("images", &self.images)
            .finish_non_exhaustive()
    }
}

impl ImageApi {
    /// Serves ImageService from `images`; `users` says which images containers use.
    pub fn new(daemon: Arc<Daemon>, images: Arc<ImageService>, users: Arc<dyn ImageUsers>) -> Self {
        Self {
            daemon,
            images,
            users,
        }
    }

    /// cri:ImageSpec#runtime_handler: crid keeps one image store for every handler, so an
    /// image pulled for one is usable by all. Empty (the default) or a configured handler
    /// is accepted and returned as given, to be echoed in `Image.spec`; an unknown one is
    /// InvalidArgument naming `field`, before anything is pulled, listed or removed.
    fn handler(
        &self,
        spec: Option<&cri::ImageSpec>,
        field: &'static str,
    ) -> Result<String, Status> {
        let requested = spec.map(|s| s.runtime_handler.clone()).unwrap_or_default();
        match self.daemon.runtimes().check_known(&requested) {
            Ok(()) => Ok(requested),
            Err(why) => Err(image_status(&ImageError::InvalidArgument {
                field,
                reason: format!("{why}; images are pulled for configured handlers only"),
            })),
        }
    }

    fn listed(&self, filter: Option<cri::ImageFilter>) -> Result<Vec<cri::Image>, Status> {
        let spec = filter.and_then(|f| f.image);
        // cri:ImageFilter#image.runtime_handler: the images usable by that handler, which
        // in one shared store are all of them.
        let handler = self.handler(spec.as_ref(), "filter.image.runtime_handler")?;
        let wanted = spec.map(|s| s.image).filter(|s| !s.is_empty());
        let records = match wanted {
            // cri:ImageService.ListImages#filter — only the image the spec names.
            Some(image) => self
                .images
                .find(&image, "filter.image.image")
                .map_err(|e| image_status(&e))?
                .into_iter()
                .collect(),
            None => self.images.list(),
        };
        Ok(records.iter().map(|r| to_cri(r, &handler)).collect())
    }
}

/// A stored image as CRI's `Image`: `id` is the config digest, `spec.image` the same ID,
/// `spec.runtime_handler` the handler the caller asked about (empty: the default).
fn to_cri(r: &ImageRecord, handler: &str) -> cri::Image {
    let (uid, username) = user_of(&r.user);
    cri::Image {
        id: r.id.clone(),
        repo_tags: r
            .repo_tags
            .iter()
            .take(if crate::faults::on(crate::faults::Fault::ImageOneTag) {
                1
            } else {
                usize::MAX
            })
            .cloned()
            .collect(),
        repo_digests: r.repo_digests.clone(),
        size: r.size,
        uid: uid
            .filter(|_| !crate::faults::on(crate::faults::Fault::ImageStatusDropsUid))
            .map(|value| cri::Int64Value { value }),
        username,
        spec: Some(cri::ImageSpec {
            image: r.id.clone(),
            runtime_handler: handler.to_owned(),
            ..Default::default()
        }),
        pinned: false,
    }
}

fn image_field(spec: Option<&cri::ImageSpec>) -> Result<String, Status> {
    match spec.map(|s| s.image.clone()) {
        Some(i) if !i.trim().is_empty() => Ok(i),
        _ => Err(image_status(&ImageError::InvalidArgument {
            field: "image.image",
            reason: "must name an image".to_owned(),
        })),
    }
}

fn usage(ts: i64, mount: &str, u: crate::storage::usage::Usage) -> cri::FilesystemUsage {
    cri::FilesystemUsage {
        timestamp: ts,
        fs_id: Some(cri::FilesystemIdentifier {
            mountpoint: mount.to_owned(),
        }),
        used_bytes: Some(cri::UInt64Value { value: u.bytes }),
        inodes_used: Some(cri::UInt64Value { value: u.inodes }),
    }
}

cri_service! {
    impl cri::image_service_server::ImageService => ImageApi, service "ImageService" {
        // cri:ImageService.ListImages: every image, or the one filter.image names.
        async fn list_images(&self, request: Request<cri::ListImagesRequest>) -> Result<Response<cri::ListImagesResponse>, Status> {
            let images = self.listed(request.into_inner().filter)?;
            Ok(Response::new(cri::ListImagesResponse { images }))
        }

        // cri:ImageService.ImageStatus: image nil (not an error) when absent; verbose adds
        // info["info"], JSON with the image config and the manifest digest.
        async fn image_status(&self, request: Request<cri::ImageStatusRequest>) -> Result<Response<cri::ImageStatusResponse>, Status> {
            let req = request.into_inner();
            let image = image_field(req.image.as_ref())?;
            let handler = self.handler(req.image.as_ref(), "image.runtime_handler")?;
            let Some(record) = self.images.find(&image, "image.image").map_err(|e| image_status(&e))? else {
                return if crate::faults::on(crate::faults::Fault::ImageStatusAbsentNotFound) { Err(Status::not_found(format!("image {image}: not found"))) } else { Ok(Response::new(cri::ImageStatusResponse::default())) };
            };
            let mut info = std::collections::HashMap::new();
            if req.verbose {
                info.insert("info".to_owned(), self.images.verbose_info(&record).map_err(|e| image_status(&e))?);
            }
            Ok(Response::new(cri::ImageStatusResponse { image: Some(to_cri(&record, &handler)), info }))
        }

        // cri:ImageService.PullImage: returns the image ID (config digest) as image_ref.
        async fn pull_image(&self, request: Request<cri::PullImageRequest>) -> Result<Response<cri::PullImageResponse>, Status> {
            let req = request.into_inner();
            if req.image.is_none() && crate::faults::on(crate::faults::Fault::PullWithoutImageOk) {
                return Ok(Response::new(cri::PullImageResponse::default()));
            }
            let image = image_field(req.image.as_ref())?;
            self.handler(req.image.as_ref(), "image.runtime_handler")?;
            let creds = match req.auth {
                Some(a) => Credentials::from_auth_config(&a.username, &a.password, &a.auth, &a.identity_token, &a.registry_token)
                    .map_err(|e| image_status(&e))?,
                None => Credentials::None,
            };
            let id = self.images.pull(&image, creds).await.map_err(|e| image_status(&e))?;
            Ok(Response::new(cri::PullImageResponse { image_ref: if crate::faults::on(crate::faults::Fault::ImageRefIsTag) { image } else { id } }))
        }

        // cri:ImageService.RemoveImage: by ID, tag or digest; all tags go; absent is OK.
        async fn remove_image(&self, request: Request<cri::RemoveImageRequest>) -> Result<Response<cri::RemoveImageResponse>, Status> {
            let req = request.into_inner();
            let image = image_field(req.image.as_ref())?;
            // The store is shared: removing the image for one handler removes it for all.
            self.handler(req.image.as_ref(), "image.runtime_handler")?;
            self.images.remove(&image, self.users.as_ref()).await.map_err(|e| image_status(&e))?;
            Ok(Response::new(cri::RemoveImageResponse {}))
        }

        // cri:ImageService.ImageFsInfo: bytes and inodes of the image store and of container
        // writable layers, with the storage root's mount point.
        async fn image_fs_info(&self, _request: Request<cri::ImageFsInfoRequest>) -> Result<Response<cri::ImageFsInfoResponse>, Status> {
            let fs = self.images.fs_info().await.map_err(|e| image_status(&e))?;
            let ts = SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_nanos() as i64).unwrap_or_default();
            let mount = fs.mount_point.display().to_string();
            Ok(Response::new(cri::ImageFsInfoResponse {
                image_filesystems: if crate::faults::on(crate::faults::Fault::ImageFsInfoEmpty) { Vec::new() } else { vec![usage(ts, &mount, fs.images)] },
                container_filesystems: vec![usage(ts, &mount, fs.containers)],
            }))
        }

        type StreamImagesStream = BoxStream<cri::StreamImagesResponse>;

        // cri:ImageService.StreamImages: ListImages' answer in batches.
        async fn stream_images(&self, request: Request<cri::StreamImagesRequest>) -> Result<Response<Self::StreamImagesStream>, Status> {
            let images = self.listed(request.into_inner().filter)?;
            Ok(Response::new(batched(&images, |images| cri::StreamImagesResponse { images })))
        }
    }
    unimplemented {}
    unimplemented streams {}
}
