//! Byte encodings of the RocksDB keys: order-preserving key+revision composites and revision keys.

/// Encode `key` so that the encodings of two keys compare like the keys, and no encoding is a
/// prefix of another: every 0x00 byte becomes 0x00 0xFF and the key ends with 0x00 0x01.
/// A revision appended after the encoding therefore sorts versions of one key together.
pub fn escape_key(key: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(key.len() + 10);
    for &b in key {
        out.push(b);
        if b == 0 {
            out.push(0xFF);
        }
    }
    out.extend_from_slice(&[0x00, 0x01]);
    out
}

/// `escape_key(key)` followed by the big-endian revision.
pub fn versioned_key(key: &[u8], revision: i64) -> Vec<u8> {
    let mut out = escape_key(key);
    out.extend_from_slice(&revision.to_be_bytes());
    out
}

/// Split a `versioned_key` back into the user key and the revision.
pub fn split_versioned_key(encoded: &[u8]) -> Option<(Vec<u8>, i64)> {
    if encoded.len() < 10 {
        return None;
    }
    let (escaped, rev) = encoded.split_at(encoded.len() - 8);
    let revision = i64::from_be_bytes(rev.try_into().ok()?);
    let body = escaped.strip_suffix(&[0x00, 0x01])?;
    let mut key = Vec::with_capacity(body.len());
    let mut i = 0;
    while i < body.len() {
        key.push(body[i]);
        if body[i] == 0 {
            if body.get(i + 1) != Some(&0xFF) {
                return None;
            }
            i += 1;
        }
        i += 1;
    }
    Some((key, revision))
}

/// The history key of the `sub`-th event of `revision`.
pub fn event_key(revision: i64, sub: u32) -> [u8; 12] {
    let mut out = [0u8; 12];
    out[..8].copy_from_slice(&revision.to_be_bytes());
    out[8..].copy_from_slice(&sub.to_be_bytes());
    out
}

/// The revision of a history key.
pub fn event_key_revision(k: &[u8]) -> i64 {
    let mut b = [0u8; 8];
    b.copy_from_slice(&k[..8]);
    i64::from_be_bytes(b)
}

/// The end of the range of keys that start with `prefix` (etcd's `GetPrefixRangeEnd`):
/// the prefix with its last byte below 0xFF incremented; "\0" (every key) if there is none.
pub fn prefix_end(prefix: &[u8]) -> Vec<u8> {
    let mut end = prefix.to_vec();
    while let Some(last) = end.pop() {
        if last < 0xFF {
            end.push(last + 1);
            return end;
        }
    }
    vec![0]
}

/// A key range as the protocol expresses it: `range_end` empty is the single key, "\0" is every
/// key from `key` on, anything else is `[key, range_end)`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KeyRange {
    pub start: Vec<u8>,
    /// `None`: unbounded above.
    pub end: Option<Vec<u8>>,
    pub single: bool,
}

impl KeyRange {
    pub fn new(key: &[u8], range_end: &[u8]) -> KeyRange {
        if range_end.is_empty() {
            let mut end = key.to_vec();
            end.push(0);
            KeyRange {
                start: key.to_vec(),
                end: Some(end),
                single: true,
            }
        } else if range_end == [0] {
            KeyRange {
                start: key.to_vec(),
                end: None,
                single: false,
            }
        } else {
            KeyRange {
                start: key.to_vec(),
                end: Some(range_end.to_vec()),
                single: false,
            }
        }
    }

    pub fn contains(&self, key: &[u8]) -> bool {
        key >= self.start.as_slice() && self.end.as_ref().is_none_or(|e| key < e.as_slice())
    }

    pub fn is_empty(&self) -> bool {
        self.end
            .as_ref()
            .is_some_and(|e| e.as_slice() <= self.start.as_slice())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn escaped_keys_keep_order_and_roundtrip() {
        let mut keys: Vec<Vec<u8>> = vec![
            b"".to_vec(),
            b"a".to_vec(),
            b"a\0".to_vec(),
            b"a\0\0b".to_vec(),
            b"a\x01".to_vec(),
            b"ab".to_vec(),
            b"b".to_vec(),
            vec![0xFF, 0],
        ];
        keys.sort();
        let encoded: Vec<Vec<u8>> = keys.iter().map(|k| versioned_key(k, 7)).collect();
        let mut sorted = encoded.clone();
        sorted.sort();
        assert_eq!(encoded, sorted, "encoding must preserve key order");
        for k in &keys {
            assert_eq!(
                split_versioned_key(&versioned_key(k, 42)),
                Some((k.clone(), 42))
            );
        }
        // Versions of one key sort by revision and stay below the next key.
        assert!(versioned_key(b"a", 1) < versioned_key(b"a", 2));
        assert!(versioned_key(b"a", i64::MAX) < versioned_key(b"a\0", 0));
    }

    #[test]
    fn prefix_end_increments_last_byte() {
        assert_eq!(prefix_end(b"/registry/pods/"), b"/registry/pods0".to_vec());
        assert_eq!(prefix_end(&[b'a', 0xFF]), b"b".to_vec());
        assert_eq!(prefix_end(&[0xFF, 0xFF]), vec![0]);
    }

    #[test]
    fn key_range_forms() {
        let single = KeyRange::new(b"a", b"");
        assert!(single.contains(b"a") && !single.contains(b"a\0") && !single.contains(b"b"));
        let all = KeyRange::new(b"b", b"\0");
        assert!(all.contains(b"zzz") && !all.contains(b"a"));
        let half = KeyRange::new(b"b", b"d");
        assert!(half.contains(b"c") && !half.contains(b"d"));
        assert!(KeyRange::new(b"d", b"b").is_empty());
    }
}
