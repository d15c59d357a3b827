//! Decision table. Each row: a policy tweak, the stored state, one sample, and what must come out.

use super::*;
use crate::state::StandbyState;

const T0: &str = "2026-03-01T12:00:00Z";

fn t(secs: i64) -> Timestamp {
    T0.parse::<Timestamp>().unwrap() + SignedDuration::from_secs(secs)
}

fn policy() -> Policy {
    crate::sample::fixtures::policy(Mode::Auto)
}

fn standby_leader() -> Leader {
    Leader {
        name: "dr-0".into(),
        role: "standby_leader".into(),
        state: "running".into(),
        replication_state: None,
        received_lsn: Some(5000),
        replayed_lsn: Some(5000),
        pause: false,
    }
}

fn no_answer() -> Probe {
    Probe::NoAnswer {
        reason: "connection refused".into(),
    }
}

/// A failed sample at `secs` with every guard passing.
fn failing(secs: i64) -> Sample {
    Sample {
        at: t(secs),
        run: "run-b".into(),
        probe: no_answer(),
        site: SiteConfig::Standby,
        leader: LocalLeader::Found(standby_leader()),
        witnesses: vec![Witness::Here("gslb.example resolves to 10.9.0.1".into())],
        hold: false,
        config_paused: false,
    }
}

/// Two failures already counted (at 0 s and 10 s), primary last seen at LSN 5100 at the last
/// healthy sample before the streak (-10 s).
fn streak() -> State {
    State {
        last_sample_at: Some(t(10)),
        standby: StandbyState {
            consecutive_failures: 2,
            first_failure_at: Some(t(0)),
            last_success_at: Some(t(-10)),
            last_primary_lsn: Some(5100),
            last_primary_lsn_at: Some(t(-10)),
            last_known_lag_bytes: Some(100),
            ..StandbyState::default()
        },
        ..State::default()
    }
}

fn healthy_state() -> State {
    State {
        last_sample_at: Some(t(10)),
        standby: StandbyState {
            last_success_at: Some(t(10)),
            last_primary_lsn: Some(5000),
            last_primary_lsn_at: Some(t(10)),
            last_known_lag_bytes: Some(0),
            ..StandbyState::default()
        },
        ..State::default()
    }
}

struct Case {
    name: &'static str,
    policy: Policy,
    state: Result<State, StateProblem>,
    sample: Sample,
    verdict: Verdict,
    /// Consecutive failures written (None: nothing written).
    count: Option<u32>,
    /// A substring some reason must contain.
    reason: &'static str,
}

fn with<T>(mut v: T, f: impl FnOnce(&mut T)) -> T {
    f(&mut v);
    v
}

fn leader_with(f: impl FnOnce(&mut Leader)) -> LocalLeader {
    LocalLeader::Found(with(standby_leader(), f))
}

