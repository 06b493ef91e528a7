//! A tonic codec for messages known only by their descriptors.
//!
//! Generated codecs are typed; the gateway learns its types at run time,
//! so it encodes any [`DynamicMessage`] and decodes into the descriptor it
//! is given (the method's input type on a server). The gateway's own
//! client ([`ClientCodec`]) sends [`Outgoing`] instead (a message, or the
//! wire bytes the streaming transcoder already wrote) and keeps replies as
//! wire bytes for the streaming renderer.

use std::marker::PhantomData;

use prost::Message;
use prost::bytes::{Buf, BufMut, Bytes};
use prost_reflect::{DynamicMessage, MessageDescriptor};
use tonic::Status;
use tonic::codec::{Codec, DecodeBuf, Decoder, EncodeBuf, Encoder};

/// What a [`DynamicCodec`] can send.
pub trait Encodable: Send + 'static {
    fn encode_into(self, dst: &mut EncodeBuf<'_>) -> Result<(), Status>;
}

impl Encodable for DynamicMessage {
    fn encode_into(self, dst: &mut EncodeBuf<'_>) -> Result<(), Status> {
        self.encode(dst)
            .map_err(|error| Status::internal(format!("cannot encode message: {error}")))
    }
}

/// What the gateway sends upstream: a message the reference transcoder
/// built, or the wire bytes the streaming one wrote (`wire.rs`).
#[derive(Debug)]
pub(crate) enum Outgoing {
    Message(DynamicMessage),
    Encoded(Vec<u8>),
}

impl Encodable for Outgoing {
    fn encode_into(self, dst: &mut EncodeBuf<'_>) -> Result<(), Status> {
        match self {
            Self::Message(message) => message.encode_into(dst),
            Self::Encoded(bytes) => {
                dst.put_slice(&bytes);
                Ok(())
            }
        }
    }
}

/// Encodes `T` (any dynamic message by default); decodes into `decode_as`.
#[derive(Debug, Clone)]
pub struct DynamicCodec<T = DynamicMessage> {
    decode_as: MessageDescriptor,
    sends: PhantomData<fn(T)>,
}

impl DynamicCodec {
    pub fn new(decode_as: MessageDescriptor) -> Self {
        Self {
            decode_as,
            sends: PhantomData,
        }
    }
}

/// The gateway's client codec: sends [`Outgoing`], receives each reply's
/// wire bytes undecoded (`render.rs` turns them into JSON).
#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct ClientCodec;

impl Codec for ClientCodec {
    type Encode = Outgoing;
    type Decode = Bytes;
    type Encoder = DynamicEncoder<Outgoing>;
    type Decoder = RawDecoder;

    fn encoder(&mut self) -> Self::Encoder {
        DynamicEncoder(PhantomData)
    }

    fn decoder(&mut self) -> Self::Decoder {
        RawDecoder
    }
}

/// Hands over a message's bytes as they came.
#[derive(Debug, Clone, Copy)]
pub(crate) struct RawDecoder;

impl Decoder for RawDecoder {
    type Item = Bytes;
    type Error = Status;

    fn decode(&mut self, src: &mut DecodeBuf<'_>) -> Result<Option<Self::Item>, Self::Error> {
        Ok(Some(src.copy_to_bytes(src.remaining())))
    }
}

impl<T: Encodable> Codec for DynamicCodec<T> {
    type Encode = T;
    type Decode = DynamicMessage;
    type Encoder = DynamicEncoder<T>;
    type Decoder = DynamicDecoder;

    fn encoder(&mut self) -> Self::Encoder {
        DynamicEncoder(PhantomData)
    }

    fn decoder(&mut self) -> Self::Decoder {
        DynamicDecoder {
            decode_as: self.decode_as.clone(),
        }
    }
}

#[derive(Debug, Clone, Copy)]
pub struct DynamicEncoder<T = DynamicMessage>(PhantomData<fn(T)>);

impl<T: Encodable> Encoder for DynamicEncoder<T> {
    type Item = T;
    type Error = Status;

    fn encode(&mut self, item: Self::Item, dst: &mut EncodeBuf<'_>) -> Result<(), Self::Error> {
        item.encode_into(dst)
    }
}

#[derive(Debug, Clone)]
pub struct DynamicDecoder {
    decode_as: MessageDescriptor,
}

impl Decoder for DynamicDecoder {
    type Item = DynamicMessage;
    type Error = Status;

    fn decode(&mut self, src: &mut DecodeBuf<'_>) -> Result<Option<Self::Item>, Self::Error> {
        DynamicMessage::decode(self.decode_as.clone(), src)
            .map(Some)
            .map_err(|error| {
                Status::internal(format!(
                    "cannot decode {}: {error}",
                    self.decode_as.full_name()
                ))
            })
    }
}
