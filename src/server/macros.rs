//! Emits a CRI service impl: the implemented handlers as written, plus an `Unimplemented`
//! answer naming the RPC for every RPC whose capability has not landed yet.
//!
//! The whole impl is produced by the macro so that `async_trait` sees every method.

/// A boxed server stream, the type of every streaming RPC's response.
pub(crate) type BoxStream<T> =
    std::pin::Pin<Box<dyn tokio_stream::Stream<Item = Result<T, tonic::Status>> + Send + 'static>>;

/// Items per message of the streaming list RPCs.
pub(crate) const STREAM_BATCH: usize = 100;

/// A list as the streaming list RPCs send it: batches of [`STREAM_BATCH`], each non-empty
/// (an empty list is an empty stream), each wrapped by `wrap`.
pub(crate) fn batched<T: Clone, R: Send + 'static>(
    items: &[T],
    wrap: impl Fn(Vec<T>) -> R,
) -> BoxStream<R> {
    let batches: Vec<Result<R, tonic::Status>> = items
        .chunks(STREAM_BATCH)
        .map(|c| Ok(wrap(c.to_vec())))
        .collect();
    Box::pin(tokio_stream::iter(batches))
}

macro_rules! cri_service {
    (
        impl $trait:path => $ty:ty, service $service:literal {
            $($implemented:item)*
        }
        unimplemented {
            $($method:ident($req:ty) -> $resp:ty = $rpc:literal;)*
        }
        unimplemented streams {
            $($smethod:ident($sreq:ty) -> $stype:ident of $sresp:ty = $srpc:literal;)*
        }
    ) => {
        #[tonic::async_trait]
        impl $trait for $ty {
            $($implemented)*

            $(
                async fn $method(
                    &self,
                    _request: tonic::Request<$req>,
                ) -> Result<tonic::Response<$resp>, tonic::Status> {
                    Err($crate::server::error::unimplemented($service, $rpc))
                }
            )*

            $(
                type $stype = $crate::server::macros::BoxStream<$sresp>;

                async fn $smethod(
                    &self,
                    _request: tonic::Request<$sreq>,
                ) -> Result<tonic::Response<Self::$stype>, tonic::Status> {
                    Err($crate::server::error::unimplemented($service, $srpc))
                }
            )*
        }
    };
}

pub(crate) use cri_service;
