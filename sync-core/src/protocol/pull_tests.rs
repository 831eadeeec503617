//! Tests of the pull page framing.
use super::*;

fn page() -> LogPage {
    LogPage {
        head_seq: 12,
        entries: vec![
            LogEntry {
                seq: 3,
                status: PushStatus::Applied,
                origin: "phone".into(),
                batch_id: "b-1".into(),
                rejected: vec![],
                effect: Changeset::from_bytes(vec![1, 2, 3]),
                large: None,
            },
            LogEntry {
                seq: 4,
                status: PushStatus::Partial,
                origin: "laptop".into(),
                batch_id: "b-2".into(),
                rejected: vec![
                    RejectedTx {
                        id: 17,
                        reason: RejectReason::ForeignKey,
                    },
                    RejectedTx {
                        id: 19,
                        reason: RejectReason::Policy,
                    },
                ],
                effect: Changeset::from_bytes(vec![9]),
                large: None,
            },
            LogEntry {
                seq: 6,
                status: PushStatus::Applied,
                origin: "tablet".into(),
                batch_id: "b-3".into(),
                rejected: vec![],
                effect: Changeset::default(),
                large: Some(70 << 20),
            },
        ],
        more: true,
        tip: Some(Tip {
            lineage: Hex64(-7),
            seq: 6,
            chain: Hex64(0x0123_4567_89ab_cdef),
            sum: Some(Checksum([1, 2, 3, u64::MAX])),
        }),
    }
}

#[test]
fn round_trip() {
    let p = page();
    let bytes = encode(&p);
    assert_eq!(decode(&bytes).unwrap(), p);
    let sizes: usize = p.entries.iter().map(encoded_len).sum();
    assert_eq!(bytes.len(), MAGIC.len() + 1 + 8 + sizes + 2 + 25 + 32);
    // Without a checksum, and in the older format without a position.
    let mut p = page();
    p.tip.as_mut().unwrap().sum = None;
    assert_eq!(decode(&encode(&p)).unwrap(), p);
    p.tip = None;
    let bytes = encode(&p);
    assert_eq!(bytes[5], FORMAT_VERSION_2);
    assert_eq!(decode(&bytes).unwrap(), p);
}

#[test]
fn every_truncation_and_trailing_byte_is_an_error() {
    let bytes = encode(&page());
    for n in 0..bytes.len() {
        assert!(decode(&bytes[..n]).is_err(), "prefix of {n} bytes");
    }
    let mut extra = bytes.clone();
    extra.push(0);
    assert!(decode(&extra).is_err());
}

#[test]
fn wrong_version_and_non_increasing_seq_are_errors() {
    let mut bytes = encode(&page());
    bytes[5] = 1;
    assert!(decode(&bytes).unwrap_err().what.contains("version"));
    let mut p = page();
    p.entries[1].seq = 3;
    assert!(
        decode(&encode(&p))
            .unwrap_err()
            .what
            .contains("not increasing")
    );
}

#[test]
fn random_mutations_never_panic() {
    let bytes = encode(&page());
    let mut state = 0x2545_f491_4f6c_dd1du64;
    for _ in 0..20_000 {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        let mut m = bytes.clone();
        let i = (state as usize) % m.len();
        m[i] = (state >> 32) as u8;
        let _ = decode(&m);
    }
}
