//! Who each endpoint is (user, password, keys, address), and second devices.
//!
//! Second devices (`--devices K`): node `nodes + j` is a second device of user `u{j}`, with
//! its own keys and node id. It signs in once its user's first device is in. Mid-talk each
//! goes away; the odd ones return from their data dir (same id), the even ones without it
//! (a reinstall: new keys, so a new device id, which must catch up everything).

use crate::queue::Ev;
use crate::{addr_of, Sim, AUTH, WALL_MS};
use p2pchat_core::{Host, Node, NodeParams};

impl Sim {
    /// A 32-byte seed for an endpoint's keys and handshakes, derived from the run's seed.
    pub(crate) fn crypto_seed(&self, salt: u64) -> [u8; 32] {
        let mut out = [0u8; 32];
        let a = self.cfg.seed.wrapping_mul(0xA24B_AED4_963E_E407) ^ salt;
        let b = salt.wrapping_mul(0x9FB2_1C65_1E98_DF25).rotate_left(17) ^ self.cfg.seed;
        out[..8].copy_from_slice(&a.to_le_bytes());
        out[8..16].copy_from_slice(&b.to_le_bytes());
        out[16..24].copy_from_slice(&(a ^ b).to_le_bytes());
        out[24..].copy_from_slice(&salt.to_le_bytes());
        out
    }

    pub(crate) fn params(&self, i: usize, signup: bool) -> NodeParams {
        // (A second device signs in as its user.)
        let u = self.owner(i);
        NodeParams {
            auth_key: None,
            user: format!("u{u}"),
            password: format!("pw{u}"),
            signup,
            auth_addr: addr_of(self.port_base, AUTH),
            auth_fallbacks: Vec::new(),
        }
    }

    /// Node `i`'s address and seeds; `boot` draws new handshake randomness for a restart
    /// (its keys come from its records).
    pub(crate) fn host(&self, i: usize, boot: u64) -> Host {
        Host {
            crypto_seed: self.crypto_seed((i as u64 + 1) ^ (boot << 32)),
            wall_ms: WALL_MS,
            local_addr: addr_of(self.port_base, i),
            seed: self
                .cfg
                .seed
                .wrapping_mul(0x9E37_79B9_7F4A_7C15)
                .wrapping_add(i as u64),
        }
    }

    /// The user of endpoint `i` (a second device belongs to user `u{i - nodes}`).
    pub(crate) fn owner(&self, i: usize) -> usize {
        if i > self.cfg.nodes {
            i - self.cfg.nodes
        } else {
            i
        }
    }

    pub(crate) fn schedule_devices(&mut self) {
        for j in 1..=self.cfg.devices {
            let t = self.cfg.join_gap_us() * (self.cfg.nodes + j) as u64;
            self.at(t, Ev::StartDevice(self.cfg.nodes + j));
        }
    }

    /// Signs in a second device once its user exists (a signin before the signup would be
    /// refused); until then it looks again every half second.
    pub(crate) fn start_device(&mut self, i: usize) {
        let first = self.owner(i);
        let user_exists = self.eps[first]
            .node
            .as_ref()
            .is_some_and(|n| n.node_id().is_some());
        if !user_exists {
            self.at(self.now + Self::ms(500), Ev::StartDevice(i));
            return;
        }
        let mut node = Node::new(
            self.node_cfg.clone(),
            self.device_params(i),
            self.host(i, self.crashes as u64),
            Self::dur(self.now),
        );
        node.set_crypto_memo(self.memo.clone());
        self.eps[i].node = Some(node);
        self.eps[i].started = true;
        self.drain(i);
    }

    fn device_params(&self, i: usize) -> NodeParams {
        NodeParams {
            signup: false,
            ..self.params(self.owner(i), false)
        }
    }

    /// Mid-talk, every second device goes away for a third of the talk.
    pub(crate) fn devices_come_and_go(&mut self, t0: u64, window: u64) {
        let down_for = (window / 3).max(Self::ms(3_000));
        for j in 1..=self.cfg.devices {
            let i = self.cfg.nodes + j;
            let at = t0 + window / 3 + Self::ms(20) * j as u64;
            self.crash_set.insert(i);
            self.at(at, Ev::Crash(i));
            let back = if j % 2 == 1 {
                Ev::Restart(i)
            } else {
                Ev::Reinstall(i)
            };
            self.at(at + down_for, back);
        }
    }

    /// A device back without its data dir: new keys, hence a new device of its user.
    pub(crate) fn reinstall(&mut self, i: usize) {
        self.eps[i].records.clear();
        self.checker.forget(i);
        self.crashes += 1;
        let old = self.host(i, self.crashes as u64);
        let host = Host {
            // New randomness, so new keys and request ids.
            crypto_seed: self.crypto_seed(u64::MAX / 2 - self.crashes as u64),
            wall_ms: WALL_MS,
            seed: old.seed ^ (self.crashes as u64).rotate_left(32),
            ..old
        };
        let mut node = Node::new(
            self.node_cfg.clone(),
            self.device_params(i),
            host,
            Self::dur(self.now),
        );
        node.set_crypto_memo(self.memo.clone());
        self.eps[i].node = Some(node);
        self.drain(i);
    }
}
