//! FxHash (rustc's hasher): a fast, non-keyed hash for tables whose keys come from the config
//! (host names, static paths, upstream addresses), never chosen by clients. Where a client
//! only looks keys up, SipHash would cost more than the lookup it guards.

use std::collections::{HashMap, HashSet};
use std::hash::{BuildHasherDefault, Hasher};

const K: u64 = 0x51_7c_c1_b7_27_22_0a_95;

#[derive(Default)]
pub struct FxHasher(u64);

impl FxHasher {
    #[inline]
    fn add(&mut self, word: u64) {
        self.0 = (self.0.rotate_left(5) ^ word).wrapping_mul(K);
    }
}

impl Hasher for FxHasher {
    fn write(&mut self, bytes: &[u8]) {
        let mut words = bytes.chunks_exact(8);
        for w in &mut words {
            let mut v = [0u8; 8];
            v.copy_from_slice(w);
            self.add(u64::from_le_bytes(v));
        }
        let rest = words.remainder();
        if !rest.is_empty() {
            self.add(rest.iter().enumerate().fold(0u64, |v, (i, &b)| v | u64::from(b) << (8 * i)));
        }
    }
    fn write_u8(&mut self, n: u8) {
        self.add(u64::from(n));
    }
    fn write_u16(&mut self, n: u16) {
        self.add(u64::from(n));
    }
    fn write_u32(&mut self, n: u32) {
        self.add(u64::from(n));
    }
    fn write_u64(&mut self, n: u64) {
        self.add(n);
    }
    fn write_usize(&mut self, n: usize) {
        self.add(n as u64);
    }
    fn finish(&self) -> u64 {
        self.0
    }
}

pub type FxBuild = BuildHasherDefault<FxHasher>;
pub type FxHashMap<K, V> = HashMap<K, V, FxBuild>;
pub type FxHashSet<K> = HashSet<K, FxBuild>;

#[cfg(test)]
mod tests {
    use super::*;
    use std::hash::{BuildHasher, Hash};

    #[test]
    fn equal_keys_hash_equal_and_lengths_matter() {
        let h = |v: &dyn Fn(&mut FxHasher)| {
            let mut s = FxBuild::default().build_hasher();
            v(&mut s);
            s.finish()
        };
        assert_eq!(h(&|s| b"api.example.com"[..].hash(s)), h(&|s| b"api.example.com"[..].hash(s)));
        assert_ne!(h(&|s| b"a"[..].hash(s)), h(&|s| b"a\0"[..].hash(s)));
        let a: std::net::SocketAddr = "127.0.0.1:80".parse().expect("addr");
        let b: std::net::SocketAddr = "127.0.0.1:81".parse().expect("addr");
        assert_ne!(h(&|s| a.hash(s)), h(&|s| b.hash(s)));
    }
}
