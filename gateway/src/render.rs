//! Protobuf wire bytes straight to JSON, without a [`DynamicMessage`] in
//! between (the response half of issue 21's streaming transcoder).
//!
//! The reference (`Binding::response`) decodes the reply into a
//! `DynamicMessage` (a `BTreeMap` of boxed values, a `String` per string
//! field) and then walks it with prost-reflect's serializer. Here a plan
//! compiled once per route walks the wire bytes and writes each value's
//! JSON as it is read.
//!
//! The reference's output is the contract, byte for byte: fields in number
//! order under their JSON names, implicit-presence defaults left out, 64-bit
//! integers as strings, enums by name (by number when unknown), bytes in
//! padded standard base64, non-finite floats as `"NaN"`/`"Infinity"`, and
//! well-known types (Timestamp, Struct, wrappers ...) rendered by
//! prost-reflect itself from the one small value. Map entries follow the
//! wire's order, where the reference's `HashMap` has its own.
//!
//! The fast path takes only what it can render exactly in one pass, which
//! is every message prost writes: fields in ascending number order, a
//! singular field once, one member per oneof, each map key once. Anything
//! else (a field out of order or repeated, a malformed or truncated value,
//! invalid UTF-8, a group, nesting deeper than prost's limit) is a
//! [`Fallback`]: the caller renders that reply with the reference, so odd
//! encodings and errors behave exactly as before.

use std::io::Write as _;

use base64::display::Base64Display;
use base64::engine::general_purpose::STANDARD;
use prost::Message as _;
use prost_reflect::{DynamicMessage, MessageDescriptor, SerializeOptions};

use crate::wire::{
    FIXED32, FIXED64, LEN, Layout, Plans, Unsupported, VARINT, ValueKind, is_well_known, layout,
};

/// Nesting beyond this is the reference's to render or refuse; well under
/// prost's recursion limit (100), which the reference enforces.
const DEPTH_LIMIT: u32 = 64;
/// A well-known value decoded on its own gets a fresh recursion budget,
/// where the reference's is what its depth left. Each level of nesting
/// takes at least two bytes (a key and a length), so a value shorter than
/// twice the levels left cannot tell the two apart; longer ones go to the
/// reference.
const WELL_KNOWN_BUDGET: u32 = 90;
/// Maps longer than this go to the reference rather than a quadratic
/// duplicate-key check.
const MAP_ENTRIES: usize = 256;

/// prost-reflect's ranges for the JSON forms of Timestamp and Duration
/// (0001-01-01 to 9999-12-31; +-10,000 years): outside them its renderer
/// refuses, and so the fast path leaves those to it.
const MIN_TIMESTAMP_SECONDS: i64 = -62_135_596_800;
const MAX_TIMESTAMP_SECONDS: i64 = 253_402_300_799;
const MAX_DURATION_SECONDS: u64 = 315_576_000_000;
const MAX_DURATION_NANOS: u32 = 999_999_999;

/// The reply cannot be rendered in one pass; use the reference.
#[derive(Debug, PartialEq, Eq)]
pub(crate) struct Fallback;

type Step<T = ()> = Result<T, Fallback>;

#[derive(Debug)]
enum Shape {
    /// Written when present; with `presence` false only when not default.
    Single {
        presence: bool,
    },
    List,
    Map {
        key: ValueKind,
        value: ValueKind,
    },
}

#[derive(Debug)]
struct FieldPlan {
    number: u32,
    /// `"jsonName":`, escaped once.
    key: Box<[u8]>,
    kind: ValueKind,
    shape: Shape,
    /// The containing oneof's index in its message (below 64).
    oneof: Option<u32>,
}

#[derive(Debug, Default)]
struct MessagePlan {
    /// In ascending number order.
    fields: Vec<FieldPlan>,
}

impl MessagePlan {
    /// The field numbered `number`, searching from `from` (fields arrive
    /// in order, so the next one is usually at `from`).
    fn find(&self, number: u32, from: usize) -> Option<usize> {
        match (self.fields.get(from), self.fields.get(from + 1)) {
            (Some(f), _) if f.number == number => Some(from),
            (_, Some(f)) if f.number == number => Some(from + 1),
            _ => self.fields.binary_search_by_key(&number, |f| f.number).ok(),
        }
    }
}

/// The compiled plan of a reply message and every ordinary message it
/// reaches; built once per route.
#[derive(Debug)]
pub(crate) struct RenderPlan {
    messages: Vec<MessagePlan>,
    options: SerializeOptions,
}

