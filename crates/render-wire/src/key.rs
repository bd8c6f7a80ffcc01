//! The cache key of a request: SHA-256 of a canonical, versioned encoding of everything that
//! decides the output, and nothing that does not (not the shot's name, not its place in the list).

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::catalog::{Model, Seconds, Size};

/// Bump when the encoding or the meaning of a field changes: every key changes with it.
pub const KEY_VERSION: u32 = 2;

/// A SHA-256 digest, shown as 64 lowercase hex digits.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Sha256Hex([u8; 32]);

/// The lowercase hex digits, by value.
const HEX_DIGITS: &[u8; 16] = b"0123456789abcdef";

/// Marks a character that is not a lowercase hex digit in [`HEX_VALUE`].
const NOT_HEX: u8 = 0x10;

/// Each byte's value as a lowercase hex digit, or [`NOT_HEX`].
const HEX_VALUE: [u8; 256] = {
    let mut table = [NOT_HEX; 256];
    let mut i = 0;
    while i < 16 {
        table[HEX_DIGITS[i] as usize] = i as u8;
        i += 1;
    }
    table
};

impl Sha256Hex {
    pub fn of(bytes: &[u8]) -> Sha256Hex {
        Sha256Hex(Sha256::digest(bytes).into())
    }

    pub fn from_digest(digest: [u8; 32]) -> Sha256Hex {
        Sha256Hex(digest)
    }

    pub fn hex(&self) -> String {
        let mut text = [0u8; 64];
        self.write_hex(&mut text);
        std::str::from_utf8(&text)
            .expect("hex digits are ASCII")
            .to_owned()
    }

    /// Parses 64 lowercase hex digits (what [`Sha256Hex::hex`] writes), without the error
    /// text: the fast path for names and columns this program wrote itself.
    pub fn from_lower_hex(text: &[u8]) -> Option<Sha256Hex> {
        // A table instead of a branch per character, and one check at the end: a plan of a
        // hundred thousand cached requests reads a few hundred thousand of these.
        let text: &[u8; 64] = text.try_into().ok()?;
        let mut out = [0u8; 32];
        let mut invalid = 0u8;
        for (byte, pair) in out.iter_mut().zip(text.chunks_exact(2)) {
            let (high, low) = (
                HEX_VALUE[usize::from(pair[0])],
                HEX_VALUE[usize::from(pair[1])],
            );
            invalid |= high | low;
            *byte = (high << 4) | low;
        }
        (invalid & NOT_HEX == 0).then_some(Sha256Hex(out))
    }

    /// The first byte: which of the 256 object folders holds it.
    pub fn first_byte(&self) -> u8 {
        self.0[0]
    }

    /// The 64 lowercase hex digits into `out`, without allocating.
    pub fn write_hex(&self, out: &mut [u8; 64]) {
        for (pair, byte) in out.chunks_exact_mut(2).zip(self.0) {
            pair[0] = HEX_DIGITS[usize::from(byte >> 4)];
            pair[1] = HEX_DIGITS[usize::from(byte & 0xf)];
        }
    }
}

/// A hasher for [`Sha256Hex`] values (keys, object ids): their bytes are already uniformly
/// random, so eight of them are as good a hash as SipHash of all 32, at a fraction of the cost.
/// Only sound for digests: use [`KeySet`] / [`KeyMap`], never for attacker-chosen data.
#[derive(Clone, Copy, Default)]
pub struct DigestHasher(u64);

impl std::hash::Hasher for DigestHasher {
    fn finish(&self) -> u64 {
        self.0
    }

    fn write(&mut self, bytes: &[u8]) {
        match bytes.first_chunk::<8>() {
            Some(first) => self.0 ^= u64::from_le_bytes(*first),
            // Not a digest (the length prefix goes through `write_usize`): still a hash.
            None => {
                for &b in bytes {
                    self.0 = self.0.rotate_left(8) ^ u64::from(b);
                }
            }
        }
    }

    fn write_usize(&mut self, n: usize) {
        // The length prefix of the 32 bytes: a constant, mixed in without spoiling them.
        self.0 ^= n as u64;
    }
}

pub type DigestBuildHasher = std::hash::BuildHasherDefault<DigestHasher>;
/// A set of keys (or object ids), hashed by [`DigestHasher`].
pub type KeySet = std::collections::HashSet<Sha256Hex, DigestBuildHasher>;
/// A map from keys (or object ids), hashed by [`DigestHasher`].
pub type KeyMap<V> = std::collections::HashMap<Sha256Hex, V, DigestBuildHasher>;

