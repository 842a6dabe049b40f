//! How a group message travels, with the state of each way: Plumtree's eager peers, the
//! ring's pending pushes.

use super::plumtree::EagerSet;
use super::ring::Ring;

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
