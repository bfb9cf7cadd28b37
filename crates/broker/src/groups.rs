//! The group coordinator (classic protocol): membership, generations and assignments.
//!
//! States follow Kafka's: `Empty` -> `PreparingRebalance` (members (re)join) ->
//! `CompletingRebalance` (the leader computes assignments) -> `Stable` (SyncGroup done).
//! A JoinGroup or SyncGroup that must wait holds a oneshot receiver; the rebalance completes
//! when every known member has rejoined, when the rebalance timeout passes (members that did
//! not rejoin are dropped), and for a new group not before `group.initial.rebalance.delay.ms`
//! so consumers starting together land in one generation. A ticker expires members whose
//! session timed out. All state is behind one mutex that is never held across an await.
//! Committed offsets are not kept here but in the store.
//!
//! Kafka's rules that keep rebalances few and members known:
//! - KIP-394: from JoinGroup v4 a new dynamic member first gets MEMBER_ID_REQUIRED with an id
//!   to rejoin with; the id waits (as pending) for one session timeout.
//! - A follower that rejoins a Stable group with unchanged metadata, or any member that
//!   rejoins a CompletingRebalance group unchanged, gets the current generation back
//!   without a rebalance.
//! - KIP-345 static members: an instance id that rejoins without a member id replaces its
//!   old member (which is fenced: FENCED_INSTANCE_ID) and keeps its assignment; a request
//!   naming an instance id with another member's id is fenced.
//! - Offset commits are accepted while PreparingRebalance (consumers commit as they
//!   revoke) and refused with REBALANCE_IN_PROGRESS only while CompletingRebalance.
//! - Each Stable group's generation, members and assignments are written to the store, so
//!   after a restart members keep heartbeating in their generation.
//!
//! Held heartbeats (sluice's own, `group.heartbeat.hold.max.ms`): in the classic protocol
//! the members of a Stable group learn of a rebalance only from a heartbeat response, so a
//! join waits for every other member's next heartbeat, up to `heartbeat.interval.ms` (3 s by
//! default). The coordinator may instead hold a heartbeat that would answer NONE and answer
//! it at once when a rebalance begins ([`Groups::hold`]). The hold ends before the client's
//! next heartbeat is due (the interval is learnt from the member's own heartbeats), within a
//! third of its session timeout, and as soon as another request arrives on the connection,
//! so nothing queues behind it. Only clients that heartbeat off their poll loop may be held;
//! the server decides which (see `handlers::Connection`).
use std::collections::{BTreeMap, BTreeSet};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use bytes::Bytes;
use kafka_protocol::ResponseError;
use tokio::sync::oneshot;

use crate::group_writer::GroupWriter;
use crate::limits::{GROUPS_MAX, GROUP_MEMBERS_MAX};
use crate::store::{GroupMemberRecord, GroupRecord, Store};

/// How often the ticker looks at deadlines.
pub(crate) const TICK_MS: u64 = 100;

/// A group's state, as DescribeGroups spells it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum GroupState {
    Empty,
    PreparingRebalance,
    CompletingRebalance,
    Stable,
}

impl GroupState {
    pub fn name(self) -> &'static str {
        match self {
            GroupState::Empty => "Empty",
            GroupState::PreparingRebalance => "PreparingRebalance",
            GroupState::CompletingRebalance => "CompletingRebalance",
            GroupState::Stable => "Stable",
        }
    }
}

/// What a JoinGroup caller receives.
#[derive(Debug, Clone, Default)]
pub(crate) struct JoinOutcome {
    pub error: i16,
    pub generation: i32,
    pub protocol_type: Option<String>,
    pub protocol_name: Option<String>,
    pub leader: String,
    pub member_id: String,
    /// Only the leader gets the members: (member id, instance id, metadata).
    pub members: Vec<(String, Option<String>, Bytes)>,
}

/// What a SyncGroup caller receives.
#[derive(Debug, Clone, Default)]
pub(crate) struct SyncOutcome {
    pub error: i16,
    pub protocol_type: Option<String>,
    pub protocol_name: Option<String>,
    pub assignment: Bytes,
}

/// A JoinGroup request, as the coordinator needs it.
pub(crate) struct JoinRequest {
    pub group_id: String,
    pub member_id: String,
    pub instance_id: Option<String>,
    pub client_id: String,
    pub client_host: String,
    pub session_timeout_ms: i32,
    pub rebalance_timeout_ms: i32,
    pub protocol_type: String,
    pub protocols: Vec<(String, Bytes)>,
    /// JoinGroup v4+: a new dynamic member must first fetch its id (KIP-394).
    pub require_known_member_id: bool,
}

/// A member as DescribeGroups shows it.
pub(crate) struct MemberView {
    pub member_id: String,
    pub instance_id: Option<String>,
    pub client_id: String,
    pub client_host: String,
    pub metadata: Bytes,
    pub assignment: Bytes,
}

/// The topics whose committed offsets a group's members may be reading, which OffsetDelete
/// must keep (Kafka's `ClassicGroup.isSubscribedToTopic`).
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Subscribed {
    /// No member: any offset may go (also a group known only by its committed offsets).
    Nothing,
    /// The topics the members' consumer-protocol subscriptions name.
    Topics(BTreeSet<String>),
    /// Every topic: a subscription is not chosen yet or does not parse.
    Everything,
}

impl Subscribed {
    pub fn covers(&self, topic: &str) -> bool {
        match self {
            Subscribed::Nothing => false,
            Subscribed::Topics(topics) => topics.contains(topic),
            Subscribed::Everything => true,
        }
    }
}

/// The protocol type of consumers (`ConsumerProtocol.PROTOCOL_TYPE`): members' metadata is a
/// `ConsumerProtocolSubscription`.
const CONSUMER_PROTOCOL_TYPE: &str = "consumer";

/// The topics of a `ConsumerProtocolSubscription` (a version, then the fields of that
/// version). Read as version 0, whose fields begin every version, as Kafka reads it so that
/// a later version still parses; `None` when it does not.
fn subscription_topics(metadata: &Bytes) -> Option<Vec<String>> {
    use kafka_protocol::messages::ConsumerProtocolSubscription;
    use kafka_protocol::protocol::Decodable;
    let mut buf = metadata.clone();
    let version = i16::from_be_bytes([*buf.first()?, *buf.get(1)?]);
    if version < 0 {
        return None;
    }
    bytes::Buf::advance(&mut buf, 2);
    let subscription = ConsumerProtocolSubscription::decode(&mut buf, 0).ok()?;
    Some(subscription.topics.iter().map(|t| t.to_string()).collect())
}

/// A group as DescribeGroups and ListGroups show it.
pub(crate) struct GroupView {
    pub state: GroupState,
    pub protocol_type: String,
    pub protocol: String,
    pub members: Vec<MemberView>,
}

struct Member {
    instance_id: Option<String>,
    client_id: String,
    client_host: String,
    session_timeout: Duration,
    rebalance_timeout: Duration,
    protocols: Vec<(String, Bytes)>,
    assignment: Bytes,
    last_seen: Instant,
    join_waiter: Option<oneshot::Sender<JoinOutcome>>,
    sync_waiter: Option<oneshot::Sender<SyncOutcome>>,
    beats: Beats,
}

impl Member {
    /// Whether the member's session has ended: no heartbeat for its session timeout. As in
    /// Kafka, a member waiting in JoinGroup or SyncGroup is kept alive, and so is one whose
    /// heartbeat is held.
    fn session_expired(&self, now: Instant) -> bool {
        self.join_waiter.is_none()
            && self.sync_waiter.is_none()
            && !self.beats.held()
            && now.duration_since(self.last_seen) > self.session_timeout
    }
}

