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
use std::collections::BTreeMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use bytes::Bytes;
use kafka_protocol::ResponseError;
use tokio::sync::oneshot;

use crate::limits::{GROUPS_MAX, GROUP_MEMBERS_MAX};

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
}

/// Timing settings.
pub(crate) struct GroupSettings {
    pub initial_rebalance_delay: Duration,
    pub session_timeout_min_ms: i32,
    pub session_timeout_max_ms: i32,
}

/// Every group.
pub(crate) struct Groups {
    groups: Mutex<BTreeMap<String, Group>>,
    settings: GroupSettings,
}

fn code(error: ResponseError) -> i16 {
    error.code()
}

impl Groups {
    pub fn new(settings: GroupSettings) -> Groups {
        Groups { groups: Mutex::new(BTreeMap::new()), settings }
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
        });
        if !group.members.is_empty()
            && group.protocol_type.as_deref().is_some_and(|t| t != request.protocol_type)
        {
            return Err(code(ResponseError::InconsistentGroupProtocol));
        }
        let member_id = if request.member_id.is_empty() {
            if group.members.len() >= GROUP_MEMBERS_MAX {
                return Err(code(ResponseError::GroupMaxSizeReached));
            }
            // A static member (KIP-345) that rejoins without its id takes its old place.
            let existing = request.instance_id.as_ref().and_then(|instance| {
                group
                    .members
                    .iter()
                    .find(|(_, m)| m.instance_id.as_ref() == Some(instance))
                    .map(|(id, _)| id.clone())
            });
            existing.unwrap_or_else(|| format!("{}-{}", request.client_id, uuid::Uuid::new_v4()))
        } else if group.members.contains_key(&request.member_id) {
            request.member_id.clone()
        } else {
            return Err(code(ResponseError::UnknownMemberId));
        };
        let (sender, receiver) = oneshot::channel();
        let member = Member {
            instance_id: request.instance_id,
            client_id: request.client_id,
            client_host: request.client_host,
            session_timeout: Duration::from_millis(request.session_timeout_ms.max(0) as u64),
            rebalance_timeout: Duration::from_millis(request.rebalance_timeout_ms.max(0) as u64),
            protocols: request.protocols,
            assignment: Bytes::new(),
            last_seen: now,
            join_waiter: Some(sender),
            sync_waiter: None,
        };
        let changed =
            group.members.get(&member_id).is_none_or(|old| old.protocols != member.protocols);
        group.protocol_type = Some(request.protocol_type);
        group.members.insert(member_id, member);
        let _ = changed;
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
            if let Some(waiter) = member.sync_waiter.take() {
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
        assignments: Vec<(String, Bytes)>,
    ) -> std::result::Result<oneshot::Receiver<SyncOutcome>, i16> {
        let mut groups = self.lock();
        let group = groups.get_mut(group_id).ok_or(code(ResponseError::UnknownMemberId))?;
        if !group.members.contains_key(member_id) {
            return Err(code(ResponseError::UnknownMemberId));
        }
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
        }
        Ok(receiver)
    }

    /// Heartbeat: the error code to answer with.
    pub fn heartbeat(&self, group_id: &str, generation: i32, member_id: &str) -> i16 {
        let mut groups = self.lock();
        let Some(group) = groups.get_mut(group_id) else {
            return code(ResponseError::UnknownMemberId);
        };
        let state = group.state;
        let current = group.generation;
        let Some(member) = group.members.get_mut(member_id) else {
            return code(ResponseError::UnknownMemberId);
        };
        member.last_seen = Instant::now();
        if state == GroupState::PreparingRebalance {
            return code(ResponseError::RebalanceInProgress);
        }
        if generation != current {
            return code(ResponseError::IllegalGeneration);
        }
        0
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
                .filter(|(_, m)| {
                    m.join_waiter.is_none() && now.duration_since(m.last_seen) > m.session_timeout
                })
                .map(|(id, _)| id.clone())
                .collect();
            for id in &expired {
                tracing::info!(group = %group_id, member = %id, "member session expired");
                group.members.remove(id);
            }
            if !expired.is_empty() {
                self.after_removal(group, now);
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
        groups.retain(|_, g| !(g.state == GroupState::Empty && g.members.is_empty()));
    }

    /// Whether an offset commit from this member at this generation is accepted.
    pub fn check_commit(&self, group_id: &str, generation: i32, member_id: &str) -> i16 {
        let groups = self.lock();
        let Some(group) = groups.get(group_id) else {
            return if generation < 0 { 0 } else { code(ResponseError::IllegalGeneration) };
        };
        if generation < 0 && member_id.is_empty() {
            // A simple (assign()-based) consumer may commit while the group has no members.
            return if group.members.is_empty() {
                0
            } else {
                code(ResponseError::IllegalGeneration)
            };
        }
        if !group.members.contains_key(member_id) {
            return code(ResponseError::UnknownMemberId);
        }
        if generation != group.generation {
            return code(ResponseError::IllegalGeneration);
        }
        if group.state == GroupState::PreparingRebalance {
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

    /// Ids of every group with an in-memory state.
    pub fn ids(&self) -> Vec<String> {
        self.lock().keys().cloned().collect()
    }

    /// Removes an empty group; `Err(code)` when it has members.
    pub fn remove_if_empty(&self, group_id: &str) -> std::result::Result<(), i16> {
        let mut groups = self.lock();
        match groups.get(group_id) {
            Some(group) if !group.members.is_empty() => Err(code(ResponseError::NonEmptyGroup)),
            _ => {
                groups.remove(group_id);
                Ok(())
            }
        }
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
    let protocol = group.protocol.clone().unwrap_or_default();
    let everyone: Vec<(String, Option<String>, Bytes)> = group
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
        .collect();
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
