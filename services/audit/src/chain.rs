//! The hash chain: what a record is, how its hash is computed, and how a
//! tenant's chain is checked. Nothing here touches the database.
//!
//! # The hash
//!
//! ```text
//! hash = hex(SHA-256("cloudsec.audit.v1.record\0"
//!                    || for each field f: u64_be(len(f)) || f))
//! ```
//!
//! over, in this order, the UTF-8 text of: `tenant`, `seq` (decimal),
//! `event_id`, `event_type`, `source`, `subject`, `actor`, `occur_time`,
//! `record_time` (both RFC 3339 in UTC with six fractional digits and `Z`,
//! e.g. `2025-07-01T12:00:00.000001Z`), `summary` (the stored JSON text,
//! byte for byte) and `prev_hash`. An absent subject or actor is the empty
//! string. The length prefixes make the encoding unambiguous: no two
//! different records feed SHA-256 the same bytes. The first record's
//! `prev_hash` is [`GENESIS_HASH`].
//!
//! Every stored column is covered, so changing any of them breaks that
//! record's hash; recomputing the hash as well breaks the next record's
//! `prev_hash`; deleting a record leaves a gap in `seq`; deleting the last
//! ones leaves the chain head pointing past the end. Someone who can write
//! the database can still rewrite a whole tail consistently, which is why
//! the verification reports the head for keeping elsewhere.

use chrono::{DateTime, SecondsFormat, Utc};
use sha2::{Digest, Sha256};

/// The `prev_hash` of a tenant's first record.
pub const GENESIS_HASH: &str = "0000000000000000000000000000000000000000000000000000000000000000";

/// Keeps these hashes apart from any other SHA-256 use over similar bytes,
/// and names the formula's version.
const DOMAIN: &[u8] = b"cloudsec.audit.v1.record\0";

/// One audit record, as stored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AuditRecord {
    pub tenant: String,
    pub seq: i64,
    pub event_id: String,
    pub event_type: String,
    pub source: String,
    pub subject: String,
    pub actor: String,
    pub occur_time: DateTime<Utc>,
    pub record_time: DateTime<Utc>,
    /// Canonical JSON (sorted keys, no whitespace) of the decoded payload.
    pub summary: String,
    pub prev_hash: String,
    pub hash: String,
}

impl AuditRecord {
    /// The hash this record's fields call for (see the module docs).
    pub fn compute_hash(&self) -> String {
        let seq = self.seq.to_string();
        let occur_time = format_time(self.occur_time);
        let record_time = format_time(self.record_time);
        let mut digest = Sha256::new();
        digest.update(DOMAIN);
        for field in [
            self.tenant.as_str(),
            &seq,
            &self.event_id,
            &self.event_type,
            &self.source,
            &self.subject,
            &self.actor,
            &occur_time,
            &record_time,
            &self.summary,
            &self.prev_hash,
        ] {
            digest.update((field.len() as u64).to_be_bytes());
            digest.update(field.as_bytes());
        }
        hex(&digest.finalize())
    }
}

/// The time as the hash reads it: RFC 3339, UTC, microseconds.
pub fn format_time(time: DateTime<Utc>) -> String {
    time.to_rfc3339_opts(SecondsFormat::Micros, true)
}

/// `time` cut to whole microseconds: PostgreSQL keeps no more, and a
/// record must hash the same after a round trip through either database.
pub fn to_micros(time: DateTime<Utc>) -> DateTime<Utc> {
    DateTime::from_timestamp_micros(time.timestamp_micros()).unwrap_or(time)
}

fn hex(bytes: &[u8]) -> String {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    let mut out = String::with_capacity(bytes.len() * 2);
    for byte in bytes {
        out.push(char::from(DIGITS[usize::from(byte >> 4)]));
        out.push(char::from(DIGITS[usize::from(byte & 0x0f)]));
    }
    out
}

/// The outcome of checking one tenant's chain.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Verification {
    pub ok: bool,
    /// Records examined; the check stops at the first invalid one.
    pub records_checked: i64,
    /// The first missing or invalid `seq`; 0 when `ok`.
    pub first_invalid_seq: i64,
    /// Empty when `ok`.
    pub reason: String,
    /// The stored chain head (0 and [`GENESIS_HASH`] when there is none).
    pub head_seq: i64,
    pub head_hash: String,
}

/// Checks a tenant's records fed in ascending `seq` order, then the chain
/// head, stopping at the first fault.
#[derive(Debug)]
pub struct ChainCheck {
    tenant: String,
    next_seq: i64,
    prev_hash: String,
    checked: i64,
    fault: Option<(i64, String)>,
}

impl ChainCheck {
    pub fn new(tenant: &str) -> Self {
        Self {
            tenant: tenant.to_owned(),
            next_seq: 1,
            prev_hash: GENESIS_HASH.to_owned(),
            checked: 0,
            fault: None,
        }
    }

