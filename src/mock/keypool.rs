//! Private keys for CreateKeysAndCertificate.
//!
//! AWS returns an RSA-2048 key; generating one costs tens of milliseconds of CPU, far more than
//! the rest of a provisioning flow. Background threads (one per core) keep a pool filled ahead
//! of demand, and the unused part of the pool is cached on disk under the PKI directory across
//! runs. The generators run at the lowest scheduling priority (nice 19): they fill the pool with
//! idle CPU and yield to the flows they serve, so refilling during a run does not take CPU from
//! it.

use std::collections::VecDeque;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex};

use rcgen::KeyPair;

use crate::pki::{self, KeyAlgorithm};

/// File (under the PKI directory) holding unused pooled RSA keys as PKCS#8 PEM blocks.
pub const POOL_FILE: &str = "rsa-key-pool.pem";

#[derive(Debug, Clone, Copy, Default, serde::Serialize, schemars::JsonSchema)]
pub struct KeyPoolStats {
    /// CreateKeysAndCertificate answers whose key came from the pool.
    pub served_from_pool: u64,
    /// Answers whose key was generated on the spot (the pool was empty).
    pub generated_inline: u64,
    /// Keys in the pool at the end.
    pub pooled: usize,
    /// Keys the background generators made.
    pub generated_background: u64,
    /// The CPU seconds the background generators spent on them.
    pub background_cpu_s: f64,
}

struct Shared {
    keys: Mutex<Pool>,
    wanted: Condvar,
    /// Notified each time a generated key joins the pool.
    filled: Condvar,
    target: usize,
    stop: AtomicBool,
    from_pool: AtomicU64,
    inline: AtomicU64,
    background: AtomicU64,
    background_cpu_ns: AtomicU64,
}

/// Supplies private keys of one algorithm.
pub struct KeyPool {
    alg: KeyAlgorithm,
    shared: Arc<Shared>,
    cache: Option<PathBuf>,
    workers: Mutex<Vec<std::thread::JoinHandle<()>>>,
}

/// Keys ready, and keys being generated (so several generators never overshoot the target).
#[derive(Default)]
struct Pool {
    ready: VecDeque<KeyPair>,
    generating: usize,
}

