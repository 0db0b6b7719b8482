//! Limits on what one client, or all of them together, may hold of a node:
//! failed authentications per client address ([`AuthThrottle`]) and open
//! live streams per key and in all ([`StreamSlots`]). Connection limits and
//! timeouts are in [`super::serve`]. The settings are in `config::Limits`;
//! docs/security.md lists them.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use crate::platform::config::Limits;
use crate::platform::ids::KeyId;

/// The window failed authentications are counted in.
pub const AUTH_FAILURE_WINDOW: Duration = Duration::from_secs(60);
/// Client addresses tracked at most; beyond it the stalest are forgotten.
pub const MAX_TRACKED_ADDRESSES: usize = 10_000;

/// Everything a node limits per client, shared by the request handlers.
pub struct Guards {
    pub auth: AuthThrottle,
    pub streams: Arc<StreamSlots>,
}

impl Guards {
    pub fn new(limits: &Limits) -> Guards {
        Guards {
            auth: AuthThrottle::new(limits.auth_failures_per_minute),
            streams: Arc::new(StreamSlots {
                max_total: limits.max_streams,
                max_per_key: limits.max_streams_per_key,
                open: Mutex::new(OpenStreams::default()),
            }),
        }
    }
}

/// Counts failed authentications per client address (IPv6 per /64, what
/// one client usually holds) in fixed one-minute windows.
pub struct AuthThrottle {
    per_window: u32,
    windows: Mutex<HashMap<IpAddr, (Instant, u32)>>,
}

impl AuthThrottle {
    pub fn new(per_window: u32) -> AuthThrottle {
        AuthThrottle {
            per_window,
            windows: Mutex::new(HashMap::new()),
        }
    }

    /// How long `ip` must wait, when it has used up its failures.
    pub fn blocked(&self, ip: IpAddr) -> Option<Duration> {
        if self.per_window == 0 {
            return None;
        }
        let windows = self.windows.lock().ok()?;
        let (started, failures) = windows.get(&client(ip))?;
        let elapsed = started.elapsed();
        (*failures >= self.per_window && elapsed < AUTH_FAILURE_WINDOW)
            .then(|| AUTH_FAILURE_WINDOW - elapsed)
    }

    /// Records one failed authentication from `ip`.
    pub fn failed(&self, ip: IpAddr) {
        if self.per_window == 0 {
            return;
        }
        let Ok(mut windows) = self.windows.lock() else {
            return;
        };
        let ip = client(ip);
        if windows.len() >= MAX_TRACKED_ADDRESSES && !windows.contains_key(&ip) {
            windows.retain(|_, (started, _)| started.elapsed() < AUTH_FAILURE_WINDOW);
            if windows.len() >= MAX_TRACKED_ADDRESSES {
                let stalest = windows
                    .iter()
                    .min_by_key(|(_, (started, _))| *started)
                    .map(|(ip, _)| *ip);
                if let Some(stalest) = stalest {
                    windows.remove(&stalest);
                }
            }
        }
        let entry = windows.entry(ip).or_insert((Instant::now(), 0));
        if entry.0.elapsed() >= AUTH_FAILURE_WINDOW {
            *entry = (Instant::now(), 0);
        }
        entry.1 = entry.1.saturating_add(1);
    }
}

/// The part of an address that names one client.
fn client(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
            Some(v4) => IpAddr::V4(v4),
            None => {
                let prefix = u128::from(v6) & !((1u128 << 64) - 1);
                IpAddr::V6(prefix.into())
            }
        },
        v4 => v4,
    }
}

#[derive(Default)]
struct OpenStreams {
    total: usize,
    per_key: HashMap<KeyId, usize>,
}

/// Open live streams of this node, in all and per key.
pub struct StreamSlots {
    max_total: usize,
    max_per_key: usize,
    open: Mutex<OpenStreams>,
}

/// Which stream limit a new stream would exceed.
#[derive(Debug, PartialEq, Eq)]
pub enum StreamLimit {
    PerKey(usize),
    Total(usize),
}

/// One open stream; dropping it frees the slot.
pub struct StreamSlot {
    slots: Arc<StreamSlots>,
    key: KeyId,
}

impl StreamSlots {
    pub fn acquire(self: &Arc<Self>, key: KeyId) -> Result<StreamSlot, StreamLimit> {
        let Ok(mut open) = self.open.lock() else {
            return Err(StreamLimit::Total(self.max_total));
        };
        if open.total >= self.max_total {
            return Err(StreamLimit::Total(self.max_total));
        }
        let of_key = open.per_key.get(&key).copied().unwrap_or(0);
        if of_key >= self.max_per_key {
            return Err(StreamLimit::PerKey(self.max_per_key));
        }
        open.total += 1;
        open.per_key.insert(key, of_key + 1);
        Ok(StreamSlot {
            slots: self.clone(),
            key,
        })
    }
}

impl Drop for StreamSlot {
    fn drop(&mut self) {
        let mut open = match self.slots.open.lock() {
            Ok(open) => open,
            Err(poisoned) => poisoned.into_inner(),
        };
        open.total = open.total.saturating_sub(1);
        if let Some(count) = open.per_key.get_mut(&self.key) {
            *count = count.saturating_sub(1);
            if *count == 0 {
                open.per_key.remove(&self.key);
            }
        }
    }
}
