//! ImageService: every RPC answers `Unimplemented` until the image store lands.

use std::sync::Arc;

use crid_api::runtime::v1 as cri;

use super::macros::cri_service;
use crate::daemon::Daemon;

/// The ImageService endpoint.
#[derive(Debug, Clone)]
pub struct ImageApi {
    #[allow(dead_code)] // The image store will hang off the daemon.
    daemon: Arc<Daemon>,
}

impl ImageApi {
    /// Serves ImageService from `daemon`.
    pub fn new(daemon: Arc<Daemon>) -> Self {
        Self { daemon }
    }
}

cri_service! {
    impl cri::image_service_server::ImageService => ImageApi, service "ImageService" {}
    unimplemented {
        list_images(cri::ListImagesRequest) -> cri::ListImagesResponse = "ListImages";
        image_status(cri::ImageStatusRequest) -> cri::ImageStatusResponse = "ImageStatus";
        pull_image(cri::PullImageRequest) -> cri::PullImageResponse = "PullImage";
        remove_image(cri::RemoveImageRequest) -> cri::RemoveImageResponse = "RemoveImage";
        image_fs_info(cri::ImageFsInfoRequest) -> cri::ImageFsInfoResponse = "ImageFsInfo";
    }
    unimplemented streams {
        stream_images(cri::StreamImagesRequest) -> StreamImagesStream of cri::StreamImagesResponse = "StreamImages";
    }
}