#[allow(clippy::too_many_lines)]
fn cases() -> Vec<Case> {
    let p = policy();
    vec![
        Case {
            name: "healthy primary resets nothing and records its LSN",
            policy: p.clone(),
            state: Ok(healthy_state()),
            sample: with(failing(20), |s| {
                s.probe = Probe::Accepting {
                    in_recovery: Some(false),
                    lsn: Some(6000),
                };
                s.leader = leader_with(|l| {
                    l.replication_state = Some("streaming".into());
                    l.received_lsn = Some(5990);
                    l.replayed_lsn = Some(5980);
                });
            }),
            verdict: Verdict::Healthy,
            count: Some(0),
            reason: "writable primary",
        },
        Case {
            name: "first failure on a fresh state starts a streak",
            policy: p.clone(),
            state: Ok(State::default()),
            sample: failing(0),
            verdict: Verdict::Waiting,
            count: Some(1),
            reason: "1 consecutive failed sample",
        },
        Case {
            name: "third failure but span 15 s < T: keep waiting",
            policy: p.clone(),
            state: Ok(streak()),
            sample: failing(15),
            verdict: Verdict::Waiting,
            count: Some(3),
            reason: "over 15s",
        },
        Case {
            name: "N and T met, every guard passes: promote",
            policy: p.clone(),
            state: Ok(streak()),
            sample: failing(20),
            verdict: Verdict::Promote,
            count: Some(3),
            reason: "mode is auto: promoting",
        },
        Case {
            name: "span long enough but only 2 failures: waiting (N)",
            policy: with(p.clone(), |p| p.failure_threshold = 4),
            state: Ok(streak()),
            sample: failing(60),
            verdict: Verdict::Waiting,
            count: Some(3),
            reason: "promotion needs 4",
        },
        Case {
            name: "flapping link: a healthy sample resets the streak",
            policy: p.clone(),
            state: Ok(streak()),
            sample: with(failing(20), |s| {
                s.probe = Probe::Accepting {
                    in_recovery: Some(false),
                    lsn: Some(5200),
                }
            }),
            verdict: Verdict::Healthy,
            count: Some(0),
            reason: "primary site is alive",
        },
        Case {
            name: "stream alive but probe fails: healthy",
            policy: p.clone(),
            state: Ok(streak()),
            sample: with(failing(20), |s| {
                s.leader = leader_with(|l| l.replication_state = Some("streaming".into()))
            }),
            verdict: Verdict::Healthy,
            count: Some(0),
            reason: "replication stream is alive",
        },
        Case {
            name: "primary answers 'starting up': alive",
            policy: p.clone(),
            state: Ok(streak()),
            sample: with(failing(20), |s| {
                s.probe = Probe::Rejected {
                    reason: "the database system is starting up".into(),
                }
            }),
            verdict: Verdict::Healthy,
            count: Some(0),
            reason: "so it is alive",
        },
        Case {
            name: "primary rejects authentication: alive (misconfigured, not dead)",
            policy: p.clone(),
            state: Ok(streak()),
            sample: with(failing(20), |s| {
                s.probe = Probe::Rejected {
                    reason: "password authentication failed".into(),
                }
            }),
            verdict: Verdict::Healthy,
            count: Some(0),
            reason: "answered with an error",
        },
        Case {
            name: "far side accepts but is in recovery: alive, LSN not recorded",
            policy: p.clone(),
            state: Ok(streak()),
            sample: with(failing(20), |s| {
                s.probe = Probe::Accepting {
                    in_recovery: Some(true),
                    lsn: None,
                }
            }),
            verdict: Verdict::Healthy,
            count: Some(0),
            reason: "in recovery",
        },
        Case {
            name: "witness disagrees: blocked",
            policy: p.clone(),
            state: Ok(streak()),
            sample: with(failing(20), |s| {
                s.witnesses = vec![Witness::Peer(
                    "gslb.example resolves to 10.1.0.1 (primary site)".into(),
                )]
            }),
            verdict: Verdict::Blocked,
            count: Some(3),
            reason: "BLOCKED: witness says the primary site is alive",
        },
        Case {
            // Was "promote" before witnesses had to give positive evidence: force lets an
            // unknown answer pass, never an alive one.
            name: "witness says alive, even forced: blocked",
            policy: with(p.clone(), |p| p.force = true),
            state: Ok(streak()),
            sample: with(failing(20), |s| {
                s.witnesses = vec![Witness::Peer("HTTP witness says alive".into())]
            }),
            verdict: Verdict::Blocked,
            count: Some(3),
            reason: "BLOCKED: witness says the primary site is alive",
        },
        Case {
            name: "witness unreachable: blocked",
            policy: p.clone(),
            state: Ok(streak()),
            sample: with(failing(20), |s| {
                s.witnesses = vec![Witness::Unknown("DNS timeout".into())]
            }),
            verdict: Verdict::Blocked,
            count: Some(3),
            reason: "BLOCKED: witness could not be asked",
        },
        Case {
            name: "no witness configured: promote, and say so",
            policy: p.clone(),
            state: Ok(streak()),
            sample: with(failing(20), |s| s.witnesses = vec![]),
            verdict: Verdict::Promote,
            count: Some(3),
            reason: "no witness configured",
        },
        Case {
            name: "lag over the limit: blocked",
            policy: p.clone(),
            state: Ok(with(streak(), |s| s.standby.last_primary_lsn = Some(9000))),
            sample: failing(20),
            verdict: Verdict::Blocked,
            count: Some(3),
            reason: "BLOCKED: last known lag 4000 bytes exceeds",
        },
        Case {
            name: "lag over the limit but force: promote",
            policy: with(p.clone(), |p| p.force = true),
            state: Ok(with(streak(), |s| s.standby.last_primary_lsn = Some(9000))),
            sample: failing(20),
            verdict: Verdict::Promote,
            count: Some(3),
            reason: "FORCED past: last known lag 4000",
        },
        Case {
            name: "replay backlog counts as lag",
            policy: p.clone(),
            state: Ok(streak()),
            sample: with(failing(20), |s| {
                s.leader = leader_with(|l| {
                    l.received_lsn = Some(9000);
                    l.replayed_lsn = Some(3000);
                })
            }),
            verdict: Verdict::Blocked,
            count: Some(3),
            reason: "last known lag 6000 bytes",
        },
        Case {
            name: "lag unknown (never saw the primary): blocked",
            policy: p.clone(),
            state: Ok(with(streak(), |s| {
                s.standby.last_primary_lsn = None;
                s.standby.last_known_lag_bytes = None;
            })),
            sample: failing(20),
            verdict: Verdict::Blocked,
            count: Some(3),
            reason: "lag unknown",
        },
        Case {
            name: "Patroni paused (member flag): blocked",
            policy: p.clone(),
            state: Ok(streak()),
            sample: with(failing(20), |s| s.leader = leader_with(|l| l.pause = true)),
            verdict: Verdict::Blocked,
            count: Some(3),
            reason: "BLOCKED: Patroni is paused",
        },
        Case {
            name: "Patroni paused (dynamic config): blocked, even when forced",
            policy: with(p.clone(), |p| p.force = true),
            state: Ok(streak()),
            sample: with(failing(20), |s| s.config_paused = true),
            verdict: Verdict::Blocked,
            count: Some(3),
            reason: "BLOCKED: Patroni is paused",
        },
        Case {
            name: "hold annotation: blocked, even when forced",
            policy: with(p.clone(), |p| p.force = true),
            state: Ok(streak()),
            sample: with(failing(20), |s| s.hold = true),
            verdict: Verdict::Blocked,
            count: Some(3),
            reason: "BLOCKED: the hold annotation",
        },
        Case {
            name: "standby leader stopped: blocked",
            policy: p.clone(),
            state: Ok(streak()),
            sample: with(failing(20), |s| {
                s.leader = leader_with(|l| l.state = "stopped".into())
            }),
            verdict: Verdict::Blocked,
            count: Some(3),
            reason: "not a running standby leader",
        },
        Case {
            name: "standby leader REST down: blocked",
            policy: with(p.clone(), |p| p.force = true),
            state: Ok(streak()),
            sample: with(failing(20), |s| {
                s.leader = LocalLeader::Unreachable {
                    name: "dr-0".into(),
                    reason: "timeout".into(),
                }
            }),
            verdict: Verdict::Blocked,
            count: Some(3),
            reason: "BLOCKED: no running local standby leader",
        },
        Case {
            name: "no leader lock at all: blocked",
            policy: p.clone(),
            state: Ok(streak()),
            sample: with(failing(20), |s| {
                s.leader = LocalLeader::Missing("demo-leader has no leader".into())
            }),
            verdict: Verdict::Blocked,
            count: Some(3),
            reason: "no local leader",
        },
        Case {
            name: "several guards: every one is reported",
            policy: p.clone(),
            state: Ok(streak()),
            sample: with(failing(20), |s| {
                s.hold = true;
                s.witnesses = vec![Witness::Peer("HTTP 200".into())];
            }),
            verdict: Verdict::Blocked,
            count: Some(3),
            reason: "BLOCKED: witness says",
        },
        Case {
            name: "observe mode: would promote",
            policy: with(p.clone(), |p| p.mode = Mode::Observe),
            state: Ok(streak()),
            sample: failing(20),
            verdict: Verdict::WouldPromote,
            count: Some(3),
            reason: "would promote",
        },
        Case {
            name: "already promoted: no-op, nothing written",
            policy: p.clone(),
            state: Ok(streak()),
            sample: with(failing(20), |s| {
                s.site = SiteConfig::NotStandby;
                s.leader = leader_with(|l| l.role = "primary".into());
            }),
            verdict: Verdict::AlreadyPrimary,
            count: None,
            reason: "nothing to do",
        },
        Case {
            name: "standby_cluster removed, leader still promoting: hands off",
            policy: p.clone(),
            state: Ok(streak()),
            sample: with(failing(20), |s| s.site = SiteConfig::NotStandby),
            verdict: Verdict::InProgress,
            count: None,
            reason: "leaving Patroni to finish",
        },
        Case {
            name: "another run claimed the promotion a moment ago: not twice",
            policy: p.clone(),
            state: Ok(with(streak(), |s| {
                s.standby.promotion = Some(PromotionRecord {
                    run: "run-a".into(),
                    claimed_at: t(19),
                    reasons: vec![],
                    standby_lsn: None,
                    confirmed_at: None,
                    primary_lsn: None,
                    timeline: None,
                    failed: None,
                })
            })),
            sample: failing(20),
            verdict: Verdict::InProgress,
            count: Some(3),
            reason: "already claimed by run run-a",
        },
        Case {
            name: "an abandoned claim (older than its TTL) no longer blocks",
            policy: p.clone(),
            state: Ok(with(streak(), |s| {
                s.standby.promotion = Some(PromotionRecord {
                    run: "run-a".into(),
                    claimed_at: t(-400),
                    reasons: vec![],
                    standby_lsn: None,
                    confirmed_at: None,
                    primary_lsn: None,
                    timeline: None,
                    failed: None,
                })
            })),
            sample: failing(20),
            verdict: Verdict::Promote,
            count: Some(3),
            reason: "promoting",
        },
        Case {
            name: "overlapping run samples 1 s after the last: not counted twice",
            policy: p.clone(),
            state: Ok(with(streak(), |s| {
                s.standby.first_failure_at = Some(t(-10))
            })),
            sample: failing(11),
            verdict: Verdict::Waiting,
            count: Some(2),
            reason: "not counted again",
        },
        Case {
            name: "clock gap: runs missed for 10 minutes, old failures do not count",
            policy: p.clone(),
            state: Ok(streak()),
            sample: failing(610),
            verdict: Verdict::Waiting,
            count: Some(1),
            reason: "streak restarts",
        },
        Case {
            name: "clock went backwards: streak restarts",
            policy: p.clone(),
            state: Ok(streak()),
            sample: failing(5),
            verdict: Verdict::Waiting,
            count: Some(1),
            reason: "behind the last recorded sample",
        },
        Case {
            name: "state written by an older run (missing fields) is used",
            policy: p.clone(),
            state: crate::state::parse(Some(
                r#"{"consecutive_failures":2,"first_failure_at":"2026-03-01T12:00:00Z",
                    "last_sample_at":"2026-03-01T12:00:10Z","last_primary_lsn":5000,
                    "last_primary_lsn_at":"2026-03-01T11:59:50Z","last_success_at":"2026-03-01T11:59:50Z"}"#,
            )),
            sample: failing(20),
            verdict: Verdict::Promote,
            count: Some(3),
            reason: "last known lag 0 bytes",
        },
        Case {
            name: "state written by a newer version: unusable, untouched",
            policy: p.clone(),
            state: crate::state::parse(Some(r#"{"version":7}"#)),
            sample: failing(20),
            verdict: Verdict::StateUnusable,
            count: None,
            reason: "newer version",
        },
        Case {
            name: "malformed state: unusable, untouched",
            policy: p.clone(),
            state: crate::state::parse(Some("consecutive_failures=3")),
            sample: failing(20),
            verdict: Verdict::StateUnusable,
            count: None,
            reason: "left untouched",
        },
        Case {
            name: "malformed dynamic config: blocked",
            policy: with(p.clone(), |p| p.force = true),
            state: Ok(streak()),
            sample: with(failing(20), |s| {
                s.site = SiteConfig::Malformed("not JSON".into())
            }),
            verdict: Verdict::Blocked,
            count: Some(3),
            reason: "dynamic config cannot be read",
        },
        Case {
            name: "threshold N=1 and T=0 (the prototype's policy) promotes on the first failure",
            policy: with(p.clone(), |p| {
                p.failure_threshold = 1;
                p.min_failure_span = Duration::ZERO;
            }),
            state: Ok(healthy_state()),
            sample: failing(20),
            verdict: Verdict::Promote,
            count: Some(1),
            reason: "promoting",
        },
        // Positive evidence: witness combinations.
        Case {
            name: "two witnesses, one down and one alive: blocked (any alive blocks)",
            policy: with(p.clone(), |p| p.force = true),
            state: Ok(streak()),
            sample: with(failing(20), |s| {
                s.witnesses = vec![
                    Witness::Here("DNS witness: gslb resolves here".into()),
                    Witness::Peer("HTTP witness says alive".into()),
                ]
            }),
            verdict: Verdict::Blocked,
            count: Some(3),
            reason: "BLOCKED: witness says the primary site is alive: HTTP witness",
        },
        Case {
            name: "two witnesses, one down and one unknown: promote on the positive evidence",
            policy: p.clone(),
            state: Ok(streak()),
            sample: with(failing(20), |s| {
                s.witnesses = vec![
                    Witness::Unknown("HTTP witness: unreachable".into()),
                    Witness::Here("DNS witness: gslb resolves here".into()),
                ]
            }),
            verdict: Verdict::Promote,
            count: Some(3),
            reason: "another witness answered",
        },
        Case {
            name: "every witness unknown (cut off from all of them): blocked",
            policy: p.clone(),
            state: Ok(streak()),
            sample: with(failing(20), |s| {
                s.witnesses = vec![
                    Witness::Unknown("HTTP witness: no answer within 3s".into()),
                    Witness::Unknown("DNS witness: cannot resolve gslb".into()),
                ]
            }),
            verdict: Verdict::Blocked,
            count: Some(3),
            reason: "BLOCKED: witness could not be asked: HTTP witness: no answer within 3s; DNS",
        },
        Case {
            name: "every witness unknown but force: promote",
            policy: with(p.clone(), |p| p.force = true),
            state: Ok(streak()),
            sample: with(failing(20), |s| {
                s.witnesses = vec![Witness::Unknown("HTTP witness: unreachable".into())]
            }),
            verdict: Verdict::Promote,
            count: Some(3),
            reason: "FORCED past: witness could not be asked",
        },
        // Honest lag.
        Case {
            name: "primary position expired before the streak began: blocked",
            policy: p.clone(),
            state: Ok(with(streak(), |s| {
                s.standby.last_primary_lsn_at = Some(t(-400))
            })),
            sample: failing(20),
            verdict: Verdict::Blocked,
            count: Some(3),
            reason: "BLOCKED: the primary's last known WAL position was 6m 30s old",
        },
        Case {
            name: "primary position expired but force: promote",
            policy: with(p.clone(), |p| p.force = true),
            state: Ok(with(streak(), |s| {
                s.standby.last_primary_lsn_at = Some(t(-400))
            })),
            sample: failing(20),
            verdict: Verdict::Promote,
            count: Some(3),
            reason: "FORCED past: the primary's last known WAL position",
        },
        Case {
            name: "the age counts at the streak's start, not now: a long streak does not expire it",
            policy: with(p.clone(), |p| p.failure_threshold = 2),
            state: Ok(with(streak(), |s| s.last_sample_at = Some(t(590)))),
            sample: failing(600),
            verdict: Verdict::Promote,
            count: Some(3),
            reason: "promoting",
        },
        Case {
            name: "older state with a position but no time: lag unknown, blocked",
            policy: p.clone(),
            state: crate::state::parse(Some(
                r#"{"consecutive_failures":2,"first_failure_at":"2026-03-01T12:00:00Z",
                    "last_sample_at":"2026-03-01T12:00:10Z","last_primary_lsn":5000}"#,
            )),
            sample: failing(20),
            verdict: Verdict::Blocked,
            count: Some(3),
            reason: "BLOCKED: the primary's last known WAL position has no recorded time",
        },
        Case {
            name: "stream was down while the primary answered (password rotated), then it died: blocked",
            policy: p.clone(),
            state: Ok(with(streak(), |s| {
                s.standby.stream_broken_since = Some(t(-3600))
            })),
            sample: failing(20),
            verdict: Verdict::Blocked,
            count: Some(3),
            reason: "BLOCKED: the replication stream was already down since",
        },
        Case {
            name: "stream down at one healthy sample only (a reconnect): does not block",
            policy: p.clone(),
            state: Ok(with(streak(), |s| {
                s.standby.stream_broken_since = Some(t(-10))
            })),
            sample: failing(20),
            verdict: Verdict::Promote,
            count: Some(3),
            reason: "promoting",
        },
        Case {
            name: "stream down 30 s before the streak while the primary answered (a reconnect): does not block",
            policy: p.clone(),
            state: Ok(with(streak(), |s| {
                s.standby.stream_broken_since = Some(t(-40))
            })),
            sample: failing(20),
            verdict: Verdict::Promote,
            count: Some(3),
            reason: "promoting",
        },
        Case {
            name: "primary answers, stream down at two samples: healthy, replication broken reported",
            policy: p.clone(),
            state: Ok(with(healthy_state(), |s| {
                s.standby.stream_broken_since = Some(t(10))
            })),
            sample: with(failing(20), |s| {
                s.probe = Probe::Rejected {
                    reason: "28P01 password authentication failed".into(),
                }
            }),
            verdict: Verdict::Healthy,
            count: Some(0),
            reason: "REPLICATION BROKEN: the primary answers",
        },
        // Missing tunnel Service.
        Case {
            name: "tunnel Service missing: unknown, neither counted nor reset",
            policy: p.clone(),
            state: Ok(streak()),
            sample: with(failing(20), |s| {
                s.probe = Probe::Unknown {
                    reason: "tunnel Service ns/demo-gold does not exist".into(),
                }
            }),
            verdict: Verdict::Unknown,
            count: Some(2),
            reason: "neither counts as failed nor resets the streak",
        },
        Case {
            name: "tunnel Service without a port while the stream is alive: healthy",
            policy: p.clone(),
            state: Ok(streak()),
            sample: with(failing(20), |s| {
                s.probe = Probe::Unknown {
                    reason: "tunnel Service ns/demo-gold has no port".into(),
                };
                s.leader = leader_with(|l| l.replication_state = Some("streaming".into()));
            }),
            verdict: Verdict::Healthy,
            count: Some(0),
            reason: "replication stream is alive",
        },
    ]
}