/// Compiles one message's plan: the [`Plans`] builder of this direction.
fn message_plan(
    plans: &mut Plans<MessagePlan>,
    message: &MessageDescriptor,
) -> Result<MessagePlan, Unsupported> {
    if message.extensions().next().is_some() {
        return Err(Unsupported(format!(
            "{} has extensions",
            message.full_name()
        )));
    }
    let mut fields = Vec::new();
    for field in message.fields() {
        let shape = match layout(&field)? {
            Layout::Map(entry) => Shape::Map {
                key: plans.value_kind(&entry.map_entry_key_field().kind())?,
                value: plans.value_kind(&entry.map_entry_value_field().kind())?,
            },
            Layout::List => Shape::List,
            Layout::Single => Shape::Single {
                presence: field.supports_presence(),
            },
        };
        let kind = plans.value_kind(&field.kind())?;
        let oneof = match field.containing_oneof() {
            Some(o) => match message.oneofs().position(|x| x == o) {
                Some(i) if i < 64 => Some(i as u32),
                _ => {
                    return Err(Unsupported(format!(
                        "{} has over 64 oneofs",
                        message.full_name()
                    )));
                }
            },
            None => None,
        };
        let mut key = serde_json::to_vec(field.json_name())
            .map_err(|e| Unsupported(format!("field name: {e}")))?;
        key.push(b':');
        fields.push(FieldPlan {
            number: field.number(),
            key: key.into_boxed_slice(),
            kind,
            shape,
            oneof,
        });
    }
    fields.sort_by_key(|f| f.number);
    Ok(MessagePlan { fields })
}

impl RenderPlan {
    /// The plan for `root` (message 0).
    pub(crate) fn new(root: &MessageDescriptor) -> Result<Self, Unsupported> {
        if is_well_known(root) {
            return Err(Unsupported(format!(
                "{} is a well-known type",
                root.full_name()
            )));
        }
        Ok(Self {
            messages: Plans::compile(root, message_plan)?,
            options: SerializeOptions::new(),
        })
    }

    /// The JSON of the message `bytes` hold, as the reference renders it.
    pub(crate) fn render(&self, bytes: &[u8]) -> Result<Vec<u8>, Fallback> {
        let mut out = Vec::with_capacity(bytes.len() * 2 + 16);
        self.message(0, bytes, &mut out, 0)?;
        Ok(out)
    }

    fn message(&self, plan: usize, bytes: &[u8], out: &mut Vec<u8>, depth: u32) -> Step {
        if depth > DEPTH_LIMIT {
            return Err(Fallback);
        }
        let plan = &self.messages[plan];
        let mut r = Reader { buf: bytes };
        out.push(b'{');
        let mut first = true;
        let mut last: Option<usize> = None;
        // The list or map whose elements are being written, and whether
        // its key is out yet (an empty packed list writes nothing).
        let mut open: Option<(usize, bool)> = None;
        let mut oneofs = 0u64;
        let mut map_keys: Vec<(usize, usize)> = Vec::new();
        while !r.buf.is_empty() {
            let (number, wire) = r.key()?;
            let Some(i) = plan.find(number, last.unwrap_or(0)) else {
                r.skip(wire)?;
                continue;
            };
            let field = &plan.fields[i];
            if let Some((o, started)) = open
                && o != i
            {
                close(&plan.fields[o].shape, started, out);
                open = None;
                map_keys.clear();
            }
            match &field.shape {
                Shape::Single { presence } => {
                    if last.is_some_and(|l| l >= i) {
                        return Err(Fallback);
                    }
                    if let Some(o) = field.oneof {
                        if oneofs & (1 << o) != 0 {
                            return Err(Fallback);
                        }
                        oneofs |= 1 << o;
                    }
                    if wire != field.kind.wire_type() {
                        return Err(Fallback);
                    }
                    let (mark, was_first) = (out.len(), first);
                    separator(&mut first, out);
                    out.extend_from_slice(&field.key);
                    if !self.value(&field.kind, &mut r, out, depth, !presence)? {
                        out.truncate(mark);
                        first = was_first;
                    }
                }
                Shape::List => {
                    if last.is_some_and(|l| l > i) || (last == Some(i) && open.is_none()) {
                        return Err(Fallback);
                    }
                    let started = open.is_some_and(|(_, s)| s);
                    open = Some((i, started));
                    let packable = !matches!(
                        field.kind,
                        ValueKind::String
                            | ValueKind::Bytes
                            | ValueKind::Message(_)
                            | ValueKind::WellKnown(_)
                    );
                    if wire == LEN && packable {
                        let mut packed = Reader {
                            buf: r.len_delimited()?,
                        };
                        while !packed.buf.is_empty() {
                            element(&mut open, &mut first, &field.key, b'[', out);
                            self.value(&field.kind, &mut packed, out, depth, false)?;
                        }
                    } else if wire == field.kind.wire_type() {
                        element(&mut open, &mut first, &field.key, b'[', out);
                        self.value(&field.kind, &mut r, out, depth, false)?;
                    } else {
                        return Err(Fallback);
                    }
                }
                Shape::Map { key, value } => {
                    if last.is_some_and(|l| l > i) || (last == Some(i) && open.is_none()) {
                        return Err(Fallback);
                    }
                    if wire != LEN || map_keys.len() >= MAP_ENTRIES {
                        return Err(Fallback);
                    }
                    let started = open.is_some_and(|(_, s)| s);
                    open = Some((i, started));
                    element(&mut open, &mut first, &field.key, b'{', out);
                    let entry = r.len_delimited()?;
                    self.map_entry(key, value, entry, out, depth, &mut map_keys)?;
                }
            }
            last = Some(i);
        }
        if let Some((o, started)) = open {
            close(&plan.fields[o].shape, started, out);
        }
        out.push(b'}');
        Ok(())
    }

