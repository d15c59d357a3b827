//! Why a primary-role decision came out as it did: structured while deciding, rendered to text
//! only at the edge (log lines, Events, the webhook, the state document).

use std::fmt;

use jiff::SignedDuration;

use pgdr_core::contract::fence::FenceReason;
use pgdr_core::contract::lsn::format as lsn_text;
use pgdr_core::lineage::Lineage;

use crate::sample::lineage_text;
use crate::witness::Witness;

/// One reason of a primary-role decision, in the order the decision found it. `peer` is the
/// peer site's name.
#[derive(Clone, Debug, PartialEq)]
pub enum Reason {
    /// Both sites are writable; how the peer's timeline relates to ours.
    SplitBrain { peer: String, lineage: Lineage },
    /// The peer's promotion is newer: this site fences itself and keeps its WAL past the fork.
    PeerNewer {
        peer: String,
        fork_lsn: u64,
        fork_pending: bool,
    },
    /// This site's promotion is newer: the peer must fence itself.
    WeNewer { peer: String },
    /// The peer runs another database at a higher epoch: this site was initialised afresh.
    ForeignNewer { peer: String, epoch: u64 },
    /// The tunnel reaches another database.
    DifferentSystem,
    /// Both promoted at the same epoch: a person chooses.
    EpochTie { epoch: u64 },
    /// This site holds the promotion record: the peer must be fenced.
    PromotionRecordHere { peer: String },
    /// No lineage proof of authority: a person chooses.
    NoLineageProof,
    /// The peer is a standby: one writable primary.
    PeerStandby { peer: String },
    /// The peer answered but could not be identified.
    PeerUnidentified { peer: String, why: String },
    /// The peer gives no answer through the tunnel.
    PeerSilent { peer: String, why: String },
    /// One witness's answer (its own reason text).
    Witness(Witness),
    /// No witness configured: a silent peer alone never fences.
    NoWitness,
    /// A witness keeps the application here.
    WitnessKeepsHere,
    /// No witness says the application moved.
    NoWitnessSaysMoved,
    /// A witness says the application moved, but this site's promotion is the newest it knows.
    NewestPromotionHere { peer: String, own: u64, seen: u64 },
    /// The application moved for `count` samples in a row: this site fences itself.
    Moved { peer: String, count: u32 },
    /// The application moved: `count` of `threshold` samples.
    MovedCounting {
        peer: String,
        count: u32,
        threshold: u32,
    },
    /// `FAILOVER_FENCING=observe`: the fence it would write.
    FencingObserve(FenceReason),
    /// `FAILOVER_MODE=observe`: a witness-based fence held back.
    ModeObserve,
    /// Too long since the last sample: the "moved" count restarts.
    GapRestartsCount(SignedDuration),
    /// An overlapping run's sample: not counted again.
    Overlapping(SignedDuration),
}

impl fmt::Display for Reason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Reason::SplitBrain { peer, lineage } => write!(
                f,
                "SPLIT BRAIN: {peer} is a writable primary too, {}",
                lineage_text(lineage)
            ),
            Reason::PeerNewer {
                peer,
                fork_lsn,
                fork_pending,
            } => write!(
                f,
                "{peer}'s promotion is newer: it is authoritative, this site fences itself \
                 (hold) and keeps its WAL past {}{}",
                lsn_text(*fork_lsn),
                if *fork_pending {
                    " (or a little later: its switchpoint is not yet published)"
                } else {
                    ""
                }
            ),
            Reason::WeNewer { peer } => write!(
                f,
                "this site's promotion is newer than {peer}'s: this site is authoritative \
                 and keeps writing; {peer} must fence itself (its agent does, or `kubectl \
                 pgdr fence {peer}`)"
            ),
            Reason::ForeignNewer { peer, epoch } => write!(
                f,
                "{peer} runs another database at a higher promotion epoch ({epoch}): this \
                 site was initialised afresh beside the authority (a lost site rebuilt with \
                 its primary values?). It fences itself (hold, read-only, nothing discarded); \
                 rebuild it as a standby of {peer} (chart README \"Rebuild a lost site\")"
            ),
            Reason::DifferentSystem => f.write_str(
                "the tunnel reaches another database, not this pair's peer: nothing done; \
                 check the tunnel Service's target",
            ),
            Reason::EpochTie { epoch } => write!(
                f,
                "both sites were promoted at epoch {epoch}: neither is authoritative and \
                 neither is advertised; a person chooses the site to keep (`kubectl pgdr \
                 fence SITE` on the other)"
            ),
            Reason::PromotionRecordHere { peer } => write!(
                f,
                "this site holds the promotion record: it is authoritative and keeps \
                 writing; {peer} must be fenced (`kubectl pgdr fence {peer}`)"
            ),
            Reason::NoLineageProof => f.write_str(
                "no lineage proof of authority: nothing fenced automatically; a person must \
                 choose the site to keep (`kubectl pgdr fence SITE` on the other)",
            ),
            Reason::PeerStandby { peer } => {
                write!(f, "{peer} is a standby (in recovery): one writable primary")
            }
            Reason::PeerUnidentified { peer, why } => write!(
                f,
                "{peer} answered through the tunnel but could not be identified ({why}): alive, \
                 role unknown; nothing done"
            ),
            Reason::PeerSilent { peer, why } => {
                write!(f, "{peer} gives no answer through the tunnel: {why}")
            }
            Reason::Witness(w) => f.write_str(w.reason()),
            Reason::NoWitness => {
                f.write_str("no witness configured: a silent peer alone never fences")
            }
            Reason::WitnessKeepsHere => {
                f.write_str("a witness keeps the application here: warning only")
            }
            Reason::NoWitnessSaysMoved => {
                f.write_str("no witness says the application moved: warning only")
            }
            Reason::NewestPromotionHere { peer, own, seen } => write!(
                f,
                "a witness says the application runs on {peer}, but this site's promotion (epoch \
                 {own}) is the newest this site knows of ({peer} last seen at epoch {seen}): it \
                 does not fence itself in favour of a peer it cannot see"
            ),
            Reason::Moved { peer, count } => write!(
                f,
                "the application runs on {peer} ({count} samples in a row): this isolated \
                 primary fences itself (hold) and stops taking writes"
            ),
            Reason::MovedCounting {
                peer,
                count,
                threshold,
            } => write!(
                f,
                "a witness says the application runs on {peer}: {count} of {threshold} samples"
            ),
            Reason::FencingObserve(reason) => write!(
                f,
                "FAILOVER_FENCING=observe: WOULD fence this site ({}), nothing changed",
                reason.as_str()
            ),
            Reason::ModeObserve => {
                f.write_str("FAILOVER_MODE=observe: WOULD fence this site, nothing changed")
            }
            Reason::GapRestartsCount(gap) => {
                write!(f, "{gap:#} since the last sample: the count restarts")
            }
            Reason::Overlapping(gap) => write!(
                f,
                "{gap:#} after the last sample (an overlapping run): not counted again"
            ),
        }
    }
}

/// Reasons as text (for logs, Events, the state document).
pub fn render(reasons: &[Reason]) -> Vec<String> {
    reasons.iter().map(ToString::to_string).collect()
}