impl KeyPool {
    /// A pool for `alg`. RSA pools load `cache` (if present) and start background generators
    /// (one per core, lowest priority) keeping `target` keys ready; P-256 keys are cheap and
    /// generated on demand.
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
            keys: Mutex::new(Pool {
                ready: keys,
                generating: 0,
            }),
            wanted: Condvar::new(),
            filled: Condvar::new(),
            target,
            stop: AtomicBool::new(false),
            from_pool: AtomicU64::new(0),
            inline: AtomicU64::new(0),
            background: AtomicU64::new(0),
            background_cpu_ns: AtomicU64::new(0),
        });
        let generators = if alg == KeyAlgorithm::Rsa2048 && target > 0 {
            std::thread::available_parallelism().map_or(1, |n| n.get())
        } else {
            0
        };
        let workers = (0..generators)
            .filter_map(|_| {
                let shared = shared.clone();
                std::thread::Builder::new()
                    .name(GENERATOR_THREAD.into())
                    .spawn(move || fill(shared, alg))
                    .ok()
            })
            .collect();
        KeyPool {
            alg,
            shared,
            cache: if alg == KeyAlgorithm::Rsa2048 {
                cache
            } else {
                None
            },
            workers: Mutex::new(workers),
        }
    }

    pub fn algorithm(&self) -> KeyAlgorithm {
        self.alg
    }

    /// A key without waiting for a generation: a pooled RSA key, or a fresh P-256 key (cheap).
    /// `None` when the RSA pool is empty; [`KeyPool::take`] then generates one.
    pub fn try_take(&self) -> Option<KeyPair> {
        if self.alg != KeyAlgorithm::Rsa2048 {
            self.shared.inline.fetch_add(1, Ordering::Relaxed);
            return self.alg.generate().ok();
        }
        let key = {
            let mut keys = lock(&self.shared.keys);
            let key = keys.ready.pop_front();
            self.shared.wanted.notify_one();
            key
        }?;
        self.shared.from_pool.fetch_add(1, Ordering::Relaxed);
        Some(key)
    }

    /// Take a key: from the pool when one is ready, else generated now (on the caller's thread;
    /// call from a blocking context).
    pub fn take(&self) -> Result<KeyPair, rcgen::Error> {
        if self.alg == KeyAlgorithm::Rsa2048
            && let Some(key) = self.try_take()
        {
            return Ok(key);
        }
        self.shared.inline.fetch_add(1, Ordering::Relaxed);
        self.alg.generate()
    }

    pub fn stats(&self) -> KeyPoolStats {
        KeyPoolStats {
            served_from_pool: self.shared.from_pool.load(Ordering::Relaxed),
            generated_inline: self.shared.inline.load(Ordering::Relaxed),
            pooled: lock(&self.shared.keys).ready.len(),
            generated_background: self.shared.background.load(Ordering::Relaxed),
            background_cpu_s: self.shared.background_cpu_ns.load(Ordering::Relaxed) as f64 * 1e-9,
        }
    }

    /// Wait until at least `n` keys are ready, or `timeout` passes; whether they are.
    pub fn wait_for(&self, n: usize, timeout: std::time::Duration) -> bool {
        let keys = lock(&self.shared.keys);
        let (keys, _) = self
            .shared
            .filled
            .wait_timeout_while(keys, timeout, |k| k.ready.len() < n)
            .unwrap_or_else(|e| e.into_inner());
        keys.ready.len() >= n
    }

    /// Stop the generators and write the unused keys to the cache file.
    pub fn shutdown(&self) -> Result<usize, pki::PkiError> {
        self.shared.stop.store(true, Ordering::Relaxed);
        self.shared.wanted.notify_all();
        for worker in lock(&self.workers).drain(..) {
            let _ = worker.join();
        }
        let Some(path) = &self.cache else {
            return Ok(0);
        };
        let keys = lock(&self.shared.keys);
        if keys.ready.is_empty() {
            return Ok(0);
        }
        let text: String = keys.ready.iter().map(|k| k.serialize_pem()).collect();
        pki::write_file(path, text.as_bytes(), true)?;
        Ok(keys.ready.len())
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

/// Name of the pool's generator threads (its test finds them by it); Linux keeps 15 bytes of
/// a thread name.
pub const GENERATOR_THREAD: &str = "rsa-keygen";

fn fill(shared: Arc<Shared>, alg: KeyAlgorithm) {
    // Lowest priority for this thread only (on Linux the nice value is per thread): the pool
    // fills with idle CPU. Failing to lower it only costs fairness, so it is not an error.
    let _ = rustix::process::setpriority_process(None, 19);
    loop {
        {
            let mut keys = lock(&shared.keys);
            while keys.ready.len() + keys.generating >= shared.target
                && !shared.stop.load(Ordering::Relaxed)
            {
                keys = shared.wanted.wait(keys).unwrap_or_else(|e| e.into_inner());
            }
            if shared.stop.load(Ordering::Relaxed) {
                return;
            }
            keys.generating += 1;
        }
        let cpu0 = thread_cpu_ns();
        let generated = alg.generate();
        let cpu = thread_cpu_ns().saturating_sub(cpu0);
        shared.background_cpu_ns.fetch_add(cpu, Ordering::Relaxed);
        let mut keys = lock(&shared.keys);
        keys.generating -= 1;
        match generated {
            Ok(key) => {
                shared.background.fetch_add(1, Ordering::Relaxed);
                keys.ready.push_back(key);
                shared.filled.notify_all();
            }
            Err(e) => {
                tracing::error!("key pool generation failed: {e}");
                return;
            }
        }
    }
}

/// CPU time of the calling thread in nanoseconds.
fn thread_cpu_ns() -> u64 {
    let t = rustix::time::clock_gettime(rustix::time::ClockId::ThreadCPUTime);
    u64::try_from(t.tv_sec).unwrap_or(0) * 1_000_000_000 + u64::try_from(t.tv_nsec).unwrap_or(0)
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
    fn generators_fill_to_the_target_at_the_lowest_priority_without_overshooting() {
        let pool = KeyPool::new(KeyAlgorithm::Rsa2048, 3, None);
        assert!(pool.wait_for(3, std::time::Duration::from_secs(120)));
        {
            let keys = lock(&pool.shared.keys);
            assert_eq!(keys.ready.len(), 3);
            assert_eq!(keys.generating, 0, "no generator works past the target");
        }
        // Every generator thread of this process runs at nice 19 (field 19 of
        // /proc/self/task/<tid>/stat).
        let mut generators = 0;
        for task in std::fs::read_dir("/proc/self/task").unwrap() {
            let task = task.unwrap().path();
            let comm = std::fs::read_to_string(task.join("comm")).unwrap_or_default();
            if comm.trim() != GENERATOR_THREAD {
                continue;
            }
            let stat = std::fs::read_to_string(task.join("stat")).unwrap();
            let after_comm = &stat[stat.rfind(')').unwrap() + 2..];
            let nice: i32 = after_comm.split(' ').nth(16).unwrap().parse().unwrap();
            assert_eq!(nice, 19, "{}", task.display());
            generators += 1;
        }
        assert!(generators >= 1);
        let key = pool.take().unwrap();
        assert_eq!(key.algorithm(), &rcgen::PKCS_RSA_SHA256);
        assert_eq!(pool.stats().served_from_pool, 1);
        assert!(
            pool.wait_for(3, std::time::Duration::from_secs(120)),
            "refilled"
        );
        let stats = pool.stats();
        assert_eq!(stats.generated_background, 4);
        assert!(stats.background_cpu_s > 0.0);
        pool.shutdown().unwrap();
    }

    #[test]
    fn rsa_pool_survives_a_restart_through_its_cache_and_never_repeats_a_key() {
        let dir = tempfile::tempdir().unwrap();
        let cache = dir.path().join(POOL_FILE);
        let pool = KeyPool::new(KeyAlgorithm::Rsa2048, 0, Some(cache.clone()));
        // target 0: no background thread; seed the pool by hand.
        for _ in 0..3 {
            lock(&pool.shared.keys)
                .ready
                .push_back(KeyAlgorithm::Rsa2048.generate().unwrap());
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
