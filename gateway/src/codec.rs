//! A tonic codec for messages known only by their descriptors.
//!
//! Generated codecs are typed; the gateway learns its types at run time,
//! so it encodes any [`DynamicMessage`] and decodes into the descriptor it
//! is given (the method's output type on the client side, its input type on
//! a server).

use prost::Message;
use prost::bytes::BufMut;
use prost_reflect::{DynamicMessage, MessageDescriptor};
use tonic::Status;
use tonic::codec::{Codec, DecodeBuf, Decoder, EncodeBuf, Encoder};

/// Encodes any dynamic message; decodes into `decode_as`.
#[derive(Debug, Clone)]
pub struct DynamicCodec {
    decode_as: MessageDescriptor,
}

impl DynamicCodec {
    pub fn new(decode_as: MessageDescriptor) -> Self {
        Self { decode_as }
    }
}

impl Codec for DynamicCodec {
    type Encode = DynamicMessage;
    type Decode = DynamicMessage;
    type Encoder = DynamicEncoder;
    type Decoder = DynamicDecoder;

    fn encoder(&mut self) -> Self::Encoder {
        DynamicEncoder
    }

    fn decoder(&mut self) -> Self::Decoder {
        DynamicDecoder {
            decode_as: self.decode_as.clone(),
        }
    }
}

#[derive(Debug, Clone, Copy)]
pub struct DynamicEncoder;

impl Encoder for DynamicEncoder {
    type Item = DynamicMessage;
    type Error = Status;

    fn encode(&mut self, item: Self::Item, dst: &mut EncodeBuf<'_>) -> Result<(), Self::Error> {
        item.encode(dst)
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

/// The gateway's client codec: sends [`Outgoing`], decodes `decode_as`.
#[derive(Debug, Clone)]
pub(crate) struct GatewayCodec {
    decode_as: MessageDescriptor,
}

impl GatewayCodec {
    pub(crate) fn new(decode_as: MessageDescriptor) -> Self {
        Self { decode_as }
    }
}

impl Codec for GatewayCodec {
    type Encode = Outgoing;
    type Decode = DynamicMessage;
    type Encoder = OutgoingEncoder;
    type Decoder = DynamicDecoder;

    fn encoder(&mut self) -> Self::Encoder {
        OutgoingEncoder
    }

    fn decoder(&mut self) -> Self::Decoder {
        DynamicDecoder {
            decode_as: self.decode_as.clone(),
        }
    }
}

#[derive(Debug, Clone, Copy)]
pub(crate) struct OutgoingEncoder;

impl Encoder for OutgoingEncoder {
    type Item = Outgoing;
    type Error = Status;

    fn encode(&mut self, item: Self::Item, dst: &mut EncodeBuf<'_>) -> Result<(), Self::Error> {
        match item {
            Outgoing::Message(message) => message
                .encode(dst)
                .map_err(|error| Status::internal(format!("cannot encode message: {error}"))),
            Outgoing::Encoded(bytes) => {
                dst.put_slice(&bytes);
                Ok(())
            }
        }
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