/// A member's held heartbeat and what its heartbeats told about its interval.
#[derive(Default)]
struct Beats {
    /// Fired (or dropped) to answer the held heartbeat now.
    waiter: Option<oneshot::Sender<()>>,
    /// When the last heartbeat arrived.
    last: Option<Instant>,
    /// The shortest time seen between two heartbeats: the client's interval, or a multiple
    /// of it for a client that skips a beat while one is in flight.
    interval: Option<Duration>,
}

impl Beats {
    /// Whether a held heartbeat still has a connection waiting on it.
    fn held(&self) -> bool {
        self.waiter.as_ref().is_some_and(|w| !w.is_closed())
    }

    /// Answers the held heartbeat, if any.
    fn release(&mut self) {
        if let Some(waiter) = self.waiter.take() {
            let _ = waiter.send(());
        }
    }
}

struct Group {
    state: GroupState,
    generation: i32,
    protocol_type: Option<String>,
    protocol: Option<String>,
    leader: Option<String>,
    members: BTreeMap<String, Member>,
    /// When PreparingRebalance must end at the latest.
    rebalance_deadline: Instant,
    /// A new group waits until then for more members.
    initial_delay_until: Option<Instant>,
    /// Member ids handed out with MEMBER_ID_REQUIRED, each until its deadline.
    pending: BTreeMap<String, Instant>,
}

/// Timing settings.
pub(crate) struct GroupSettings {
    pub initial_rebalance_delay: Duration,
    pub session_timeout_min_ms: i32,
    pub session_timeout_max_ms: i32,
    /// `group.heartbeat.hold.max.ms`: the longest a heartbeat is held; zero holds none.
    pub heartbeat_hold_max: Duration,
}

/// Before a member's interval is known, its first heartbeats are held this long at most,
/// so the next one (due a whole interval after the last) shows the interval.
const FIRST_HOLD: Duration = Duration::from_millis(1000);

/// A hold ends this much before the member's next heartbeat is due, at most.
const HOLD_MARGIN_MAX: Duration = Duration::from_millis(200);

/// Every group.
pub(crate) struct Groups {
    groups: Mutex<BTreeMap<String, Group>>,
    settings: GroupSettings,
    store: std::sync::Arc<Store>,
    /// Stores group states off the lock above (see `crate::group_writer`).
    writer: GroupWriter,
}

fn code(error: ResponseError) -> i16 {
    error.code()
}

impl Groups {
    /// The coordinator, with every group the store holds loaded as Stable: its members
    /// keep their generation and assignment and have one session timeout to heartbeat.
    pub fn load(settings: GroupSettings, store: std::sync::Arc<Store>) -> crate::Result<Groups> {
        let now = Instant::now();
        let mut groups = BTreeMap::new();
        for (id, record) in store.groups()? {
            if record.empty_since_ms.is_some() {
                continue; // kept only for offset retention
            }
            let members = record
                .members
                .into_iter()
                .map(|m| {
                    let member = Member {
                        instance_id: m.instance_id,
                        client_id: m.client_id,
                        client_host: m.client_host,
                        session_timeout: Duration::from_millis(m.session_timeout_ms),
                        rebalance_timeout: Duration::from_millis(m.rebalance_timeout_ms),
                        protocols: m
                            .protocols
                            .into_iter()
                            .map(|(name, bytes)| (name, Bytes::from(bytes)))
                            .collect(),
                        assignment: Bytes::from(m.assignment),
                        last_seen: now,
                        join_waiter: None,
                        sync_waiter: None,
                        beats: Beats::default(),
                    };
                    (m.member_id, member)
                })
                .collect();
            groups.insert(
                id,
                Group {
                    state: GroupState::Stable,
                    generation: record.generation,
                    protocol_type: Some(record.protocol_type),
                    protocol: Some(record.protocol),
                    leader: Some(record.leader),
                    members,
                    rebalance_deadline: now,
                    initial_delay_until: None,
                    pending: BTreeMap::new(),
                },
            );
        }
        let writer = GroupWriter::start(std::sync::Arc::clone(&store))?;
        Ok(Groups { groups: Mutex::new(groups), settings, store, writer })
    }

    /// Queues a Stable group's state for the store, or an Empty one's (kept for offset
    /// retention). Best effort: on a failure the members rejoin after a restart, which costs
    /// a rebalance, not data.
    fn persist(&self, group_id: &str, group: &Group) {
        let empty = group.state == GroupState::Empty;
        if !empty && group.state != GroupState::Stable {
            return;
        }
        let record = GroupRecord {
            empty_since_ms: empty.then(crate::clock::now_ms),
            generation: group.generation,
            protocol_type: group.protocol_type.clone().unwrap_or_default(),
            protocol: group.protocol.clone().unwrap_or_default(),
            leader: group.leader.clone().unwrap_or_default(),
            members: group
                .members
                .iter()
                .map(|(id, m)| GroupMemberRecord {
                    member_id: id.clone(),
                    instance_id: m.instance_id.clone(),
                    client_id: m.client_id.clone(),
                    client_host: m.client_host.clone(),
                    session_timeout_ms: m.session_timeout.as_millis() as u64,
                    rebalance_timeout_ms: m.rebalance_timeout.as_millis() as u64,
                    protocols: m.protocols.iter().map(|(n, b)| (n.clone(), b.to_vec())).collect(),
                    assignment: m.assignment.to_vec(),
                })
                .collect(),
        };
        self.writer.put(group_id, Some(record));
    }

