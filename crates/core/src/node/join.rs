//! The node's side of the auth servers: which server it asks, whether the last attempt was
//! answered, the handshakes in flight, the cookie and the pinned server keys. `Node` drives
//! it (it holds our keys and sends); this part decides when to turn to another server.

use ed25519_dalek::VerifyingKey;
use p2pchat_proto::wire::Key;
use std::net::SocketAddr;
use std::time::Duration;

/// A Noise handshake in flight: the tag the server echoes, its state, and the server key it
/// was made for.
pub(super) type Handshake = ([u8; 8], snow::HandshakeState, Key);

/// Sign-in and polling state towards the auth servers.
pub(super) struct AuthClient {
    /// The configured servers, the first one first (they share one database and key).
    servers: Vec<SocketAddr>,
    /// Index of the server asked now.
    current: usize,
    /// When the node last turned to another server, and when it last asked one.
    switched: Duration,
    asked: Option<Duration>,
    /// The request id of the current signup/signin.
    pub(super) req: u64,
    /// Waiting for an answer to `req`.
    pub(super) pending: bool,
    /// Attempts since the last answer.
    pub(super) attempts: u32,
    /// When a server last answered anything.
    pub(super) last_reply: Option<Duration>,
    /// What the node last reported about the server (`Event::AuthServer`).
    pub(super) reachable: bool,
    /// Handshakes in flight, newest last. Several, so a slow answer to an earlier attempt
    /// counts.
    pub(super) hs: Vec<Handshake>,
    /// This attempt's key reply was already answered with a hello.
    pub(super) hello_sent: bool,
    /// The last cookie, the key it came with, and when.
    pub(super) cookie: Option<([u8; 16], Key, Duration)>,
    /// A changed server key was already reported.
    pub(super) key_change_reported: bool,
    /// The pinned server keys: X25519 (links, Noise), Ed25519 (certificates).
    pub(super) server_dh: Option<Key>,
    pub(super) server_sign: Option<(Key, VerifyingKey)>,
}

impl AuthClient {
    pub(super) fn new(first: SocketAddr, more: &[SocketAddr]) -> Self {
        AuthClient {
            servers: std::iter::once(first).chain(more.iter().copied()).collect(),
            current: 0,
            switched: Duration::ZERO,
            asked: None,
            req: 0,
            pending: true,
            attempts: 0,
            last_reply: None,
            reachable: true,
            hs: Vec::new(),
            hello_sent: false,
            cookie: None,
            key_change_reported: false,
            server_dh: None,
            server_sign: None,
        }
    }

    /// The server asked now.
    pub(super) fn addr(&self) -> SocketAddr {
        self.servers[self.current]
    }

    /// All configured servers, for messages.
    pub(super) fn servers(&self) -> &[SocketAddr] {
        &self.servers
    }

    /// A sign-in attempt starts now; returns whether the previous one went unanswered.
    pub(super) fn attempt(&mut self, now: Duration) -> bool {
        let unanswered = self
            .asked
            .is_some_and(|asked| self.last_reply.is_none_or(|r| r < asked));
        self.asked = Some(now);
        unanswered
    }

    /// The server is silent as a member sees it: nothing for `unreachable`.
    pub(super) fn silent(&self, now: Duration, unreachable: Duration) -> bool {
        self.last_reply
            .is_none_or(|t| now.saturating_sub(t) > unreachable)
    }

    /// Whether a member whose server is silent should turn to the next one: there is one,
    /// and the last switch was longer ago than `unreachable` (it had its chance).
    pub(super) fn may_switch(&self, now: Duration, unreachable: Duration) -> bool {
        self.servers.len() > 1 && now.saturating_sub(self.switched) > unreachable
    }

    /// Turns to the next server; false when there is no other. The cookie was the old
    /// server's; the caller forgets its link to "the server" (the other process counts its
    /// own epoch).
    pub(super) fn switch(&mut self, now: Duration) -> bool {
        if self.servers.len() < 2 {
            return false;
        }
        self.current = (self.current + 1) % self.servers.len();
        self.switched = now;
        self.cookie = None;
        self.hello_sent = false;
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn addr(port: u16) -> SocketAddr {
        SocketAddr::from(([127, 0, 0, 1], port))
    }

    fn ms(v: u64) -> Duration {
        Duration::from_millis(v)
    }

    #[test]
    fn an_unanswered_attempt_turns_to_the_next_server_and_round() {
        let mut a = AuthClient::new(addr(1), &[addr(2), addr(3)]);
        assert!(!a.attempt(ms(0)), "the first attempt follows nothing");
        assert!(a.attempt(ms(300)), "nothing came back");
        assert!(a.switch(ms(300)));
        assert_eq!(a.addr(), addr(2));
        a.last_reply = Some(ms(350));
        assert!(!a.attempt(ms(900)), "answered");
        a.switch(ms(900));
        a.switch(ms(900));
        assert_eq!(a.addr(), addr(1), "round and round");
    }

    #[test]
    fn one_server_never_switches_and_members_wait_before_switching_again() {
        let mut one = AuthClient::new(addr(1), &[]);
        assert!(!one.switch(ms(0)));
        assert!(!one.may_switch(ms(10_000), ms(3_000)));
        let mut two = AuthClient::new(addr(1), &[addr(2)]);
        two.cookie = Some(([1; 16], [2; 32], ms(0)));
        assert!(two.silent(ms(4_000), ms(3_000)));
        assert!(two.may_switch(ms(4_000), ms(3_000)));
        assert!(two.switch(ms(4_000)));
        assert_eq!(two.cookie, None, "a cookie is bound to its server");
        assert!(
            !two.may_switch(ms(6_000), ms(3_000)),
            "the new server gets its time"
        );
        two.last_reply = Some(ms(6_500));
        assert!(!two.silent(ms(7_000), ms(3_000)));
    }
}