    /// One `"key":value` member of a map, refusing a key seen before (the
    /// reference keeps the last; one pass cannot take the first back).
    fn map_entry(
        &self,
        key: &ValueKind,
        value: &ValueKind,
        entry: &[u8],
        out: &mut Vec<u8>,
        depth: u32,
        seen: &mut Vec<(usize, usize)>,
    ) -> Step {
        let mut r = Reader { buf: entry };
        let (mut k, mut v): (Option<Reader<'_>>, Option<Reader<'_>>) = (None, None);
        while !r.buf.is_empty() {
            let (number, wire) = r.key()?;
            let slot = match number {
                1 if wire == key.wire_type() => &mut k,
                2 if wire == value.wire_type() => &mut v,
                _ => return Err(Fallback),
            };
            if slot.is_some() {
                return Err(Fallback);
            }
            let start = r.buf;
            r.skip(wire)?;
            *slot = Some(Reader {
                buf: &start[..start.len() - r.buf.len()],
            });
        }
        let start = out.len();
        match k {
            Some(mut k) => {
                // Strings and 64-bit integers come out quoted already.
                let quoted = matches!(
                    key,
                    ValueKind::Bool
                        | ValueKind::Int32
                        | ValueKind::Sint32
                        | ValueKind::Sfixed32
                        | ValueKind::Uint32
                        | ValueKind::Fixed32
                );
                if quoted {
                    out.push(b'"');
                }
                self.value(key, &mut k, out, depth, false)?;
                if quoted {
                    out.push(b'"');
                }
            }
            None if matches!(key, ValueKind::String) => out.extend_from_slice(b"\"\""),
            None if matches!(key, ValueKind::Bool) => out.extend_from_slice(b"\"false\""),
            None => out.extend_from_slice(b"\"0\""),
        }
        let written = (start, out.len());
        if seen
            .iter()
            .any(|&(a, b)| out[a..b] == out[written.0..written.1])
        {
            return Err(Fallback);
        }
        seen.push(written);
        out.push(b':');
        match v {
            Some(mut v) => {
                self.value(value, &mut v, out, depth, false)?;
            }
            None => self.default(value, out, depth)?,
        }
        Ok(())
    }

    /// A value absent from a map entry: the type's default.
    fn default(&self, kind: &ValueKind, out: &mut Vec<u8>, depth: u32) -> Step {
        match kind {
            ValueKind::Message(m) => self.message(*m, &[], out, depth + 1),
            ValueKind::WellKnown(m) => self.well_known(m, &[], out, depth),
            ValueKind::String | ValueKind::Bytes => {
                out.extend_from_slice(b"\"\"");
                Ok(())
            }
            ValueKind::Bool => {
                out.extend_from_slice(b"false");
                Ok(())
            }
            ValueKind::Enum(e) => {
                match e.get_value(0) {
                    Some(v) => json(out, v.name())?,
                    None => out.push(b'0'),
                }
                Ok(())
            }
            ValueKind::Int64
            | ValueKind::Sint64
            | ValueKind::Sfixed64
            | ValueKind::Uint64
            | ValueKind::Fixed64 => {
                out.extend_from_slice(b"\"0\"");
                Ok(())
            }
            // `0.0` as serde_json writes a float zero.
            ValueKind::Double | ValueKind::Float => json(out, &0.0f64),
            _ => {
                out.push(b'0');
                Ok(())
            }
        }
    }