    /// Records a fault found outside the chain's own rules (a missing or
    /// bad head signature) at `seq`, unless an earlier one was found.
    pub fn fail(&mut self, seq: i64, reason: String) {
        if self.fault.is_none() {
            self.fault = Some((seq, reason));
        }
    }

    /// Whether a fault has been found (no more records are needed).
    pub fn failed(&self) -> bool {
        self.fault.is_some()
    }

    /// Checks the next record; returns `false` once the chain is broken.
    pub fn check(&mut self, record: &AuditRecord) -> bool {
        if self.fault.is_some() {
            return false;
        }
        self.checked += 1;
        let expected = self.next_seq;
        let fault = if record.tenant != self.tenant {
            Some((record.seq, "record belongs to another tenant".to_owned()))
        } else if record.seq > expected {
            Some((
                expected,
                if record.seq == expected + 1 {
                    format!("record {expected} is missing")
                } else {
                    format!("records {expected} to {} are missing", record.seq - 1)
                },
            ))
        } else if record.seq < expected {
            Some((record.seq, format!("record {} is out of order", record.seq)))
        } else if record.prev_hash != self.prev_hash {
            Some((
                record.seq,
                if record.seq == 1 {
                    "prev_hash of the first record is not the genesis hash".to_owned()
                } else {
                    format!(
                        "prev_hash does not match the hash of record {}",
                        record.seq - 1
                    )
                },
            ))
        } else if record.compute_hash() != record.hash {
            Some((
                record.seq,
                "hash does not match the record's contents".to_owned(),
            ))
        } else {
            None
        };
        match fault {
            Some(fault) => {
                self.fault = Some(fault);
                false
            }
            None => {
                self.next_seq += 1;
                self.prev_hash.clone_from(&record.hash);
                true
            }
        }
    }

