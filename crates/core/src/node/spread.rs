//! How a group message travels, chosen in one place ([`Mode::choose`]), with the state of
//! each way: Plumtree's eager peers, the ring's pending pushes.

use super::plumtree::EagerSet;
use super::ring::Ring;
use crate::config::NodeConfig;

/// The ways a group message can travel.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Mode {
    /// A small group (at most `flood_below` live members, all known): the author sends every
    /// member a copy, and nobody forwards it.
    Flood,
    /// Ring broadcast over full membership (see [`super::ring`]).
    Ring,
    /// Plumtree: eager push along a tree shaped by prunes and grafts.
    Plumtree,
    /// Push gossip to `fanout` random members.
    Push,
}

impl Mode {
    /// The way for a view of `live` members; `partial` when the network is larger than our
    /// view (no flooding, no ring: neither works without full membership).
    pub(super) fn choose(cfg: &NodeConfig, live: usize, partial: bool) -> Mode {
        if live <= cfg.flood_below && !partial {
            Mode::Flood
        } else if cfg.ring && !partial {
            Mode::Ring
        } else if cfg.plumtree {
            Mode::Plumtree
        } else {
            Mode::Push
        }
    }

    /// Whether a push that does not travel the ring goes to Plumtree's eager peers (else to
    /// `fanout` random members). True in Plumtree mode, and in ring mode when Plumtree is on:
    /// a plain push still arrives there from a peer that counts the group as small or its
    /// view as partial, and is passed on along the tree.
    pub(super) fn eager(self, cfg: &NodeConfig) -> bool {
        cfg.plumtree && self != Mode::Flood
    }
}

#[derive(Default)]
pub(super) struct Spread {
    /// Plumtree eager-push peers (see [`super::plumtree`]).
    pub(super) eager: EagerSet,
    /// Ring broadcast state (full membership above `flood_below`).
    pub(super) ring: Ring,
    /// An own group message was written while no member was reachable: nobody has it yet
    /// (cleared once a peer's digest shows it has all of ours).
    pub(super) own_unspread: bool,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn small_groups_flood_full_views_ring_partial_views_use_the_tree() {
        let cfg = NodeConfig {
            flood_below: 5,
            ring: true,
            plumtree: true,
            ..NodeConfig::default()
        };
        assert_eq!(Mode::choose(&cfg, 5, false), Mode::Flood);
        assert_eq!(Mode::choose(&cfg, 6, false), Mode::Ring);
        assert_eq!(
            Mode::choose(&cfg, 3, true),
            Mode::Plumtree,
            "never flood a partial view"
        );
        assert!(!Mode::Flood.eager(&cfg));
        assert!(
            Mode::Ring.eager(&cfg),
            "plain pushes in ring mode follow the tree"
        );
        let plain = NodeConfig {
            ring: false,
            plumtree: false,
            ..cfg
        };
        assert_eq!(Mode::choose(&plain, 6, false), Mode::Push);
        assert!(!Mode::Push.eager(&plain));
    }
}