    /// Reads one value of `kind` and writes its JSON; with `skip_default`,
    /// a default value is read and nothing counts as written (`false`).
    fn value(
        &self,
        kind: &ValueKind,
        r: &mut Reader<'_>,
        out: &mut Vec<u8>,
        depth: u32,
        skip_default: bool,
    ) -> Step<bool> {
        macro_rules! number {
            ($v:expr, $quoted:expr) => {{
                let v = $v;
                if skip_default && v == 0 {
                    return Ok(false);
                }
                if $quoted {
                    out.push(b'"');
                    json(out, &v)?;
                    out.push(b'"');
                } else {
                    json(out, &v)?;
                }
            }};
        }
        match kind {
            ValueKind::Int32 => number!(r.varint()? as i32, false),
            ValueKind::Uint32 => number!(r.varint()? as u32, false),
            ValueKind::Sint32 => {
                let v = r.varint()? as u32;
                number!(((v >> 1) as i32) ^ (-((v & 1) as i32)), false)
            }
            ValueKind::Sfixed32 => number!(i32::from_le_bytes(r.fixed()?), false),
            ValueKind::Fixed32 => number!(u32::from_le_bytes(r.fixed()?), false),
            ValueKind::Int64 => number!(r.varint()? as i64, true),
            ValueKind::Uint64 => number!(r.varint()?, true),
            ValueKind::Sint64 => {
                let v = r.varint()?;
                number!(((v >> 1) as i64) ^ (-((v & 1) as i64)), true)
            }
            ValueKind::Sfixed64 => number!(i64::from_le_bytes(r.fixed()?), true),
            ValueKind::Fixed64 => number!(u64::from_le_bytes(r.fixed()?), true),
            ValueKind::Bool => {
                let v = r.varint()? != 0;
                if skip_default && !v {
                    return Ok(false);
                }
                out.extend_from_slice(if v { b"true" } else { b"false" });
            }
            ValueKind::Double => {
                let v = f64::from_le_bytes(r.fixed()?);
                if skip_default && v == 0.0 {
                    return Ok(false);
                }
                float(out, &v, v.is_finite(), v.is_nan(), v > 0.0)?;
            }
            ValueKind::Float => {
                let v = f32::from_le_bytes(r.fixed()?);
                if skip_default && v == 0.0 {
                    return Ok(false);
                }
                float(out, &v, v.is_finite(), v.is_nan(), v > 0.0)?;
            }
            ValueKind::String => {
                let v = std::str::from_utf8(r.len_delimited()?).map_err(|_| Fallback)?;
                if skip_default && v.is_empty() {
                    return Ok(false);
                }
                json(out, v)?;
            }
            ValueKind::Bytes => {
                let v = r.len_delimited()?;
                if skip_default && v.is_empty() {
                    return Ok(false);
                }
                write!(out, "\"{}\"", Base64Display::new(v, &STANDARD)).map_err(|_| Fallback)?;
            }
            ValueKind::Enum(e) => {
                let v = r.varint()? as i32;
                if skip_default && v == 0 {
                    return Ok(false);
                }
                match e.get_value(v) {
                    Some(value) => json(out, value.name())?,
                    None => json(out, &v)?,
                }
            }
            ValueKind::Message(m) => self.message(*m, r.len_delimited()?, out, depth + 1)?,
            ValueKind::WellKnown(m) => self.well_known(m, r.len_delimited()?, out, depth)?,
        }
        Ok(true)
    }