impl fmt::Display for Sha256Hex {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.hex())
    }
}

impl fmt::Debug for Sha256Hex {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Sha256Hex({})", self.hex())
    }
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("`{0}` is not a SHA-256 (64 hex digits)")]
pub struct ParseShaError(String);

impl FromStr for Sha256Hex {
    type Err = ParseShaError;
    fn from_str(text: &str) -> Result<Sha256Hex, ParseShaError> {
        let mut out = [0u8; 32];
        hex::decode_to_slice(text, &mut out).map_err(|_| ParseShaError(text.to_string()))?;
        Ok(Sha256Hex(out))
    }
}

impl Serialize for Sha256Hex {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&self.hex())
    }
}

impl<'de> Deserialize<'de> for Sha256Hex {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Sha256Hex, D::Error> {
        String::deserialize(d)?
            .parse()
            .map_err(serde::de::Error::custom)
    }
}

/// The identity of one request's output: the same key means the same video may be reused.
pub type RequestKey = Sha256Hex;

/// Everything that decides a request's output. Field order is the canonical order.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct KeyInput<'a> {
    /// Who renders: the provider's identity (its name, or the default provider's whole base
    /// URL), since two servers give different videos. Version 1 keyed the bare host.
    pub provider: &'a str,
    pub model: &'a Model,
    pub size: Size,
    pub seconds: Seconds,
    pub prompt: &'a str,
    /// Content hash of the first-frame image, never its path.
    pub reference: Option<Sha256Hex>,
    /// Takes of one shot are distinct renders, so each has its own key.
    pub take: u32,
}

impl KeyInput<'_> {
    pub fn key(&self) -> RequestKey {
        self.take_keys().key(self.take)
    }

    /// The keys of every take of this input (`take` is ignored): the canonical encoding up to
    /// the take is hashed once, then each take only adds its number.
    pub fn take_keys(&self) -> TakeKeys {
        // Encoded with take 0, the encoding ends in `"take":0}`: everything before the `0` is
        // the same for every take (the take is the last field).
        let encoded = KeyInput { take: 0, ..*self }.encoding();
        let prefix = encoded
            .strip_suffix(TAKE_ZERO_SUFFIX)
            .expect("the take is the last field of a key");
        TakeKeys {
            prefix: Sha256::new_with_prefix(prefix),
        }
    }

    /// The canonical encoding: this input's fields in order, after the key version, as JSON.
    fn encoding(&self) -> Vec<u8> {
        #[derive(Serialize)]
        struct Versioned<'a, 'b> {
            render_key_version: u32,
            #[serde(flatten)]
            input: &'a KeyInput<'b>,
        }
        serde_json::to_vec(&Versioned {
            render_key_version: KEY_VERSION,
            input: self,
        })
        .expect("a key input always serializes")
    }
}

const TAKE_ZERO_SUFFIX: &[u8] = b"0}";

/// The keys of the takes of one request, from its hashed encoding up to the take number.
#[derive(Clone)]
pub struct TakeKeys {
    prefix: Sha256,
}