#[test]
fn decision_table() {
    let cases = cases();
    assert!(cases.len() >= 25, "the issue asks for at least 25 cases");
    let mut failures = Vec::new();
    for c in &cases {
        let d = decide(&c.policy, c.state.as_ref(), &c.sample);
        let count = d.next.as_ref().map(|s| s.standby.consecutive_failures);
        let has_reason = d.reasons.iter().any(|r| r.to_string().contains(c.reason));
        if d.verdict != c.verdict || count != c.count || !has_reason {
            failures.push(format!(
                "{}: got {:?} count {:?}, want {:?} count {:?} and a reason with {:?}\n  reasons: {:#?}",
                c.name, d.verdict, count, c.verdict, c.count, c.reason, d.reasons
            ));
        }
        // Only a Promote decision may carry a claim that was not there before.
        let claimed = d
            .next
            .as_ref()
            .and_then(|s| s.standby.promotion.as_ref())
            .map(|p| p.claimed_at);
        let before = c
            .state
            .as_ref()
            .ok()
            .and_then(|s| s.standby.promotion.as_ref())
            .map(|p| p.claimed_at);
        if claimed != before && d.verdict != Verdict::Promote {
            failures.push(format!(
                "{}: a {:?} decision changed the claim",
                c.name, d.verdict
            ));
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

#[test]
fn promote_claim_records_run_reasons_and_lsn() {
    let d = decide(&policy(), Ok(&streak()), &failing(20));
    let claim = d.next.unwrap().standby.promotion.unwrap();
    assert_eq!(claim.run, "run-b");
    assert_eq!(claim.claimed_at, t(20));
    assert_eq!(claim.standby_lsn, Some(5000));
    assert!(claim.reasons.iter().any(|r| r.contains("witness agrees")));
}

/// Unknown samples in the middle of a streak: the streak can only complete on failed samples,
/// and a long run of unknown samples (a gap) restarts it.
#[test]
fn a_streak_cannot_complete_through_unknown_samples() {
    let p = policy();
    let unknown = |secs| {
        with(failing(secs), |s| {
            s.probe = Probe::Unknown {
                reason: "tunnel Service missing".into(),
            }
        })
    };
    let mut state = healthy_state();
    for secs in [20, 30, 40, 50, 60] {
        let d = decide(&p, Ok(&state), &unknown(secs));
        assert_eq!(d.verdict, Verdict::Unknown, "{secs}");
        state = d.next.unwrap();
    }
    assert_eq!(state.standby.consecutive_failures, 0);
    // After more than the maximal gap of unknown samples, old failures do not count either.
    let mut state = streak();
    for secs in (20..200).step_by(10) {
        state = decide(&p, Ok(&state), &unknown(secs)).next.unwrap();
    }
    let d = decide(&p, Ok(&state), &failing(200));
    assert_eq!(d.verdict, Verdict::Waiting, "{:?}", d.reasons);
    assert_eq!(d.next.unwrap().standby.consecutive_failures, 1);
}

/// `ReplicationBroken` is announced when first confirmed, then at most every 10 minutes, and
/// again after the stream recovered and broke anew.
#[test]
fn replication_broken_is_announced_rate_limited() {
    let p = policy();
    let answering_without_stream = |secs| {
        with(failing(secs), |s| {
            s.probe = Probe::Rejected {
                reason: "28P01 password authentication failed".into(),
            }
        })
    };
    let mut state = healthy_state();
    let mut announced = Vec::new();
    for secs in (20..=1300).step_by(10) {
        let d = decide(&p, Ok(&state), &answering_without_stream(secs));
        if d.notify_replication_broken {
            announced.push(secs);
        }
        state = d.next.unwrap();
    }
    assert_eq!(announced, vec![30, 630, 1230]);
    let streaming = with(failing(1310), |s| {
        s.leader = leader_with(|l| l.replication_state = Some("streaming".into()))
    });
    state = decide(&p, Ok(&state), &streaming).next.unwrap();
    assert_eq!(state.standby.stream_broken_since, None);
    assert!(!decide(&p, Ok(&state), &answering_without_stream(1320)).notify_replication_broken);
    let again = decide(
        &p,
        Ok(&decide(&p, Ok(&state), &answering_without_stream(1320))
            .next
            .unwrap()),
        &answering_without_stream(1330),
    );
    assert!(again.notify_replication_broken);
}

/// While streaming, what the standby received is a fresh primary position.
#[test]
fn streaming_refreshes_the_primary_position() {
    let state = with(healthy_state(), |s| {
        s.standby.last_primary_lsn_at = Some(t(-1000))
    });
    let sample = with(failing(20), |s| {
        s.leader = leader_with(|l| {
            l.replication_state = Some("streaming".into());
            l.received_lsn = Some(7000);
        })
    });
    let next = decide(&policy(), Ok(&state), &sample).next.unwrap();
    assert_eq!(next.standby.last_primary_lsn, Some(7000));
    assert_eq!(next.standby.last_primary_lsn_at, Some(t(20)));
    assert_eq!(next.standby.last_streaming_at, Some(t(20)));
}

#[test]
fn observe_mode_notifies_once_per_streak() {
    let p = with(policy(), |p| p.mode = Mode::Observe);
    let first = decide(&p, Ok(&streak()), &failing(20));
    assert!(first.notify);
    let second = decide(&p, Ok(first.next.as_ref().unwrap()), &failing(30));
    assert_eq!(second.verdict, Verdict::WouldPromote);
    assert!(!second.notify, "announced again within one streak");
    // A healthy sample ends the streak; the next streak announces again.
    let healthy = with(failing(40), |s| {
        s.probe = Probe::Rejected {
            reason: "starting up".into(),
        }
    });
    let reset = decide(&p, Ok(second.next.as_ref().unwrap()), &healthy);
    assert_eq!(
        reset
            .next
            .as_ref()
            .unwrap()
            .standby
            .would_promote_notified_at,
        None
    );
}

/// A flapping link (fail, fail, ok, repeated) never reaches the threshold, however long it lasts.
#[test]
fn flapping_link_never_promotes() {
    let p = policy();
    let mut state = healthy_state();
    for i in 0..60 {
        let mut s = failing(20 + i * 10);
        if i % 3 == 2 {
            s.probe = Probe::Accepting {
                in_recovery: Some(false),
                lsn: Some(5000),
            };
        }
        let d = decide(&p, Ok(&state), &s);
        assert!(
            matches!(d.verdict, Verdict::Healthy | Verdict::Waiting),
            "sample {i}: {d:?}"
        );
        state = d.next.unwrap();
    }
}

/// Two runs sampling the same outage every second, interleaved: the count grows with time
/// (one per spacing), not with the number of runs.
#[test]
fn overlapping_runs_do_not_double_count() {
    let p = with(policy(), |p| p.failure_threshold = 100);
    let mut state = healthy_state();
    let mut counted = 0;
    for i in 0..40 {
        for run in ["a", "b"] {
            let s = with(failing(20 + i), |s| s.run = run.into());
            let d = decide(&p, Ok(&state), &s);
            counted += u32::from(d.counted && d.failed_sample);
            state = d.next.unwrap();
        }
    }
    assert_eq!(state.standby.consecutive_failures, counted);
    assert!(
        counted <= 8,
        "40 s of samples every 5 s at most, got {counted}"
    );
}

/// The sample log names the witnesses in the standby's reading, as before the one vocabulary
/// (the drills grep `PrimaryAlive` / `PrimaryDown`).
#[test]
fn witness_log_keeps_the_standby_words() {
    let w = [
        Witness::Peer("a".into()),
        Witness::NotOnlyHere("b".into()),
        Witness::Here("c".into()),
        Witness::Unknown("d".into()),
    ];
    assert_eq!(
        format!("{:?}", WitnessLog(&w)),
        r#"[PrimaryAlive("a"), PrimaryAlive("b"), PrimaryDown("c"), Unknown("d")]"#
    );
}