    /// A well-known type, rendered by prost-reflect from its small message
    /// exactly as the reference does.
    fn well_known(
        &self,
        message: &MessageDescriptor,
        bytes: &[u8],
        out: &mut Vec<u8>,
        depth: u32,
    ) -> Step {
        // The two common ones, as prost-reflect renders them (decoded into
        // prost-types' struct, range-checked, its `Display` quoted) without
        // a `DynamicMessage` in between.
        match message.full_name() {
            "google.protobuf.Timestamp" => {
                let t = prost_types::Timestamp::decode(bytes).map_err(|_| Fallback)?;
                if !(MIN_TIMESTAMP_SECONDS..=MAX_TIMESTAMP_SECONDS).contains(&t.seconds) {
                    return Err(Fallback);
                }
                return write!(out, "\"{t}\"").map_err(|_| Fallback);
            }
            "google.protobuf.Duration" => {
                let d = prost_types::Duration::decode(bytes).map_err(|_| Fallback)?;
                if d.seconds.unsigned_abs() > MAX_DURATION_SECONDS
                    || d.nanos.unsigned_abs() > MAX_DURATION_NANOS
                {
                    return Err(Fallback);
                }
                return write!(out, "\"{d}\"").map_err(|_| Fallback);
            }
            _ => {}
        }
        let levels = u32::try_from(bytes.len() / 2).unwrap_or(u32::MAX);
        if depth.saturating_add(1).saturating_add(levels) >= WELL_KNOWN_BUDGET {
            return Err(Fallback);
        }
        let value = DynamicMessage::decode(message.clone(), bytes).map_err(|_| Fallback)?;
        value
            .serialize_with_options(&mut serde_json::Serializer::new(&mut *out), &self.options)
            .map_err(|_| Fallback)
    }
}

/// A comma before every member but the first.
fn separator(first: &mut bool, out: &mut Vec<u8>) {
    if !*first {
        out.push(b',');
    }
    *first = false;
}

/// Before one element of the open list or map: its key and opening
/// bracket the first time, a comma after.
fn element(
    open: &mut Option<(usize, bool)>,
    first: &mut bool,
    key: &[u8],
    bracket: u8,
    out: &mut Vec<u8>,
) {
    if let Some((_, started)) = open {
        if *started {
            out.push(b',');
        } else {
            separator(first, out);
            out.extend_from_slice(key);
            out.push(bracket);
            *started = true;
        }
    }
}

fn close(shape: &Shape, started: bool, out: &mut Vec<u8>) {
    if started {
        out.push(if matches!(shape, Shape::Map { .. }) {
            b'}'
        } else {
            b']'
        });
    }
}

/// Non-finite floats as the strings prost-reflect writes.
fn float<T: serde::Serialize>(
    out: &mut Vec<u8>,
    value: &T,
    finite: bool,
    nan: bool,
    positive: bool,
) -> Step {
    if finite {
        return json(out, value);
    }
    out.extend_from_slice(match (nan, positive) {
        (true, _) => b"\"NaN\"".as_slice(),
        (false, true) => b"\"Infinity\"",
        (false, false) => b"\"-Infinity\"",
    });
    Ok(())
}

/// `value` as serde_json writes it (the reference's formatting and
/// escaping).
fn json<T: serde::Serialize + ?Sized>(out: &mut Vec<u8>, value: &T) -> Step {
    serde_json::to_writer(out, value).map_err(|_| Fallback)
}

/// The unread rest of a message.
struct Reader<'a> {
    buf: &'a [u8],
}

impl<'a> Reader<'a> {
    /// A varint as prost reads it: at most ten bytes, the tenth 0 or 1.
    fn varint(&mut self) -> Step<u64> {
        let mut value = 0u64;
        for (i, &byte) in self.buf.iter().take(10).enumerate() {
            if i == 9 && byte > 1 {
                return Err(Fallback);
            }
            value |= u64::from(byte & 0x7f) << (7 * i);
            if byte < 0x80 {
                self.buf = &self.buf[i + 1..];
                return Ok(value);
            }
        }
        Err(Fallback)
    }

    fn key(&mut self) -> Step<(u32, u32)> {
        let key = u32::try_from(self.varint()?).map_err(|_| Fallback)?;
        let (number, wire) = (key >> 3, key & 7);
        if number == 0 {
            return Err(Fallback);
        }
        Ok((number, wire))
    }

    fn fixed<const N: usize>(&mut self) -> Step<[u8; N]> {
        let (head, rest) = self.buf.split_first_chunk::<N>().ok_or(Fallback)?;
        self.buf = rest;
        Ok(*head)
    }