    /// The verdict, given the stored head (`None` when the tenant has
    /// none). The head must name the last record, so that deleting the
    /// newest records is caught too.
    pub fn finish(mut self, head: Option<(i64, String)>) -> Verification {
        let last_seq = self.next_seq - 1;
        if self.fault.is_none() {
            self.fault = match &head {
                None if last_seq > 0 => Some((last_seq, "the chain head is missing".to_owned())),
                None => None,
                Some((seq, _)) if *seq > last_seq => Some((
                    last_seq + 1,
                    if *seq == last_seq + 1 {
                        format!("record {seq} (the chain head) is missing")
                    } else {
                        format!(
                            "records {} to {seq} are missing (the chain head is at {seq})",
                            last_seq + 1
                        )
                    },
                )),
                Some((seq, _)) if *seq < last_seq => Some((
                    seq + 1,
                    format!("record {} lies beyond the chain head", seq + 1),
                )),
                Some((_, hash)) if *hash != self.prev_hash => Some((
                    last_seq,
                    format!("hash of record {last_seq} does not match the chain head"),
                )),
                Some(_) => None,
            };
        }
        let (head_seq, head_hash) = head.unwrap_or_else(|| (0, GENESIS_HASH.to_owned()));
        let (first_invalid_seq, reason) = self.fault.clone().unwrap_or_default();
        Verification {
            ok: self.fault.is_none(),
            records_checked: self.checked,
            first_invalid_seq,
            reason,
            head_seq,
            head_hash,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn time(micros: i64) -> DateTime<Utc> {
        DateTime::from_timestamp_micros(micros).unwrap()
    }

    fn record(seq: i64, prev_hash: &str) -> AuditRecord {
        let mut record = AuditRecord {
            tenant: "acme".into(),
            seq,
            event_id: format!("event-{seq}"),
            event_type: "cloudsec.events.v1.DocumentCreated".into(),
            source: "/cloudsec/documents".into(),
            subject: format!("doc-{seq}"),
            actor: "alice".into(),
            occur_time: time(1_751_371_200_000_001),
            record_time: time(1_751_371_200_000_002),
            summary: r#"{"@type":"cloudsec.events.v1.DocumentCreated"}"#.into(),
            prev_hash: prev_hash.into(),
            hash: String::new(),
        };
        record.hash = record.compute_hash();
        record
    }

    fn chain(n: i64) -> Vec<AuditRecord> {
        let mut records: Vec<AuditRecord> = Vec::new();
        for seq in 1..=n {
            let prev = records.last().map_or(GENESIS_HASH, |r| r.hash.as_str());
            records.push(record(seq, prev));
        }
        records
    }

    fn verify(records: &[AuditRecord], head: Option<(i64, String)>) -> Verification {
        let mut check = ChainCheck::new("acme");
        for record in records {
            if !check.check(record) {
                break;
            }
        }
        check.finish(head)
    }

    fn head_of(records: &[AuditRecord]) -> Option<(i64, String)> {
        records.last().map(|r| (r.seq, r.hash.clone()))
    }

    #[test]
    fn the_formula_is_pinned() {
        // Also computed with Python's hashlib from the module docs' formula,
        // so the documentation and the code agree.
        let first = record(1, GENESIS_HASH);
        assert_eq!(format_time(first.occur_time), "2025-07-01T12:00:00.000001Z");
        assert_eq!(
            first.hash,
            "c84e4b53fb66e850560882c83a8c48f47f73cc5f84bd154b2884b5fa5b7c302b"
        );
    }

    #[test]
    fn every_field_is_covered() {
        let base = record(1, GENESIS_HASH);
        let changes: [fn(&mut AuditRecord); 11] = [
            |r| r.tenant.push('x'),
            |r| r.seq += 1,
            |r| r.event_id.push('x'),
            |r| r.event_type.push('x'),
            |r| r.source.push('x'),
            |r| r.subject.push('x'),
            |r| r.actor.push('x'),
            |r| r.occur_time = time(1),
            |r| r.record_time = time(1),
            |r| r.summary.push(' '),
            |r| r.prev_hash = "1".repeat(64),
        ];
        for (i, change) in changes.iter().enumerate() {
            let mut changed = base.clone();
            change(&mut changed);
            assert_ne!(changed.compute_hash(), base.hash, "field {i}");
        }
        // Moving a byte from one field to the next changes the hash too.
        let mut shifted = base.clone();
        shifted.subject = "doc-".into();
        shifted.actor = "1alice".into();
        assert_ne!(shifted.compute_hash(), base.hash);
    }

    #[test]
    fn an_intact_chain_verifies() {
        let records = chain(5);
        let verdict = verify(&records, head_of(&records));
        assert!(verdict.ok, "{verdict:?}");
        assert_eq!(verdict.records_checked, 5);
        assert_eq!(verdict.first_invalid_seq, 0);
        assert_eq!(verdict.head_seq, 5);
        assert_eq!(verdict.head_hash, records[4].hash);

        let empty = verify(&[], None);
        assert!(empty.ok);
        assert_eq!(empty.head_hash, GENESIS_HASH);
    }

    #[test]
    fn a_changed_field_is_caught_at_its_record() {
        let mut records = chain(5);
        records[2].summary = r#"{"@type":"x"}"#.into();
        let verdict = verify(&records, head_of(&records));
        assert!(!verdict.ok);
        assert_eq!(verdict.first_invalid_seq, 3);
        assert_eq!(verdict.records_checked, 3);
        assert!(
            verdict.reason.contains("hash does not match"),
            "{verdict:?}"
        );
    }

    #[test]
    fn a_rehashed_record_is_caught_at_the_next() {
        let mut records = chain(5);
        records[1].subject = "forged".into();
        records[1].hash = records[1].compute_hash();
        let verdict = verify(&records, head_of(&records));
        assert_eq!(verdict.first_invalid_seq, 3, "{verdict:?}");
        assert!(verdict.reason.contains("record 2"), "{verdict:?}");
    }

    #[test]
    fn gaps_and_a_lost_tail_are_caught() {
        let records = chain(5);
        let head = head_of(&records);
        let mut gap = records.clone();
        gap.remove(1);
        let verdict = verify(&gap, head.clone());
        assert_eq!(verdict.first_invalid_seq, 2);
        assert_eq!(verdict.reason, "record 2 is missing");

        let verdict = verify(&records[..3], head.clone());
        assert_eq!(verdict.first_invalid_seq, 4);
        assert!(verdict.reason.contains("4 to 5"), "{verdict:?}");

        let verdict = verify(&records[..4], head.clone());
        assert_eq!(verdict.first_invalid_seq, 5);

        let verdict = verify(&records[1..], head);
        assert_eq!(verdict.first_invalid_seq, 1);
    }

    #[test]
    fn the_head_must_name_the_last_record() {
        let records = chain(3);
        let verdict = verify(&records, None);
        assert!(!verdict.ok);
        assert_eq!(verdict.reason, "the chain head is missing");

        let verdict = verify(&records, Some((2, records[1].hash.clone())));
        assert_eq!(verdict.first_invalid_seq, 3);
        assert!(verdict.reason.contains("beyond the chain head"));

        let verdict = verify(&records, Some((3, "f".repeat(64))));
        assert_eq!(verdict.first_invalid_seq, 3);
        assert!(verdict.reason.contains("chain head"));
    }

    #[test]
    fn the_genesis_link_is_checked() {
        let mut records = chain(2);
        records[0].prev_hash = "1".repeat(64);
        records[0].hash = records[0].compute_hash();
        let verdict = verify(&records, head_of(&records));
        assert_eq!(verdict.first_invalid_seq, 1);
        assert!(verdict.reason.contains("genesis"));
    }

    #[test]
    fn another_tenants_record_is_caught() {
        let mut records = chain(2);
        records[1].tenant = "globex".into();
        let verdict = verify(&records, head_of(&records));
        assert_eq!(verdict.first_invalid_seq, 2);
    }
}
