//! Private keys for CreateKeysAndCertificate.
//!
//! AWS returns an RSA-2048 key; generating one costs tens of milliseconds of CPU, far more than
//! the rest of a provisioning flow. A background thread keeps a pool filled ahead of demand, and
//! the unused part of the pool is cached on disk under the PKI directory across runs.

use std::collections::VecDeque;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex};

use rcgen::KeyPair;

use crate::pki::{self, KeyAlgorithm};

/// File (under the PKI directory) holding unused pooled RSA keys as PKCS#8 PEM blocks.
pub const POOL_FILE: &str = "rsa-key-pool.pem";

#[derive(Debug, Clone, Copy, Default, serde::Serialize)]
pub struct KeyPoolStats {
    pub served_from_pool: u64,
    pub generated_inline: u64,
    pub pooled: usize,
}

struct Shared {
    keys: Mutex<VecDeque<KeyPair>>,
    wanted: Condvar,
    target: usize,
    stop: AtomicBool,
    from_pool: AtomicU64,
    inline: AtomicU64,
}

/// Supplies private keys of one algorithm.
pub struct KeyPool {
    alg: KeyAlgorithm,
    shared: Arc<Shared>,
    cache: Option<PathBuf>,
    worker: Mutex<Option<std::thread::JoinHandle<()>>>,
}

impl KeyPool {
    /// A pool for `alg`. RSA pools load `cache` (if present) and start a background generator
    /// keeping `target` keys ready; P-256 keys are cheap and generated on demand.
    pub fn new(alg: KeyAlgorithm, target: usize, cache: Option<PathBuf>) -> KeyPool {
        let mut keys = VecDeque::new();
        if alg == KeyAlgorithm::Rsa2048
            && let Some(path) = &cache
            && let Ok(text) = std::fs::read_to_string(path)
        {
            for block in pem::parse_many(&text).unwrap_or_default() {
                let pem = pem::encode(&block);
                if let Ok(key) = KeyPair::from_pem(&pem)
                    && key.algorithm() == &rcgen::PKCS_RSA_SHA256
                {
                    keys.push_back(key);
                }
            }
            // Keys handed out must never be handed out again: the cache is rewritten at stop.
            let _ = std::fs::remove_file(path);
        }
        let shared = Arc::new(Shared {
            keys: Mutex::new(keys),
            wanted: Condvar::new(),
            target,
            stop: AtomicBool::new(false),
            from_pool: AtomicU64::new(0),
            inline: AtomicU64::new(0),
        });
        let worker = (alg == KeyAlgorithm::Rsa2048 && target > 0).then(|| {
            let shared = shared.clone();
            std::thread::Builder::new()
                .name("fleetstorm-keygen".into())
                .spawn(move || fill(shared, alg))
                .ok()
        });
        KeyPool {
            alg,
            shared,
            cache: if alg == KeyAlgorithm::Rsa2048 {
                cache
            } else {
                None
            },
            worker: Mutex::new(worker.flatten()),
        }
    }

    pub fn algorithm(&self) -> KeyAlgorithm {
        self.alg
    }

    /// Take a key: from the pool when one is ready, else generated now (on the caller's thread;
    /// call from a blocking context).
    pub fn take(&self) -> Result<KeyPair, rcgen::Error> {
        if self.alg == KeyAlgorithm::Rsa2048 {
            let popped = {
                let mut keys = lock(&self.shared.keys);
                let key = keys.pop_front();
                self.shared.wanted.notify_one();
                key
            };
            if let Some(key) = popped {
                self.shared.from_pool.fetch_add(1, Ordering::Relaxed);
                return Ok(key);
            }
        }
        self.shared.inline.fetch_add(1, Ordering::Relaxed);
        self.alg.generate()
    }

    pub fn stats(&self) -> KeyPoolStats {
        KeyPoolStats {
            served_from_pool: self.shared.from_pool.load(Ordering::Relaxed),
            generated_inline: self.shared.inline.load(Ordering::Relaxed),
            pooled: lock(&self.shared.keys).len(),
        }
    }

    /// Stop the generator and write the unused keys to the cache file.
    pub fn shutdown(&self) -> Result<usize, pki::PkiError> {
        self.shared.stop.store(true, Ordering::Relaxed);
        self.shared.wanted.notify_all();
        if let Some(worker) = lock(&self.worker).take() {
            let _ = worker.join();
        }
        let Some(path) = &self.cache else {
            return Ok(0);
        };
        let keys = lock(&self.shared.keys);
        if keys.is_empty() {
            return Ok(0);
        }
        let text: String = keys.iter().map(|k| k.serialize_pem()).collect();
        pki::write_file(path, text.as_bytes(), true)?;
        Ok(keys.len())
    }
}

impl Drop for KeyPool {
    fn drop(&mut self) {
        self.shared.stop.store(true, Ordering::Relaxed);
        self.shared.wanted.notify_all();
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

fn fill(shared: Arc<Shared>, alg: KeyAlgorithm) {
    loop {
        {
            let mut keys = lock(&shared.keys);
            while keys.len() >= shared.target && !shared.stop.load(Ordering::Relaxed) {
                keys = shared.wanted.wait(keys).unwrap_or_else(|e| e.into_inner());
            }
        }
        if shared.stop.load(Ordering::Relaxed) {
            return;
        }
        match alg.generate() {
            Ok(key) => lock(&shared.keys).push_back(key),
            Err(e) => {
                tracing::error!("key pool generation failed: {e}");
                return;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn p256_keys_are_generated_on_demand() {
        let pool = KeyPool::new(KeyAlgorithm::P256, 8, None);
        let key = pool.take().unwrap();
        assert_eq!(key.algorithm(), &rcgen::PKCS_ECDSA_P256_SHA256);
        assert_eq!(pool.stats().generated_inline, 1);
    }

    #[test]
    fn rsa_pool_survives_a_restart_through_its_cache_and_never_repeats_a_key() {
        let dir = tempfile::tempdir().unwrap();
        let cache = dir.path().join(POOL_FILE);
        let pool = KeyPool::new(KeyAlgorithm::Rsa2048, 0, Some(cache.clone()));
        // target 0: no background thread; seed the pool by hand.
        for _ in 0..3 {
            lock(&pool.shared.keys).push_back(KeyAlgorithm::Rsa2048.generate().unwrap());
        }
        let first = pool.take().unwrap().serialize_pem();
        assert_eq!(pool.stats().served_from_pool, 1);
        assert_eq!(pool.shutdown().unwrap(), 2);

        let again = KeyPool::new(KeyAlgorithm::Rsa2048, 0, Some(cache.clone()));
        assert_eq!(again.stats().pooled, 2);
        assert!(!cache.exists(), "cache must be consumed at load");
        let a = again.take().unwrap().serialize_pem();
        let b = again.take().unwrap().serialize_pem();
        assert_ne!(a, first);
        assert_ne!(b, first);
        assert_ne!(a, b);
        assert_eq!(again.stats().served_from_pool, 2);
    }
}