    /// Stores what is queued and stops storing group states (at shutdown).
    pub fn close(&self) {
        self.writer.close();
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, BTreeMap<String, Group>> {
        self.groups.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Joins (or rejoins); the receiver yields once the rebalance completes.
    pub fn join(
        &self,
        request: JoinRequest,
    ) -> std::result::Result<oneshot::Receiver<JoinOutcome>, i16> {
        let timeout_ok = (self.settings.session_timeout_min_ms
            ..=self.settings.session_timeout_max_ms)
            .contains(&request.session_timeout_ms);
        if !timeout_ok {
            return Err(code(ResponseError::InvalidSessionTimeout));
        }
        if request.protocols.is_empty() || request.protocol_type.is_empty() {
            return Err(code(ResponseError::InconsistentGroupProtocol));
        }
        if !valid_group_id(&request.group_id) {
            return Err(code(ResponseError::InvalidGroupId));
        }
        let mut groups = self.lock();
        if !groups.contains_key(&request.group_id) && groups.len() >= GROUPS_MAX {
            return Err(code(ResponseError::PolicyViolation));
        }
        let now = Instant::now();
        let group = groups.entry(request.group_id.clone()).or_insert_with(|| Group {
            state: GroupState::Empty,
            generation: 0,
            protocol_type: None,
            protocol: None,
            leader: None,
            members: BTreeMap::new(),
            rebalance_deadline: now,
            initial_delay_until: None,
            pending: BTreeMap::new(),
        });
        if !group.members.is_empty()
            && group.protocol_type.as_deref().is_some_and(|t| t != request.protocol_type)
        {
            return Err(code(ResponseError::InconsistentGroupProtocol));
        }
        let (sender, receiver) = oneshot::channel();
        let member_id = match member_id_for(group, &request, now)? {
            MemberId::Required(id) => {
                let _ = sender.send(JoinOutcome {
                    error: code(ResponseError::MemberIdRequired),
                    generation: -1,
                    member_id: id,
                    ..JoinOutcome::default()
                });
                return Ok(receiver);
            }
            MemberId::Assigned(id) => id,
            MemberId::Replaced { id, previous_leader } => {
                let keeps_protocol = group
                    .protocol
                    .as_ref()
                    .is_some_and(|chosen| request.protocols.iter().any(|(name, _)| name == chosen));
                if group.state == GroupState::Stable && keeps_protocol {
                    // Kafka answers a restarted static member at once with the generation
                    // and its old assignment, and names the previous leader id, so a member
                    // that led does not compute a new assignment the Stable group would
                    // never hand out.
                    if let Some(member) = group.members.get_mut(&id) {
                        member.protocols = request.protocols;
                        member.last_seen = now;
                        member.client_id = request.client_id;
                        member.client_host = request.client_host;
                    }
                    let mut answer = current_join(group, &id);
                    answer.leader = previous_leader;
                    answer.members = Vec::new();
                    let _ = sender.send(answer);
                    self.persist(&request.group_id, group);
                    return Ok(receiver);
                }
                id
            }
        };
        if let Some(existing) = group.members.get_mut(&member_id) {
            let unchanged = existing.protocols == request.protocols;
            let is_leader = group.leader.as_deref() == Some(member_id.as_str());
            let answer_now = unchanged
                && (group.state == GroupState::CompletingRebalance
                    || (group.state == GroupState::Stable && !is_leader));
            if answer_now {
                existing.last_seen = now;
                existing.session_timeout =
                    Duration::from_millis(request.session_timeout_ms.max(0) as u64);
                let _ = sender.send(current_join(group, &member_id));
                if group.state == GroupState::Stable && request.instance_id.is_some() {
                    // A static member may have a new member id: store it.
                    self.persist(&request.group_id, group);
                }
                return Ok(receiver);
            }
        }
        if group.members.len() >= GROUP_MEMBERS_MAX && !group.members.contains_key(&member_id) {
            return Err(code(ResponseError::GroupMaxSizeReached));
        }
        let assignment = group.members.get(&member_id).map(|m| m.assignment.clone());
        let interval = group.members.get(&member_id).and_then(|m| m.beats.interval);
        let member = Member {
            instance_id: request.instance_id,
            client_id: request.client_id,
            client_host: request.client_host,
            session_timeout: Duration::from_millis(request.session_timeout_ms.max(0) as u64),
            rebalance_timeout: Duration::from_millis(request.rebalance_timeout_ms.max(0) as u64),
            protocols: request.protocols,
            assignment: assignment.unwrap_or_default(),
            last_seen: now,
            join_waiter: Some(sender),
            sync_waiter: None,
            beats: Beats { interval, ..Beats::default() },
        };
        group.protocol_type = Some(request.protocol_type);
        group.members.insert(member_id, member);
        if group.state != GroupState::PreparingRebalance {
            self.prepare_rebalance(group, now);
        }
        try_complete(group, now);
        Ok(receiver)
    }

    fn prepare_rebalance(&self, group: &mut Group, now: Instant) {
        if group.state == GroupState::Empty {
            group.initial_delay_until = Some(now + self.settings.initial_rebalance_delay);
        }
        group.state = GroupState::PreparingRebalance;
        let timeout = group.members.values().map(|m| m.rebalance_timeout).max().unwrap_or_default();
        group.rebalance_deadline = now + timeout;
        for member in group.members.values_mut() {
            member.beats.release();
            if let Some(waiter) = member.sync_waiter.take() {
                member.last_seen = now;
                let _ = waiter.send(SyncOutcome {
                    error: code(ResponseError::RebalanceInProgress),
                    ..SyncOutcome::default()
                });
            }
        }
    }

    /// SyncGroup: the leader hands in assignments; everyone receives theirs.
    pub fn sync(
        &self,
        group_id: &str,
        generation: i32,
        member_id: &str,
        instance_id: Option<&str>,
        assignments: Vec<(String, Bytes)>,
    ) -> std::result::Result<oneshot::Receiver<SyncOutcome>, i16> {
        let mut groups = self.lock();
        let group = groups.get_mut(group_id).ok_or(code(ResponseError::UnknownMemberId))?;
        check_member(group, member_id, instance_id)?;
        if generation != group.generation {
            return Err(code(ResponseError::IllegalGeneration));
        }
        let (sender, receiver) = oneshot::channel();
        match group.state {
            GroupState::Empty | GroupState::PreparingRebalance => {
                return Err(code(ResponseError::RebalanceInProgress))
            }
            GroupState::Stable => {
                let assignment =
                    group.members.get(member_id).map(|m| m.assignment.clone()).unwrap_or_default();
                let _ = sender.send(outcome(group, assignment));
                return Ok(receiver);
            }
            GroupState::CompletingRebalance => {}
        }
        if let Some(member) = group.members.get_mut(member_id) {
            member.sync_waiter = Some(sender);
            member.last_seen = Instant::now();
        }
        if group.leader.as_deref() == Some(member_id) {
            let mut by_member: BTreeMap<String, Bytes> = assignments.into_iter().collect();
            let (protocol_type, protocol_name) =
                (group.protocol_type.clone(), group.protocol.clone());
            for (id, member) in group.members.iter_mut() {
                member.assignment = by_member.remove(id).unwrap_or_default();
                member.last_seen = Instant::now();
                if let Some(waiter) = member.sync_waiter.take() {
                    let _ = waiter.send(SyncOutcome {
                        error: 0,
                        protocol_type: protocol_type.clone(),
                        protocol_name: protocol_name.clone(),
                        assignment: member.assignment.clone(),
                    });
                }
            }
            group.state = GroupState::Stable;
            self.persist(group_id, group);
        }
        Ok(receiver)
    }

    /// Heartbeat: the error code to answer with, checked in Kafka's order: fenced static
    /// member, unknown member, generation, then the group state. `arrived` is false when a
    /// held heartbeat is answered: no new heartbeat came, so the session is not renewed.
    pub fn heartbeat(
        &self,
        group_id: &str,
        generation: i32,
        member_id: &str,
        instance_id: Option<&str>,
        arrived: bool,
    ) -> i16 {
        let mut groups = self.lock();
        let Some(group) = groups.get_mut(group_id) else {
            return code(ResponseError::UnknownMemberId);
        };
        if let Err(error) = check_member(group, member_id, instance_id) {
            return error;
        }
        let state = group.state;
        let current = group.generation;
        if let Some(member) = group.members.get_mut(member_id) {
            let now = Instant::now();
            // The session runs from the last heartbeat that arrived, as in Kafka: answering a
            // held one (when the member's connection closes, say) does not extend it.
            if arrived {
                member.last_seen = now;
                if let Some(last) = member.beats.last {
                    let seen = now.duration_since(last);
                    member.beats.interval =
                        Some(member.beats.interval.map_or(seen, |known| known.min(seen)));
                }
                member.beats.last = Some(now);
            }
        }
        if generation != current {
            return code(ResponseError::IllegalGeneration);
        }
        if state == GroupState::PreparingRebalance {
            return code(ResponseError::RebalanceInProgress);
        }
        0
    }

    /// Holds a heartbeat that [`Groups::heartbeat`] answered NONE: the receiver fires (or
    /// closes) when the member must hear of a change, and the duration is the longest to hold
    /// it. `None` when holds are off or the member is not in a Stable group.
    pub fn hold(
        &self,
        group_id: &str,
        member_id: &str,
    ) -> Option<(oneshot::Receiver<()>, Duration)> {
        let max = self.settings.heartbeat_hold_max;
        if max.is_zero() {
            return None;
        }
        let mut groups = self.lock();
        let group = groups.get_mut(group_id)?;
        if group.state != GroupState::Stable {
            return None;
        }
        let member = group.members.get_mut(member_id)?;
        let limit = max.min(member.session_timeout / 3);
        let hold = match member.beats.interval {
            Some(interval) => interval.saturating_sub(HOLD_MARGIN_MAX.min(interval / 5)),
            None => FIRST_HOLD,
        }
        .min(limit);
        if hold.is_zero() {
            return None;
        }
        member.beats.release();
        let (sender, receiver) = oneshot::channel();
        member.beats.waiter = Some(sender);
        Some((receiver, hold))
    }

    /// LeaveGroup for each member id (or instance id); returns an error code per entry.
    pub fn leave(
        &self,
        group_id: &str,
        members: &[(String, Option<String>)],
    ) -> std::result::Result<Vec<i16>, i16> {
        let mut groups = self.lock();
        let group = groups.get_mut(group_id).ok_or(code(ResponseError::UnknownMemberId))?;
        let now = Instant::now();
        let mut codes = Vec::with_capacity(members.len());
        let mut removed = false;
        for (member_id, instance_id) in members {
            if !member_id.is_empty() {
                if let Err(error) = check_member(group, member_id, instance_id.as_deref()) {
                    codes.push(error);
                    continue;
                }
            }
            let id = if member_id.is_empty() {
                instance_id.as_ref().and_then(|i| {
                    group
                        .members
                        .iter()
                        .find(|(_, m)| m.instance_id.as_ref() == Some(i))
                        .map(|(id, _)| id.clone())
                })
            } else {
                Some(member_id.clone())
            };
            match id.and_then(|id| group.members.remove(&id)) {
                Some(_) => {
                    removed = true;
                    codes.push(0);
                }
                None => codes.push(code(ResponseError::UnknownMemberId)),
            }
        }
        if removed {
            self.after_removal(group, now);
            if group.state == GroupState::Empty {
                self.persist(group_id, group);
            }
        }
        Ok(codes)
    }

    fn after_removal(&self, group: &mut Group, now: Instant) {
        if group.members.is_empty() {
            group.state = GroupState::Empty;
            group.generation += 1;
            group.leader = None;
            group.protocol = None;
            group.initial_delay_until = None;
        } else if group.state != GroupState::PreparingRebalance {
            self.prepare_rebalance(group, now);
            group.initial_delay_until = None;
        } else {
            try_complete(group, now);
        }
    }

    /// Expires sessions and completes rebalances whose time has come. Called every tick.
    pub fn tick(&self) {
        let now = Instant::now();
        let mut groups = self.lock();
        for (group_id, group) in groups.iter_mut() {
            let expired: Vec<String> = group
                .members
                .iter()
                .filter(|(_, m)| m.session_expired(now))
                .map(|(id, _)| id.clone())
                .collect();
            for id in &expired {
                tracing::info!(group = %group_id, member = %id, "member session expired");
                group.members.remove(id);
            }
            group.pending.retain(|_, deadline| now < *deadline);
            // Kafka's pending-sync timeout: members that have not sent SyncGroup within the
            // rebalance timeout of the join's completion (a dead leader, say) are removed, so
            // the others rebalance rather than wait for an assignment that never comes.
            let mut expired = expired;
            if group.state == GroupState::CompletingRebalance && now >= group.rebalance_deadline {
                let unsynced: Vec<String> = group
                    .members
                    .iter()
                    .filter(|(_, m)| m.sync_waiter.is_none())
                    .map(|(id, _)| id.clone())
                    .collect();
                for id in unsynced {
                    tracing::info!(group = %group_id, member = %id, "member sent no SyncGroup in time");
                    group.members.remove(&id);
                    expired.push(id);
                }
            }
            if !expired.is_empty() {
                self.after_removal(group, now);
                if group.state == GroupState::Empty {
                    self.persist(group_id, group);
                }
            }
            if group.state == GroupState::PreparingRebalance {
                if now >= group.rebalance_deadline
                    && group.initial_delay_until.is_none_or(|d| now >= d)
                {
                    complete(group);
                } else {
                    try_complete(group, now);
                }
            }
        }
        // A group without members keeps nothing here (its offsets are in the store), so drop
        // it rather than let dead group ids fill the GROUPS_MAX slots.
        groups.retain(|_, g| {
            !(g.state == GroupState::Empty && g.members.is_empty() && g.pending.is_empty())
        });
    }

    /// Whether an offset commit from this member at this generation is accepted. As in
    /// Kafka, a member may commit while its group is PreparingRebalance (it commits what it
    /// is revoking); only CompletingRebalance answers REBALANCE_IN_PROGRESS.
    pub fn check_commit(
        &self,
        group_id: &str,
        generation: i32,
        member_id: &str,
        instance_id: Option<&str>,
    ) -> i16 {
        let groups = self.lock();
        let Some(group) = groups.get(group_id) else {
            return if generation < 0 { 0 } else { code(ResponseError::IllegalGeneration) };
        };
        if generation < 0 && member_id.is_empty() && instance_id.is_none() {
            // A simple (assign()-based) consumer or an admin client may commit while the
            // group has no members; otherwise Kafka answers UNKNOWN_MEMBER_ID.
            return if group.members.is_empty() { 0 } else { code(ResponseError::UnknownMemberId) };
        }
        if let Err(error) = check_member(group, member_id, instance_id) {
            return error;
        }
        if generation != group.generation {
            return code(ResponseError::IllegalGeneration);
        }
        if group.state == GroupState::CompletingRebalance {
            return code(ResponseError::RebalanceInProgress);
        }
        0
    }

    /// Checks a TxnOffsetCommit's member fields (KIP-447) as Kafka does: a static member whose
    /// instance id now belongs to another member id is fenced; a member id, when given,
    /// must be in the group; a generation, when given (>= 0), must be current. A rebalance in
    /// progress does not refuse it.
    pub fn check_txn_commit(
        &self,
        group_id: &str,
        generation: i32,
        member_id: &str,
        instance_id: Option<&str>,
    ) -> i16 {
        let groups = self.lock();
        let Some(group) = groups.get(group_id) else {
            return if generation < 0 { 0 } else { code(ResponseError::IllegalGeneration) };
        };
        if let Some(instance) = instance_id {
            let owner = group
                .members
                .iter()
                .find(|(_, m)| m.instance_id.as_deref() == Some(instance))
                .map(|(id, _)| id.as_str());
            if owner.is_some_and(|owner| owner != member_id) {
                return code(ResponseError::FencedInstanceId);
            }
        }
        if !member_id.is_empty() && !group.members.contains_key(member_id) {
            return code(ResponseError::UnknownMemberId);
        }
        if generation >= 0 && generation != group.generation {
            return code(ResponseError::IllegalGeneration);
        }
        0
    }

    /// A view of one group, if it has ever had members here.
    pub fn describe(&self, group_id: &str) -> Option<GroupView> {
        let groups = self.lock();
        let group = groups.get(group_id)?;
        let protocol = group.protocol.clone().unwrap_or_default();
        let members = group
            .members
            .iter()
            .map(|(id, m)| MemberView {
                member_id: id.clone(),
                instance_id: m.instance_id.clone(),
                client_id: m.client_id.clone(),
                client_host: m.client_host.clone(),
                metadata: m
                    .protocols
                    .iter()
                    .find(|(name, _)| *name == protocol)
                    .map(|(_, b)| b.clone())
                    .unwrap_or_default(),
                assignment: m.assignment.clone(),
            })
            .collect();
        Some(GroupView {
            state: group.state,
            protocol_type: group.protocol_type.clone().unwrap_or_default(),
            protocol,
            members,
        })
    }

    /// Which topics the group's members subscribe to, for OffsetDelete (Kafka's
    /// `validateOffsetDelete` and `isSubscribedToTopic`). `Err(NON_EMPTY_GROUP)` when the
    /// group has members of a protocol other than `consumer`: how they use offsets is not
    /// known, so none may be deleted.
    pub fn subscribed(&self, group_id: &str) -> std::result::Result<Subscribed, i16> {
        let groups = self.lock();
        let Some(group) = groups.get(group_id).filter(|g| !g.members.is_empty()) else {
            return Ok(Subscribed::Nothing);
        };
        if group.protocol_type.as_deref() != Some(CONSUMER_PROTOCOL_TYPE) {
            return Err(code(ResponseError::NonEmptyGroup));
        }
        let Some(protocol) = group.protocol.as_deref() else {
            return Ok(Subscribed::Everything);
        };
        let mut topics = BTreeSet::new();
        for member in group.members.values() {
            let metadata = member.protocols.iter().find(|(name, _)| name == protocol);
            match metadata.and_then(|(_, metadata)| subscription_topics(metadata)) {
                Some(subscribed) => topics.extend(subscribed),
                None => return Ok(Subscribed::Everything),
            }
        }
        Ok(Subscribed::Topics(topics))
    }

    /// Whether the coordinator holds a state for the group (it has had members here).
    pub fn exists(&self, group_id: &str) -> bool {
        self.lock().contains_key(group_id)
    }

    /// Whether the group has members now (its offsets never expire then).
    pub fn has_members(&self, group_id: &str) -> bool {
        self.lock().get(group_id).is_some_and(|g| !g.members.is_empty())
    }

    /// Ids of every group with an in-memory state.
    pub fn ids(&self) -> Vec<String> {
        self.lock().keys().cloned().collect()
    }

    /// Removes an empty group; `Err(code)` when it has members. Members whose session has
    /// ended count as gone even before the ticker removes them, as Kafka's exact timers
    /// would have.
    pub fn remove_if_empty(&self, group_id: &str) -> std::result::Result<(), i16> {
        let mut groups = self.lock();
        let now = Instant::now();
        match groups.get(group_id) {
            Some(group) if group.members.values().any(|m| !m.session_expired(now)) => {
                Err(code(ResponseError::NonEmptyGroup))
            }
            _ => {
                groups.remove(group_id);
                self.writer.put(group_id, None);
                Ok(())
            }
        }
    }

    /// Deletes expired committed offsets (`offsets.retention.minutes`, KIP-211): all of a
    /// group's once it has been empty for the retention; for a consumer that commits without
    /// joining (no stored group), each offset once it is that old. A group with members
    /// (here, or in the consumer protocol: `live`) keeps every offset. Returns how many
    /// offsets were deleted.
    pub fn expire_offsets(
        &self,
        retention_ms: i64,
        now_ms: i64,
        live: impl Fn(&str) -> bool,
    ) -> crate::Result<usize> {
        // The stored states say since when each group is empty.
        self.writer.flush();
        let records = self.store.groups()?;
        let mut deleted = 0;
        for group_id in self.store.groups_with_offsets()? {
            if self.has_members(&group_id) || live(&group_id) {
                continue;
            }
            let offsets = self.store.group_offsets(&group_id)?;
            let record = records.get(&group_id);
            let doomed: Vec<(String, i32)> = match record.map(|r| r.empty_since_ms) {
                Some(Some(since)) if now_ms - since >= retention_ms => {
                    offsets.into_keys().collect()
                }
                Some(_) => Vec::new(),
                None => offsets
                    .into_iter()
                    .filter(|(_, o)| now_ms - o.commit_timestamp_ms >= retention_ms)
                    .map(|(key, _)| key)
                    .collect(),
            };
            if doomed.is_empty() {
                continue;
            }
            self.store.delete_offsets(&group_id, Some(&doomed))?;
            deleted += doomed.len();
            if record.is_some_and(|r| r.empty_since_ms.is_some()) {
                // Through the writer, after any state queued before, unless the group has
                // members again by now (then its newer state stays).
                let groups = self.lock();
                if groups.get(&group_id).is_none_or(|g| g.members.is_empty()) {
                    self.writer.put(&group_id, None);
                }
            }
            tracing::info!(group = %group_id, offsets = doomed.len(), "expired committed offsets");
        }
        Ok(deleted)
    }

    /// Nothing to do yet: assignments name topics, and members rejoin on metadata change.
    pub fn forget_topic(&self, _topic: &str) {}
}

/// Group ids are keys in the store (`group NUL topic NUL partition`): no NUL, not empty.
pub(crate) fn valid_group_id(group_id: &str) -> bool {
    !group_id.is_empty() && !group_id.contains('\0')
}

fn outcome(group: &Group, assignment: Bytes) -> SyncOutcome {
    SyncOutcome {
        error: 0,
        protocol_type: group.protocol_type.clone(),
        protocol_name: group.protocol.clone(),
        assignment,
    }
}

/// Completes the rebalance if every member has rejoined and any initial delay has passed.
fn try_complete(group: &mut Group, now: Instant) {
    if group.state != GroupState::PreparingRebalance {
        return;
    }
    let all_joined = group.members.values().all(|m| m.join_waiter.is_some());
    let delay_over = group.initial_delay_until.is_none_or(|d| now >= d);
    if all_joined && delay_over {
        complete(group);
    }
}

/// Ends PreparingRebalance: drops members that did not rejoin, picks the protocol and the
/// leader, bumps the generation and answers every waiting JoinGroup.
fn complete(group: &mut Group) {
    group.members.retain(|_, m| m.join_waiter.is_some());
    group.initial_delay_until = None;
    group.generation += 1;
    if group.members.is_empty() {
        group.state = GroupState::Empty;
        group.leader = None;
        return;
    }
    group.protocol = choose_protocol(group);
    let leader = match &group.leader {
        Some(leader) if group.members.contains_key(leader) => leader.clone(),
        _ => group.members.keys().next().cloned().unwrap_or_default(),
    };
    group.leader = Some(leader.clone());
    group.state = GroupState::CompletingRebalance;
    let timeout = group.members.values().map(|m| m.rebalance_timeout).max().unwrap_or_default();
    group.rebalance_deadline = Instant::now() + timeout;
    let protocol = group.protocol.clone().unwrap_or_default();
    let everyone = members_for_leader(group, &protocol);
    let now = Instant::now();
    for (id, member) in group.members.iter_mut() {
        member.last_seen = now;
        member.assignment = Bytes::new();
        if let Some(waiter) = member.join_waiter.take() {
            let _ = waiter.send(JoinOutcome {
                error: 0,
                generation: group.generation,
                protocol_type: group.protocol_type.clone(),
                protocol_name: group.protocol.clone(),
                leader: leader.clone(),
                member_id: id.clone(),
                members: if *id == leader { everyone.clone() } else { Vec::new() },
            });
        }
    }
}

/// What JoinGroup gives a member.
enum MemberId {
    /// KIP-394: answer MEMBER_ID_REQUIRED with this id.
    Required(String),
    /// Join with this id.
    Assigned(String),
    /// A static member came back: this new id replaced its old one.
    Replaced {
        /// The new member id.
        id: String,
        /// The group's leader before the replacement (the old id if the member led).
        previous_leader: String,
    },
}

/// Resolves the member id of a JoinGroup (see the module docs for the rules).
fn member_id_for(
    group: &mut Group,
    request: &JoinRequest,
    now: Instant,
) -> std::result::Result<MemberId, i16> {
    let fresh = || format!("{}-{}", request.client_id, uuid::Uuid::new_v4());
    if let Some(instance) = request.instance_id.as_deref() {
        let owner = static_owner(group, instance);
        return match owner {
            Some(owner) if request.member_id.is_empty() => {
                // The instance restarted: a new id replaces the old, which is fenced.
                let id = fresh();
                if let Some(mut old) = group.members.remove(&owner) {
                    fence_waiters(&mut old);
                    group.members.insert(id.clone(), old);
                }
                let previous_leader = group.leader.clone().unwrap_or_default();
                if group.leader.as_deref() == Some(owner.as_str()) {
                    group.leader = Some(id.clone());
                }
                Ok(MemberId::Replaced { id, previous_leader })
            }
            Some(owner) if owner != request.member_id => Err(code(ResponseError::FencedInstanceId)),
            Some(owner) => Ok(MemberId::Assigned(owner)),
            None if request.member_id.is_empty() => Ok(MemberId::Assigned(fresh())),
            None => Err(code(ResponseError::UnknownMemberId)),
        };
    }
    if request.member_id.is_empty() {
        let id = fresh();
        if request.require_known_member_id {
            let wait = Duration::from_millis(request.session_timeout_ms.max(0) as u64);
            if group.pending.len() >= GROUP_MEMBERS_MAX {
                return Err(code(ResponseError::GroupMaxSizeReached));
            }
            group.pending.insert(id.clone(), now + wait);
            return Ok(MemberId::Required(id));
        }
        return Ok(MemberId::Assigned(id));
    }
    if group.members.contains_key(&request.member_id)
        || group.pending.remove(&request.member_id).is_some()
    {
        return Ok(MemberId::Assigned(request.member_id.clone()));
    }
    Err(code(ResponseError::UnknownMemberId))
}

/// The member id that holds a static instance id.
fn static_owner(group: &Group, instance_id: &str) -> Option<String> {
    group
        .members
        .iter()
        .find(|(_, m)| m.instance_id.as_deref() == Some(instance_id))
        .map(|(id, _)| id.clone())
}

/// A replaced static member's waiting requests learn they are fenced.
fn fence_waiters(member: &mut Member) {
    member.beats.release();
    if let Some(waiter) = member.join_waiter.take() {
        let _ = waiter.send(JoinOutcome {
            error: code(ResponseError::FencedInstanceId),
            generation: -1,
            ..JoinOutcome::default()
        });
    }
    if let Some(waiter) = member.sync_waiter.take() {
        let _ = waiter.send(SyncOutcome {
            error: code(ResponseError::FencedInstanceId),
            ..SyncOutcome::default()
        });
    }
}

/// Kafka's member check for Heartbeat, SyncGroup, OffsetCommit and LeaveGroup: a static
/// instance held by another member id is fenced; otherwise the member must be known.
fn check_member(
    group: &Group,
    member_id: &str,
    instance_id: Option<&str>,
) -> std::result::Result<(), i16> {
    if let Some(instance) = instance_id {
        if static_owner(group, instance).is_some_and(|owner| owner != member_id) {
            return Err(code(ResponseError::FencedInstanceId));
        }
    }
    if !group.members.contains_key(member_id) {
        return Err(code(ResponseError::UnknownMemberId));
    }
    Ok(())
}

/// The JoinGroup answer for the current generation, without a rebalance.
fn current_join(group: &Group, member_id: &str) -> JoinOutcome {
    let leader = group.leader.clone().unwrap_or_default();
    let protocol = group.protocol.clone().unwrap_or_default();
    let members =
        if leader == member_id { members_for_leader(group, &protocol) } else { Vec::new() };
    JoinOutcome {
        error: 0,
        generation: group.generation,
        protocol_type: group.protocol_type.clone(),
        protocol_name: group.protocol.clone(),
        leader,
        member_id: member_id.to_string(),
        members,
    }
}

/// Every member with its metadata for the chosen protocol, as the leader receives them.
fn members_for_leader(group: &Group, protocol: &str) -> Vec<(String, Option<String>, Bytes)> {
    group
        .members
        .iter()
        .map(|(id, m)| {
            let metadata = m
                .protocols
                .iter()
                .find(|(name, _)| *name == protocol)
                .map(|(_, b)| b.clone())
                .unwrap_or_default();
            (id.clone(), m.instance_id.clone(), metadata)
        })
        .collect()
}

/// The protocol every member supports that most members list first (Kafka's vote).
fn choose_protocol(group: &Group) -> Option<String> {
    let first = group.members.values().next()?;
    let candidates: Vec<&String> = first
        .protocols
        .iter()
        .map(|(name, _)| name)
        .filter(|name| group.members.values().all(|m| m.protocols.iter().any(|(n, _)| n == *name)))
        .collect();
    let mut votes: BTreeMap<&String, usize> = BTreeMap::new();
    for member in group.members.values() {
        if let Some((name, _)) = member.protocols.iter().find(|(n, _)| candidates.contains(&n)) {
            *votes.entry(name).or_default() += 1;
        }
    }
    candidates.iter().max_by_key(|c| votes.get(*c).copied().unwrap_or(0)).map(|c| (*c).clone())
}

/// A consumer's JoinGroup metadata, for tests: `ConsumerProtocolSubscription` v3 naming
/// `topics`.
#[cfg(test)]
pub(crate) fn consumer_subscription(topics: &[&str]) -> Bytes {
    use kafka_protocol::messages::ConsumerProtocolSubscription;
    use kafka_protocol::protocol::{Encodable, StrBytes};
    let topics = topics.iter().map(|t| StrBytes::from_string(t.to_string())).collect();
    let subscription = ConsumerProtocolSubscription::default().with_topics(topics);
    let mut buf = bytes::BytesMut::new();
    buf.extend_from_slice(&3i16.to_be_bytes());
    subscription.encode(&mut buf, 3).unwrap();
    buf.freeze()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn groups(dir: &std::path::Path) -> Groups {
        groups_holding(dir, Duration::from_millis(5000))
    }

    /// A coordinator whose heartbeats are held at most `hold_max`.
    fn groups_holding(dir: &std::path::Path, hold_max: Duration) -> Groups {
        let store = std::sync::Arc::new(Store::open(&dir.join("meta.redb")).unwrap());
        let settings = GroupSettings {
            initial_rebalance_delay: Duration::ZERO,
            session_timeout_min_ms: 1,
            session_timeout_max_ms: 600_000,
            heartbeat_hold_max: hold_max,
        };
        Groups::load(settings, store).unwrap()
    }

    fn join_request(member_id: &str, instance: Option<&str>, v4: bool) -> JoinRequest {
        JoinRequest {
            group_id: "g".into(),
            member_id: member_id.into(),
            instance_id: instance.map(str::to_string),
            client_id: "c".into(),
            client_host: "/127.0.0.1".into(),
            session_timeout_ms: 10_000,
            rebalance_timeout_ms: 10_000,
            protocol_type: "consumer".into(),
            protocols: vec![("range".into(), Bytes::from_static(b"meta"))],
            require_known_member_id: v4,
        }
    }

    fn join_now(groups: &Groups, request: JoinRequest) -> JoinOutcome {
        let mut receiver = groups.join(request).unwrap();
        receiver.try_recv().expect("the join completes at once here")
    }

    /// Joins one member through KIP-394 and syncs it: the group is Stable at generation 1.
    fn stable_single_member(groups: &Groups) -> String {
        let required = join_now(groups, join_request("", None, true));
        assert_eq!(required.error, ResponseError::MemberIdRequired.code());
        let joined = join_now(groups, join_request(&required.member_id, None, true));
        assert_eq!((joined.error, joined.generation), (0, 1));
        assert_eq!(joined.leader, required.member_id);
        let assignment = vec![(required.member_id.clone(), Bytes::from_static(b"a"))];
        let mut synced = groups.sync("g", 1, &required.member_id, None, assignment).unwrap();
        assert_eq!(synced.try_recv().unwrap().assignment, Bytes::from_static(b"a"));
        required.member_id
    }

    #[test]
    fn a_held_heartbeat_is_answered_when_a_rebalance_begins() {
        let dir = tempfile::tempdir().unwrap();
        let groups = groups(dir.path());
        let member = stable_single_member(&groups);
        assert_eq!(groups.heartbeat("g", 1, &member, None, true), 0);
        let (mut changed, hold) = groups.hold("g", &member).expect("a Stable member is held");
        // The interval is not known yet: the first hold is short, and within a third of
        // the 10 s session.
        assert_eq!(hold, FIRST_HOLD);
        assert!(changed.try_recv().is_err(), "nothing happened yet");
        // A second member joins: the held heartbeat learns of the rebalance at once.
        let _joining = groups.join(join_request("", None, false)).unwrap();
        assert!(changed.try_recv().is_ok());
        let answer = groups.heartbeat("g", 1, &member, None, false);
        assert_eq!(answer, ResponseError::RebalanceInProgress.code());
        assert!(groups.hold("g", &member).is_none(), "only Stable groups hold heartbeats");
    }

    #[test]
    fn a_held_heartbeat_of_a_member_that_leaves_is_answered() {
        let dir = tempfile::tempdir().unwrap();
        let groups = groups(dir.path());
        let member = stable_single_member(&groups);
        assert_eq!(groups.heartbeat("g", 1, &member, None, true), 0);
        let (mut changed, _) = groups.hold("g", &member).unwrap();
        groups.leave("g", &[(member.clone(), None)]).unwrap();
        assert!(matches!(changed.try_recv(), Err(oneshot::error::TryRecvError::Closed)));
        let answer = groups.heartbeat("g", 1, &member, None, false);
        assert_eq!(answer, ResponseError::UnknownMemberId.code());
    }

    #[test]
    fn holds_end_before_the_next_heartbeat_is_due() {
        let dir = tempfile::tempdir().unwrap();
        let groups = groups(dir.path());
        let member = stable_single_member(&groups);
        let started = Instant::now();
        assert_eq!(groups.heartbeat("g", 1, &member, None, true), 0);
        std::thread::sleep(Duration::from_millis(100));
        assert_eq!(groups.heartbeat("g", 1, &member, None, true), 0);
        let outer = started.elapsed();
        let (_, hold) = groups.hold("g", &member).unwrap();
        // The gap the coordinator saw is at least the 100 ms slept and at most `outer` (a
        // loaded machine may sleep longer); the hold ends a fifth of it early.
        let least = Duration::from_millis(80);
        assert!(hold >= least && hold < outer, "{hold:?} outside {least:?}..{outer:?}");
        // Answering a held heartbeat is not a new heartbeat: the interval stays.
        assert_eq!(groups.heartbeat("g", 1, &member, None, false), 0);
        let (_, again) = groups.hold("g", &member).unwrap();
        assert!(again <= hold, "{again:?} after {hold:?}");
    }

    #[test]
    fn a_session_runs_from_the_last_heartbeat_that_arrived_not_from_a_held_answer() {
        let dir = tempfile::tempdir().unwrap();
        let groups = groups(dir.path());
        let mut request = join_request("", None, false);
        request.session_timeout_ms = 300;
        let joined = join_now(&groups, request);
        let member = joined.member_id;
        let assignment = vec![(member.clone(), Bytes::from_static(b"a"))];
        groups.sync("g", 1, &member, None, assignment).unwrap();
        assert_eq!(groups.heartbeat("g", 1, &member, None, true), 0);
        let (connection, _) = groups.hold("g", &member).unwrap();
        std::thread::sleep(Duration::from_millis(400));
        assert_eq!(
            groups.remove_if_empty("g"),
            Err(ResponseError::NonEmptyGroup.code()),
            "a member whose heartbeat is held is alive"
        );
        // Its connection closes: the held heartbeat is answered, which is not a heartbeat.
        drop(connection);
        assert_eq!(groups.heartbeat("g", 1, &member, None, false), 0);
        // The session ended 300 ms after the heartbeat arrived; no tick has run, and the
        // group is empty all the same.
        assert_eq!(groups.remove_if_empty("g"), Ok(()));
    }

    #[test]
    fn heartbeats_are_not_held_when_holds_are_off() {
        let dir = tempfile::tempdir().unwrap();
        let groups = groups_holding(dir.path(), Duration::ZERO);
        let member = stable_single_member(&groups);
        assert!(groups.hold("g", &member).is_none());
    }

    #[test]
    fn offset_delete_keeps_what_members_subscribe_to() {
        let dir = tempfile::tempdir().unwrap();
        let groups = groups(dir.path());
        assert_eq!(groups.subscribed("g"), Ok(Subscribed::Nothing), "no group");
        let mut request = join_request("", None, false);
        request.protocols = vec![("range".into(), consumer_subscription(&["a", "b"]))];
        let joined = join_now(&groups, request);
        assert_eq!(joined.error, 0);
        let topics = Subscribed::Topics(["a".to_string(), "b".to_string()].into());
        assert_eq!(groups.subscribed("g"), Ok(topics));
        assert!(groups.subscribed("g").unwrap().covers("a"));
        assert!(!groups.subscribed("g").unwrap().covers("c"));
        // A second member whose metadata is not a subscription: every topic is kept.
        let mut other = join_request("", None, false);
        other.protocols = vec![("range".into(), Bytes::from_static(b"\x00"))];
        groups.join(other).unwrap();
        assert_eq!(groups.subscribed("g"), Ok(Subscribed::Everything));
        // Once every member has left, nothing is subscribed.
        let everyone: Vec<_> = groups
            .describe("g")
            .unwrap()
            .members
            .into_iter()
            .map(|m| (m.member_id, None))
            .collect();
        groups.leave("g", &everyone).unwrap();
        assert_eq!(groups.subscribed("g"), Ok(Subscribed::Nothing));
        // Members of another protocol type: no offset may be deleted.
        let mut connect = join_request("", None, false);
        connect.group_id = "workers".into();
        connect.protocol_type = "connect".into();
        join_now(&groups, connect);
        assert_eq!(groups.subscribed("workers"), Err(ResponseError::NonEmptyGroup.code()));
    }

    #[test]
    fn kip_394_members_fetch_their_id_first() {
        let dir = tempfile::tempdir().unwrap();
        let groups = groups(dir.path());
        stable_single_member(&groups);
        let unknown = groups.join(join_request("made-up", None, true)).unwrap_err();
        assert_eq!(unknown, ResponseError::UnknownMemberId.code());
    }

    #[test]
    fn commits_are_accepted_while_preparing_a_rebalance() {
        let dir = tempfile::tempdir().unwrap();
        let groups = groups(dir.path());
        let first = stable_single_member(&groups);
        let second = join_now(&groups, join_request("", None, true)).member_id;
        let _pending = groups.join(join_request(&second, None, true)).unwrap();
        assert_eq!(
            groups.heartbeat("g", 1, &first, None, true),
            ResponseError::RebalanceInProgress.code()
        );
        assert_eq!(groups.check_commit("g", 1, &first, None), 0, "commit on revoke");
        assert_eq!(
            groups.check_commit("g", -1, "", None),
            ResponseError::UnknownMemberId.code(),
            "an admin commit (no member, generation -1) needs an empty group"
        );
        assert_eq!(
            groups.check_commit("g", 0, &first, None),
            ResponseError::IllegalGeneration.code()
        );
    }

    #[test]
    fn a_restarted_static_member_replaces_and_fences_its_old_id() {
        let dir = tempfile::tempdir().unwrap();
        let groups = groups(dir.path());
        let joined = join_now(&groups, join_request("", Some("instance-1"), true));
        assert_eq!(joined.error, 0, "static members skip KIP-394");
        let old = joined.member_id;
        let a = vec![(old.clone(), Bytes::from_static(b"a"))];
        groups.sync("g", 1, &old, Some("instance-1"), a).unwrap();
        let rejoined = join_now(&groups, join_request("", Some("instance-1"), true));
        assert_ne!(rejoined.member_id, old);
        assert_eq!(rejoined.generation, 1, "a Stable group does not rebalance for it");
        assert_eq!(rejoined.leader, old, "the previous leader id: no new assignment to compute");
        let mut synced =
            groups.sync("g", 1, &rejoined.member_id, Some("instance-1"), Vec::new()).unwrap();
        assert_eq!(synced.try_recv().unwrap().assignment, Bytes::from_static(b"a"));
        let fenced = groups.heartbeat("g", 1, &old, Some("instance-1"), true);
        assert_eq!(fenced, ResponseError::FencedInstanceId.code());
        let wrong = groups.join(join_request(&old, Some("instance-1"), true)).unwrap_err();
        assert_eq!(wrong, ResponseError::FencedInstanceId.code());
    }

    /// Two members in CompletingRebalance at generation 2; the follower awaits its SyncGroup.
    fn completing_with_a_waiting_follower(
        groups: &Groups,
        session_ms: i32,
        rebalance_ms: i32,
    ) -> (String, String, oneshot::Receiver<SyncOutcome>) {
        let timed = |member_id: &str| JoinRequest {
            session_timeout_ms: session_ms,
            rebalance_timeout_ms: rebalance_ms,
            ..join_request(member_id, None, false)
        };
        let mut leader_join = groups.join(timed("")).unwrap();
        let leader = leader_join.try_recv().unwrap().member_id;
        groups.sync("g", 1, &leader, None, Vec::new()).unwrap();
        let mut follower_join = groups.join(timed("")).unwrap();
        let mut leader_rejoin = groups.join(timed(&leader)).unwrap();
        assert_eq!(leader_rejoin.try_recv().unwrap().generation, 2);
        let follower = follower_join.try_recv().unwrap().member_id;
        let waiting = groups.sync("g", 2, &follower, None, Vec::new()).unwrap();
        (leader, follower, waiting)
    }

    #[test]
    fn a_member_awaiting_sync_outlives_a_dead_leader() {
        let dir = tempfile::tempdir().unwrap();
        let groups = groups(dir.path());
        let (leader, follower, mut waiting) =
            completing_with_a_waiting_follower(&groups, 50, 60_000);
        std::thread::sleep(Duration::from_millis(120));
        groups.tick();
        let answer = waiting.try_recv().expect("answered when the leader's session ended");
        assert_eq!(answer.error, ResponseError::RebalanceInProgress.code());
        let view = groups.describe("g").unwrap();
        let ids: Vec<&str> = view.members.iter().map(|m| m.member_id.as_str()).collect();
        assert_eq!(ids, vec![follower.as_str()], "the leader {leader} expired, not the follower");
        assert_eq!(view.state, GroupState::PreparingRebalance);
    }

    #[test]
    fn members_that_never_sync_are_removed_after_the_rebalance_timeout() {
        let dir = tempfile::tempdir().unwrap();
        let groups = groups(dir.path());
        let (_leader, follower, mut waiting) =
            completing_with_a_waiting_follower(&groups, 60_000, 50);
        groups.tick();
        assert!(waiting.try_recv().is_err(), "still waiting within the rebalance timeout");
        std::thread::sleep(Duration::from_millis(120));
        groups.tick();
        assert_eq!(waiting.try_recv().unwrap().error, ResponseError::RebalanceInProgress.code());
        let view = groups.describe("g").unwrap();
        assert_eq!(view.members.len(), 1);
        assert_eq!(view.members[0].member_id, follower);
    }

    #[test]
    fn an_unchanged_follower_rejoin_keeps_the_generation() {
        let dir = tempfile::tempdir().unwrap();
        let groups = groups(dir.path());
        let leader = stable_single_member(&groups);
        let follower = join_now(&groups, join_request("", None, true)).member_id;
        let mut follower_join = groups.join(join_request(&follower, None, true)).unwrap();
        let mut leader_join = groups.join(join_request(&leader, None, true)).unwrap();
        assert_eq!(leader_join.try_recv().unwrap().generation, 2);
        assert_eq!(follower_join.try_recv().unwrap().generation, 2);
        let assignments = vec![
            (leader.clone(), Bytes::from_static(b"l")),
            (follower.clone(), Bytes::from_static(b"f")),
        ];
        let _follower_sync = groups.sync("g", 2, &follower, None, Vec::new()).unwrap();
        let _leader_sync = groups.sync("g", 2, &leader, None, assignments).unwrap();
        let again = join_now(&groups, join_request(&follower, None, true));
        assert_eq!((again.error, again.generation), (0, 2), "no rebalance");
        assert_eq!(groups.heartbeat("g", 2, &leader, None, true), 0);
    }

    #[test]
    fn offsets_of_an_empty_group_expire_after_the_retention() {
        let dir = tempfile::tempdir().unwrap();
        let groups = groups(dir.path());
        let member = stable_single_member(&groups);
        let record = |offset| crate::store::OffsetRecord {
            offset,
            leader_epoch: -1,
            metadata: None,
            commit_timestamp_ms: 0,
        };
        groups.store.commit_offsets("g", &[("t".into(), 0, record(5))]).unwrap();
        groups.store.commit_offsets("standalone", &[("t".into(), 0, record(7))]).unwrap();
        let now = crate::clock::now_ms();
        assert_eq!(
            groups.expire_offsets(1000, now, |_| false).unwrap(),
            1,
            "only the standalone one"
        );
        groups.leave("g", &[(member, None)]).unwrap();
        assert_eq!(
            groups.expire_offsets(60_000, now + 59_000, |_| false).unwrap(),
            0,
            "empty, not yet old"
        );
        assert_eq!(groups.expire_offsets(60_000, now + 61_000, |_| false).unwrap(), 1);
        assert!(groups.store.groups_with_offsets().unwrap().is_empty());
    }

    #[test]
    fn stable_groups_survive_a_restart() {
        let dir = tempfile::tempdir().unwrap();
        let member = {
            let groups = groups(dir.path());
            stable_single_member(&groups)
        };
        let groups = groups(dir.path());
        assert_eq!(groups.heartbeat("g", 1, &member, None, true), 0);
        let mut synced = groups.sync("g", 1, &member, None, Vec::new()).unwrap();
        assert_eq!(synced.try_recv().unwrap().assignment, Bytes::from_static(b"a"));
    }
}