    fn len_delimited(&mut self) -> Step<&'a [u8]> {
        let len = usize::try_from(self.varint()?).map_err(|_| Fallback)?;
        if len > self.buf.len() {
            return Err(Fallback);
        }
        let (value, rest) = self.buf.split_at(len);
        self.buf = rest;
        Ok(value)
    }

    /// Past a value of an unknown field; groups are the reference's.
    fn skip(&mut self, wire: u32) -> Step {
        match wire {
            VARINT => self.varint().map(drop),
            FIXED64 => self.fixed::<8>().map(drop),
            LEN => self.len_delimited().map(drop),
            FIXED32 => self.fixed::<4>().map(drop),
            _ => Err(Fallback),
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]

    use proptest::prelude::*;
    use prost::Message as _;
    use prost_reflect::{DynamicMessage, Value};
    use serde_json::{Value as Json, json};

    use super::Fallback;
    use crate::transcode::Binding;
    use crate::wire::tests::{binding, has_unordered_map, message_value, pool, text};

    fn put(pool: &prost_reflect::DescriptorPool) -> Binding {
        binding(pool, "Put", "/v1/all", "*")
    }

    /// The reference's JSON for `bytes`, or its error.
    fn reference(binding: &Binding, bytes: &[u8]) -> Result<(Vec<u8>, bool), String> {
        let message = DynamicMessage::decode(binding.output(), bytes).map_err(|e| e.to_string())?;
        Ok((binding.response(&message)?, has_unordered_map(&message)))
    }

    /// Where the streaming renderer answers it gives the reference's
    /// bytes (equal JSON where a map has two entries, which the reference
    /// writes in `HashMap` order); where the reference refuses, it hands
    /// the reply over. `render` gives the reference's answer either way.
    fn agree(binding: &Binding, bytes: &[u8]) -> Result<Option<Fallback>, String> {
        let streaming = binding
            .render_streaming(bytes)
            .ok_or("the route has no streaming renderer")?;
        let expected = reference(binding, bytes);
        let rendered = binding.render(bytes);
        match (&expected, &rendered) {
            (Ok((a, false)), Ok(b)) if a == b => {}
            (Ok((a, true)), Ok(b))
                if serde_json::from_slice::<Json>(a).unwrap()
                    == serde_json::from_slice::<Json>(b).unwrap() => {}
            (Err(_), Err(_)) => {}
            _ => {
                return Err(format!(
                    "render {rendered:?} is not the reference's {expected:?}"
                ));
            }
        }
        match (streaming, expected) {
            (Err(fallback), _) => Ok(Some(fallback)),
            (Ok(json), Ok((want, unordered))) => {
                let same = if unordered {
                    serde_json::from_slice::<Json>(&json).unwrap()
                        == serde_json::from_slice::<Json>(&want).unwrap()
                } else {
                    json == want
                };
                if same {
                    Ok(None)
                } else {
                    Err(format!(
                        "streaming {} but the reference {}",
                        String::from_utf8_lossy(&json),
                        String::from_utf8_lossy(&want)
                    ))
                }
            }
            (Ok(json), Err(error)) => Err(format!(
                "streaming rendered {} where the reference refuses: {error}",
                String::from_utf8_lossy(&json)
            )),
        }
    }

    /// The wire bytes of the request the JSON `body` is, per the reference.
    fn encoded(binding: &Binding, body: &str) -> Option<Vec<u8>> {
        let message = binding.request(&[], None, body.as_bytes(), false).ok()?;
        Some(message.encode_to_vec())
    }

    const EVERY_KIND: &str = r#"{
        "name": "n", "fDouble": 1.5, "fFloat": "NaN", "fInt32": -7, "fInt64": "-9007199254740993",
        "fUint32": 4294967295, "fUint64": "18446744073709551615", "fSint32": -3, "fSint64": "-4",
        "fFixed32": 9, "fFixed64": 10, "fSfixed32": -11, "fSfixed64": -12, "fBool": true,
        "fString": "caf\u00e9 \"quoted\"\n\u0001", "fEnum": "GREEN", "fBytes": "AP8gYnl0ZXM=",
        "fInner": {"name": "in", "n": 2, "children": [{"name": "c", "color": 1}, {"color": 9}]},
        "rInt32": [1, -1, 0, 300], "rDouble": [0.0, -0.5, "Infinity", 1e300], "rString": ["", "a"],
        "rInner": [{}, {"n": 1}], "rEnum": ["RED", 2, 0, 77], "rSint64": [-1, 1], "rFixed32": [1, 2],
        "rBytes": ["+/8=", ""], "mString": {"k": "v"}, "mInner": {"-5": {"name": "m"}, "0": {}},
        "mEnum": {"true": "RED"}, "mDouble": {"7": 0.25}, "oInt32": 0, "oString": "", "cNumber": "0",
        "tTime": "2024-01-02T03:04:05.123456789+01:00", "tDuration": "-1.5s", "tWrapped": "0",
        "tStruct": {"a": [1, null, {"b": true}]}, "tValue": null, "tMask": "a.b,cD",
        "rTime": ["1970-01-01T00:00:00Z", "2000-02-29T12:00:00.5Z"], "unpacked": [0, 5, -5]
    }"#;

    #[test]
    fn every_field_kind_renders_the_reference_bytes() {
        let pool = pool();
        let put = put(&pool);
        for body in [
            EVERY_KIND,
            "{}",
            r#"{"fInt32": 0, "fString": "", "fEnum": 0}"#,
        ] {
            let bytes = encoded(&put, body).unwrap();
            assert_eq!(agree(&put, &bytes), Ok(None), "{body}");
        }
        // Defaults with presence are written; without, left out.
        let bytes = encoded(
            &put,
            r#"{"oInt32": 0, "cText": "", "fInner": {}, "fInt32": 0}"#,
        );
        let json = put.render_streaming(&bytes.unwrap()).unwrap().unwrap();
        assert_eq!(
            String::from_utf8(json).unwrap(),
            r#"{"fInner":{},"oInt32":0,"cText":""}"#
        );
    }

    /// A field record: key then value.
    fn record(number: u32, wire: u32, value: &[u8]) -> Vec<u8> {
        let mut out = Vec::new();
        prost::encoding::encode_varint(u64::from(number << 3 | wire), &mut out);
        if wire == 2 {
            prost::encoding::encode_varint(value.len() as u64, &mut out);
        }
        out.extend_from_slice(value);
        out
    }

    #[test]
    fn encodings_prost_does_not_write_go_to_the_reference() {
        let pool = pool();
        let put = put(&pool);
        let cases: Vec<(&str, Vec<u8>, bool)> = vec![
            // name (43) before f_int32 (3): out of order, the reference sorts.
            (
                "out of order",
                [record(43, 2, b"z"), record(3, 0, &[5])].concat(),
                true,
            ),
            (
                "a singular field twice",
                [record(3, 0, &[5]), record(3, 0, &[6])].concat(),
                true,
            ),
            (
                "two members of one oneof",
                [record(32, 2, b"t"), record(33, 0, &[1])].concat(),
                true,
            ),
            (
                "a message field twice (merged)",
                [
                    record(17, 2, &record(1, 2, b"a")),
                    record(17, 2, &record(2, 0, &[1])),
                ]
                .concat(),
                true,
            ),
            (
                "one map key twice",
                [
                    record(26, 2, &[record(1, 2, b"k"), record(2, 2, b"a")].concat()),
                    record(26, 2, &[record(1, 2, b"k"), record(2, 2, b"b")].concat()),
                ]
                .concat(),
                true,
            ),
            ("invalid UTF-8", record(14, 2, &[0xff, 0xfe]), true),
            ("a wrong wire type", record(3, 2, b"x"), true),
            ("truncated", record(14, 2, b"abc")[..3].to_vec(), true),
            ("a group", record(99, 3, &[]), true),
            // What the fast path takes although prost would not write it.
            (
                "unpacked and packed pieces of one list",
                [
                    record(18, 0, &[1]),
                    record(18, 2, &[2, 3]),
                    record(18, 0, &[4]),
                ]
                .concat(),
                false,
            ),
            (
                "an unknown field",
                [record(3, 0, &[1]), record(999, 0, &[1])].concat(),
                false,
            ),
            ("an empty packed list", record(18, 2, &[]), false),
            ("a default written out", record(3, 0, &[0]), false),
            (
                "negative zero",
                record(1, 1, &(-0.0f64).to_le_bytes()),
                false,
            ),
            (
                "a map entry without key or value",
                [record(26, 2, &[]), record(27, 2, &record(1, 0, &[3]))].concat(),
                false,
            ),
            (
                "an overlong varint",
                record(3, 0, &[0x85, 0x80, 0x00]),
                false,
            ),
        ];
        for (what, bytes, falls_back) in cases {
            let outcome = agree(&put, &bytes).unwrap_or_else(|e| panic!("{what}: {e}"));
            assert_eq!(outcome.is_some(), falls_back, "{what}");
        }
    }

    #[test]
    fn deep_and_large_values_are_the_reference_s() {
        let pool = pool();
        let put = put(&pool);
        // Nested past the fast path's depth: the reference renders it.
        let mut inner = record(1, 2, b"leaf");
        for _ in 0..80 {
            inner = record(3, 2, &inner);
        }
        let bytes = record(17, 2, &inner);
        assert_eq!(agree(&put, &bytes), Ok(Some(Fallback)));
        // A long Struct could nest deeper than the reference allows.
        let body = json!({"tStruct": {"k": "x".repeat(400)}}).to_string();
        let bytes = encoded(&put, &body).unwrap();
        assert_eq!(agree(&put, &bytes), Ok(Some(Fallback)));
    }

    proptest! {
        #![proptest_config(ProptestConfig { cases: 256, ..ProptestConfig::default() })]

        /// Replies of every field kind as prost writes them: the
        /// streaming renderer takes them and writes the reference's JSON.
        #[test]
        fn generated_replies_render_alike(pairs in message_value(
            &pool().get_message_by_name("wire.v1.All").unwrap(), 2,
        )) {
            let pool = pool();
            let put = put(&pool);
            let body = text(&pairs);
            if let Some(bytes) = encoded(&put, &body) {
                match agree(&put, &bytes) {
                    Ok(None) => {}
                    Ok(Some(_)) if body.contains("tStruct") || body.contains("t_struct")
                        || body.contains("tValue") || body.contains("t_value") => {}
                    Ok(Some(_)) => return Err(TestCaseError::fail(format!("{body}: fell back"))),
                    Err(e) => return Err(TestCaseError::fail(format!("{body}: {e}"))),
                }
            }
        }

        /// The same replies cut, spliced and bit-flipped: wherever the
        /// streaming renderer answers, it is the reference's answer.
        #[test]
        fn damaged_replies_render_alike_or_fall_back(
            pairs in message_value(&pool().get_message_by_name("wire.v1.All").unwrap(), 1),
            cut in any::<prop::sample::Index>(),
            flip in any::<prop::sample::Index>(),
            bit in 0u8..8,
            splice in any::<bool>(),
        ) {
            let pool = pool();
            let put = put(&pool);
            if let Some(mut bytes) = encoded(&put, &text(&pairs)) {
                if !bytes.is_empty() {
                    let at = flip.index(bytes.len());
                    bytes[at] ^= 1 << bit;
                    let at = cut.index(bytes.len());
                    if splice {
                        let tail = bytes[at..].to_vec();
                        bytes.extend_from_slice(&tail);
                    } else {
                        bytes.truncate(at);
                    }
                }
                if let Err(e) = agree(&put, &bytes) {
                    return Err(TestCaseError::fail(format!("{bytes:?}: {e}")));
                }
            }
        }
    }

    proptest! {
        /// Timestamps and Durations of any value, in range or not (the
        /// fast path renders them without prost-reflect): the reference's
        /// string, or the reference's refusal.
        #[test]
        fn times_and_durations_render_alike(
            seconds in prop_oneof![any::<i64>(), -62_135_596_900i64..253_402_300_900],
            nanos in prop_oneof![any::<i32>(), 0i32..1_000_000_000],
        ) {
            let pool = pool();
            let put = put(&pool);
            let time = prost_types::Timestamp { seconds, nanos }.encode_to_vec();
            let duration = prost_types::Duration { seconds: seconds % 400_000_000_000, nanos }
                .encode_to_vec();
            for bytes in [record(35, 2, &time), record(36, 2, &duration), record(41, 2, &time)] {
                if let Err(e) = agree(&put, &bytes) {
                    return Err(TestCaseError::fail(format!("{seconds} {nanos}: {e}")));
                }
            }
        }
    }

    #[test]
    fn a_repeated_message_list_keeps_its_order_and_empty_members() {
        let pool = pool();
        let put = put(&pool);
        let mut message = DynamicMessage::new(put.output());
        message.set_field_by_name(
            "r_inner",
            Value::List(vec![
                Value::Message(DynamicMessage::new(
                    pool.get_message_by_name("wire.v1.Inner").unwrap(),
                )),
                Value::Message({
                    let mut m =
                        DynamicMessage::new(pool.get_message_by_name("wire.v1.Inner").unwrap());
                    m.set_field_by_name("n", Value::I32(-1));
                    m
                }),
            ]),
        );
        let json = put
            .render_streaming(&message.encode_to_vec())
            .unwrap()
            .unwrap();
        assert_eq!(
            String::from_utf8(json).unwrap(),
            r#"{"rInner":[{},{"n":-1}]}"#
        );
    }
}
