//! The codec of the node's gRPC service: prost's, except that a request that does not
//! decode is answered INVALID_ARGUMENT, naming the message, since the caller sent it;
//! prost's codec answers INTERNAL, as if the node had failed. (The generated client keeps
//! prost's codec: a response that does not decode is the node's fault.)

use tonic::Status;
use tonic::codec::{BufferSettings, Codec, DecodeBuf, Decoder};
use tonic_prost::{ProstCodec, ProstDecoder, ProstEncoder};

/// `tonic_prost::ProstCodec` with `RequestDecoder` as its decoder.
#[derive(Debug, Clone)]
pub struct RequestCodec<T, U> {
    inner: ProstCodec<T, U>,
}

impl<T, U> Default for RequestCodec<T, U> {
    fn default() -> Self {
        RequestCodec { inner: ProstCodec::default() }
    }
}

impl<T, U> Codec for RequestCodec<T, U>
where
    T: prost::Message + Send + 'static,
    U: prost::Message + Default + Send + 'static,
{
    type Encode = T;
    type Decode = U;
    type Encoder = ProstEncoder<T>;
    type Decoder = RequestDecoder<U>;

    fn encoder(&mut self) -> Self::Encoder {
        self.inner.encoder()
    }

    fn decoder(&mut self) -> Self::Decoder {
        RequestDecoder { inner: self.inner.decoder() }
    }
}

/// Decodes a request with prost, and reports a failure as the caller's.
#[derive(Debug, Clone)]
pub struct RequestDecoder<U> {
    inner: ProstDecoder<U>,
}

impl<U: prost::Message + Default> Decoder for RequestDecoder<U> {
    type Item = U;
    type Error = Status;

    fn decode(&mut self, src: &mut DecodeBuf<'_>) -> Result<Option<U>, Status> {
        self.inner.decode(src).map_err(|status| invalid_request::<U>(status.message()))
    }

    fn buffer_settings(&self) -> BufferSettings {
        self.inner.buffer_settings()
    }
}

/// INVALID_ARGUMENT for a request that is not a valid `U`, with prost's reason.
fn invalid_request<U>(reason: &str) -> Status {
    // `cercle_proto::generated::cercle::v1::SubmitRequest` -> `SubmitRequest`.
    let full = std::any::type_name::<U>();
    let name = full.rsplit("::").next().unwrap_or(full);
    let reason = reason.strip_prefix("failed to decode Protobuf message: ").unwrap_or(reason);
    Status::invalid_argument(format!("the request is not a valid {name}: {reason}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_request_that_does_not_decode_is_named_and_its_reason_kept() {
        let status = invalid_request::<crate::SubmitRequest>(
            "failed to decode Protobuf message: SubmitRequest.envelope: invalid varint",
        );
        assert_eq!(status.code(), tonic::Code::InvalidArgument);
        assert_eq!(
            status.message(),
            "the request is not a valid SubmitRequest: SubmitRequest.envelope: invalid varint"
        );
    }
}