impl TakeKeys {
    pub fn key(&self, take: u32) -> RequestKey {
        let mut hasher = self.prefix.clone();
        // `take` in decimal, as serde_json writes it, then the closing brace.
        let mut tail = [0u8; 11];
        let mut start = tail.len() - 1;
        tail[start] = b'}';
        let mut n = take;
        loop {
            start -= 1;
            tail[start] = b'0' + (n % 10) as u8;
            n /= 10;
            if n == 0 {
                break;
            }
        }
        hasher.update(&tail[start..]);
        Sha256Hex(hasher.finalize().into())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hex_is_the_hex_crates_lowercase_encoding() {
        for seed in [&b""[..], b"a", b"render", &[0xff; 40]] {
            let sha = Sha256Hex::of(seed);
            assert_eq!(sha.hex(), hex::encode(sha.0));
            assert_eq!(sha.hex().parse::<Sha256Hex>().unwrap(), sha);
        }
        let mut all = [0u8; 32];
        all.iter_mut()
            .enumerate()
            .for_each(|(i, b)| *b = (i * 8 + 7) as u8);
        assert_eq!(Sha256Hex(all).hex(), hex::encode(all));
    }

    #[test]
    fn lower_hex_parses_only_what_hex_writes() {
        for seed in [&b""[..], b"a", b"render"] {
            let sha = Sha256Hex::of(seed);
            assert_eq!(Sha256Hex::from_lower_hex(sha.hex().as_bytes()), Some(sha));
            assert_eq!(format!("{:02x}", sha.first_byte()), sha.hex()[..2]);
        }
        let good = Sha256Hex::of(b"x").hex();
        assert!(Sha256Hex::from_lower_hex(good.to_uppercase().as_bytes()).is_none());
        assert!(Sha256Hex::from_lower_hex(&good.as_bytes()[..63]).is_none());
        assert!(Sha256Hex::from_lower_hex(format!("{good}0").as_bytes()).is_none());
        assert!(Sha256Hex::from_lower_hex(good.replace('0', "g").as_bytes()).is_none());
        // The slow path still accepts what it accepted.
        assert_eq!(
            good.to_uppercase().parse::<Sha256Hex>().ok(),
            good.parse().ok()
        );
    }

    #[test]
    fn digest_hasher_spreads_keys_and_tells_them_apart() {
        use std::hash::BuildHasher;
        let keys: Vec<Sha256Hex> = (0u32..2000)
            .map(|i| Sha256Hex::of(&i.to_le_bytes()))
            .collect();
        let set: KeySet = keys.iter().copied().collect();
        assert_eq!(set.len(), keys.len());
        assert!(keys.iter().all(|k| set.contains(k)));
        assert!(!set.contains(&Sha256Hex::of(b"absent")));
        // Two keys that share their first eight bytes are still two entries.
        let (mut a, mut b) = ([7u8; 32], [7u8; 32]);
        a[31] = 1;
        b[31] = 2;
        let pair: KeySet = [Sha256Hex(a), Sha256Hex(b)].into_iter().collect();
        assert_eq!(pair.len(), 2);
        // The hash is the key's bytes (not a constant): the low bits differ between keys.
        let hashes: std::collections::HashSet<u64> = keys
            .iter()
            .map(|k| DigestBuildHasher::default().hash_one(k) & 0xfff)
            .collect();
        assert!(hashes.len() > 1000, "{} distinct low bits", hashes.len());
    }

    fn base_model() -> Model {
        Model("sora-2".into())
    }

    fn base(model: &Model) -> KeyInput<'_> {
        KeyInput {
            provider: "api.openai.com",
            model,
            size: "1280x720".parse().unwrap(),
            seconds: Seconds(8),
            prompt: "a lighthouse at dusk",
            reference: None,
            take: 1,
        }
    }

    #[test]
    fn key_is_stable_across_releases() {
        // If this changes, every studio's cache is invalidated: bump KEY_VERSION on purpose.
        let model = base_model();
        assert_eq!(
            base(&model).key().hex(),
            "66a8de5430ae1b9a25af79707e70ad8d59ba73fb8c60dc1c65eaf34d1396f339"
        );
    }

    #[test]
    fn every_field_changes_the_key() {
        let model = base_model();
        let pro = Model("sora-2-pro".into());
        let original = base(&model).key();
        let variants = [
            KeyInput {
                provider: "127.0.0.1",
                ..base(&model)
            },
            KeyInput {
                model: &pro,
                ..base(&model)
            },
            KeyInput {
                size: "720x1280".parse().unwrap(),
                ..base(&model)
            },
            KeyInput {
                seconds: Seconds(4),
                ..base(&model)
            },
            KeyInput {
                prompt: "a lighthouse at dawn",
                ..base(&model)
            },
            KeyInput {
                reference: Some(Sha256Hex::of(b"png")),
                ..base(&model)
            },
            KeyInput {
                take: 2,
                ..base(&model)
            },
        ];
        let mut seen = std::collections::HashSet::from([original]);
        for variant in variants {
            assert!(seen.insert(variant.key()), "{variant:?} collided");
        }
    }

    #[test]
    fn take_keys_are_the_keys_of_each_take() {
        let model = base_model();
        let input = base(&model);
        let takes = input.take_keys();
        for take in [1, 2, 9, 10, 100, u32::MAX] {
            // The whole encoding hashed at once, as version 2 has always been keyed.
            let whole = KeyInput {
                take,
                ..input.clone()
            }
            .encoding();
            assert!(whole.ends_with(format!(r#","take":{take}}}"#).as_bytes()));
            assert_eq!(takes.key(take), Sha256Hex::of(&whole));
        }
    }

    #[test]
    fn sha_round_trips_through_hex() {
        let sha = Sha256Hex::of(b"abc");
        assert_eq!(
            sha.hex(),
            "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
        );
        assert_eq!(sha.hex().parse::<Sha256Hex>().unwrap(), sha);
        assert!("xyz".parse::<Sha256Hex>().is_err());
    }
}
