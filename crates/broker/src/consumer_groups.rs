//! The consumer group protocol of KIP-848 (ConsumerGroupHeartbeat, a client's
//! `group.protocol=consumer`): the coordinator assigns the partitions itself and hands each
//! member its share in heartbeat responses, one member at a time, with no group-wide barrier.
//!
//! As in Kafka's coordinator:
//! - A member joins with epoch 0, leaves with -1 (or -2, a static member's temporary leave,
//!   which keeps its partitions for a session timeout so the same instance id can take
//!   them back), and otherwise heartbeats with the epoch it was last given.
//! - Any change of membership, subscriptions or of the subscribed topics' partitions bumps
//!   the group epoch; the next heartbeat computes a new target assignment with the server
//!   assignor the members ask for (`uniform`, the default, sticky and balanced; or `range`).
//! - Each member converges on its target by itself: a member told to give up partitions
//!   keeps its epoch until a heartbeat reports them released; a partition another member
//!   still holds is not handed out (the member is "unreleased" until it is free) and only
//!   then does the member move to the target epoch. A partition is never owned twice.
//! - A member silent for `consumer.session.timeout.ms` (group config, else the broker's
//!   `group.consumer.session.timeout.ms`) is removed, and so is one that has not released
//!   its revoked partitions within its rebalance timeout.
//! - Epochs fence: a heartbeat with an epoch ahead of the member's, or behind it other than
//!   the one before (a lost response), is FENCED_MEMBER_EPOCH; an offset commit must carry
//!   the member's epoch (STALE_MEMBER_EPOCH otherwise).
//!
//! Not kept across a restart (unlike the classic groups of `crate::groups`): after one,
//! members get UNKNOWN_MEMBER_ID and rejoin; committed offsets are in the store as always.
use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use kafka_protocol::ResponseError;
use uuid::Uuid;

use crate::limits::{GROUPS_MAX, GROUP_MEMBERS_MAX, TOPICS_MAX, TOPIC_NAME_BYTES_MAX};

/// Partitions by topic id.
pub(crate) type Assignment = BTreeMap<Uuid, BTreeSet<i32>>;

/// The default server assignor (Kafka's `group.consumer.assignors` starts with it).
pub(crate) const UNIFORM: &str = "uniform";
/// The range assignor.
pub(crate) const RANGE: &str = "range";
/// Member epochs with a meaning of their own.
const LEAVE: i32 = -1;
const STATIC_LEAVE: i32 = -2;
/// Longest regular expression accepted, and the most memory one may compile to.
const REGEX_BYTES_MAX: usize = 4096;
const REGEX_COMPILED_BYTES_MAX: usize = 1 << 20;
/// How often regular-expression subscriptions are matched against the topics again (topics
/// created meanwhile join the subscription within this).
const REGEX_REFRESH: Duration = Duration::from_secs(1);

/// What the coordinator needs to know of topics.
pub(crate) trait TopicSource {
    /// The id and partition count of a topic, if it exists.
    fn topic(&self, name: &str) -> Option<(Uuid, i32)>;
    /// Every topic name (for regular-expression subscriptions).
    fn names(&self) -> Vec<String>;
}

impl TopicSource for crate::topics::Topics {
    fn topic(&self, name: &str) -> Option<(Uuid, i32)> {
        self.get(name).map(|t| (t.id, t.partitions.len() as i32))
    }

    fn names(&self) -> Vec<String> {
        self.all().iter().map(|t| t.name.clone()).collect()
    }
}

/// One ConsumerGroupHeartbeat, as the handler decoded it.
#[derive(Debug, Clone, Default)]
pub(crate) struct Heartbeat {
    pub group_id: String,
    pub member_id: String,
    pub member_epoch: i32,
    pub instance_id: Option<String>,
    pub rack_id: Option<String>,
    pub rebalance_timeout_ms: i32,
    /// `None`: unchanged since the last heartbeat.
    pub topics: Option<Vec<String>>,
    /// `None`: unchanged; `Some("")`: no regular expression any more.
    pub regex: Option<String>,
    pub assignor: Option<String>,
    /// The partitions the member owns now; `None`: unchanged.
    pub owned: Option<Assignment>,
}

/// The group's timing, from its group configs or the broker's defaults.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Timing {
    pub session_timeout_ms: i32,
    pub heartbeat_interval_ms: i32,
}

/// The answer to one heartbeat.
#[derive(Debug, Clone, Default, PartialEq)]
pub(crate) struct Answer {
    pub error: i16,
    pub message: Option<String>,
    pub member_id: String,
    pub member_epoch: i32,
    pub heartbeat_interval_ms: i32,
    /// The member's whole assignment, when it changed (or must be sent again).
    pub assignment: Option<Assignment>,
}

impl Answer {
    fn error(code: ResponseError, message: impl Into<String>) -> Answer {
        Answer { error: code.code(), message: Some(message.into()), ..Default::default() }
    }
}

/// Where a member is on its way to its target assignment.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Reconciling {
    /// It owns its target (or all of it it can).
    Stable,
    /// It was told to give up partitions and has not reported them released.
    Unrevoked,
    /// Part of its target is still held by other members.
    Unreleased,
}

#[derive(Debug)]
struct Member {
    epoch: i32,
    previous_epoch: i32,
    instance_id: Option<String>,
    rack_id: Option<String>,
    rebalance_timeout_ms: i32,
    topics: BTreeSet<String>,
    regex: Option<(String, regex::Regex)>,
    assignor: Option<String>,
    /// What it was last told it owns.
    assigned: Assignment,
    /// What it was told to give up and still holds.
    revoking: Assignment,
    state: Reconciling,
    last_seen: Instant,
    session_timeout: Duration,
    revoke_deadline: Option<Instant>,
    /// Left with epoch -2: its partitions wait for its instance id to come back.
    left_static: bool,
}

impl Member {
    fn subscribes(&self, topic: &str) -> bool {
        self.topics.contains(topic) || self.regex.as_ref().is_some_and(|(_, re)| re.is_match(topic))
    }
}

#[derive(Debug, Default)]
struct Group {
    epoch: i32,
    target_epoch: i32,
    members: BTreeMap<String, Member>,
    target: BTreeMap<String, Assignment>,
    /// Who holds each partition (assigned or being revoked).
    owners: HashMap<(Uuid, i32), String>,
    /// The subscribed topics' ids and partition counts the target was computed from.
    metadata: BTreeMap<String, (Uuid, i32)>,
    /// The topics each expression in use matched, and when they were last matched (`None`:
    /// expressions not matched yet wait for the next heartbeat).
    regex_matches: BTreeMap<String, BTreeSet<String>>,
    regex_matched_at: Option<Instant>,
}

/// A consumer group's state, as ListGroups and ConsumerGroupDescribe name it.
pub(crate) fn state_name(group: &GroupView) -> &'static str {
    if group.members.is_empty() {
        "Empty"
    } else if group.target_epoch < group.epoch {
        "Assigning"
    } else if group.members.iter().any(|m| m.epoch != group.epoch || !m.stable) {
        "Reconciling"
    } else {
        "Stable"
    }
}

/// A copy of one group, for ListGroups, DescribeGroups and ConsumerGroupDescribe.
#[derive(Debug, Clone)]
pub(crate) struct GroupView {
    pub epoch: i32,
    pub target_epoch: i32,
    pub assignor: String,
    pub members: Vec<MemberView>,
}

/// A copy of one member.
#[derive(Debug, Clone)]
pub(crate) struct MemberView {
    pub member_id: String,
    pub instance_id: Option<String>,
    pub rack_id: Option<String>,
    pub epoch: i32,
    pub topics: Vec<String>,
    pub regex: Option<String>,
    pub assigned: Assignment,
    pub target: Assignment,
    pub stable: bool,
}

/// Every consumer group this coordinator runs.
#[derive(Debug, Default)]
pub(crate) struct ConsumerGroups {
    groups: Mutex<BTreeMap<String, Group>>,
}

fn code(error: ResponseError) -> i16 {
    error.code()
}

fn partitions_of(assignment: &Assignment) -> impl Iterator<Item = (Uuid, i32)> + '_ {
    assignment.iter().flat_map(|(id, ps)| ps.iter().map(move |p| (*id, *p)))
}

fn contains(assignment: &Assignment, (id, p): (Uuid, i32)) -> bool {
    assignment.get(&id).is_some_and(|ps| ps.contains(&p))
}

fn insert(assignment: &mut Assignment, (id, p): (Uuid, i32)) {
    assignment.entry(id).or_default().insert(p);
}

fn compile(regex: &str) -> Result<regex::Regex, String> {
    if regex.len() > REGEX_BYTES_MAX {
        return Err(format!("longer than {REGEX_BYTES_MAX} bytes"));
    }
    // Alone first, so a pattern cannot close the group it is wrapped in below.
    regex::RegexBuilder::new(regex)
        .size_limit(REGEX_COMPILED_BYTES_MAX)
        .build()
        .map_err(|e| e.to_string())?;
    // Kafka matches the whole topic name (RE2/J's `matches`).
    regex::RegexBuilder::new(&format!("^(?:{regex})$"))
        .size_limit(REGEX_COMPILED_BYTES_MAX)
        .build()
        .map_err(|e| e.to_string())
}

impl ConsumerGroups {
    fn lock(&self) -> std::sync::MutexGuard<'_, BTreeMap<String, Group>> {
        self.groups.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Serves one heartbeat. `classic_members` says the group id is a classic group with
    /// members, which a consumer-protocol member may not join.
    pub fn heartbeat(
        &self,
        request: Heartbeat,
        topics: &dyn TopicSource,
        timing: Timing,
        classic_members: bool,
        now: Instant,
    ) -> Answer {
        let mut answer = self.serve(request, topics, timing, classic_members, now);
        answer.heartbeat_interval_ms = timing.heartbeat_interval_ms;
        answer
    }

    fn serve(
        &self,
        mut request: Heartbeat,
        topics: &dyn TopicSource,
        timing: Timing,
        classic_members: bool,
        now: Instant,
    ) -> Answer {
        if request.group_id.is_empty() || request.group_id.contains('\0') {
            return Answer::error(
                ResponseError::InvalidGroupId,
                "the group id is empty or holds NUL",
            );
        }
        let epoch = request.member_epoch;
        if request.member_id.is_empty() {
            if epoch != 0 {
                return Answer::error(ResponseError::InvalidRequest, "MemberId can't be empty");
            }
            // ConsumerGroupHeartbeat v0: the coordinator names a joining member.
            request.member_id = Uuid::new_v4().to_string();
        }
        if epoch == STATIC_LEAVE && request.instance_id.is_none() {
            return Answer::error(
                ResponseError::InvalidRequest,
                "member epoch -2 (a static member's leave) needs the InstanceId",
            );
        }
        if epoch < STATIC_LEAVE {
            return Answer::error(
                ResponseError::InvalidRequest,
                format!("member epoch {epoch} is not valid"),
            );
        }
        if epoch == 0 {
            if request.rebalance_timeout_ms <= 0 {
                return Answer::error(
                    ResponseError::InvalidRequest,
                    "RebalanceTimeoutMs must be provided in the first request",
                );
            }
            if request.topics.is_none() && request.regex.as_deref().is_none_or(str::is_empty) {
                return Answer::error(
                    ResponseError::InvalidRequest,
                    "SubscribedTopicNames or SubscribedTopicRegex must be set in the first request",
                );
            }
            if request.owned.as_ref().is_some_and(|o| !o.values().all(BTreeSet::is_empty)) {
                return Answer::error(
                    ResponseError::InvalidRequest,
                    "TopicPartitions must be empty when (re-)joining",
                );
            }
        }
        if let Some(names) = &request.topics {
            if names.len() > TOPICS_MAX || names.iter().any(|n| n.len() > TOPIC_NAME_BYTES_MAX) {
                return Answer::error(
                    ResponseError::InvalidRequest,
                    format!("SubscribedTopicNames: at most {TOPICS_MAX} names of at most {TOPIC_NAME_BYTES_MAX} bytes"),
                );
            }
        }
        if let Some(assignor) = request.assignor.as_deref() {
            if assignor != UNIFORM && assignor != RANGE {
                return Answer::error(
                    ResponseError::UnsupportedAssignor,
                    format!("server assignor {assignor:?} is not one of {UNIFORM}, {RANGE}"),
                );
            }
        }
        let regex = match request.regex.as_deref() {
            Some("") => Some(None),
            Some(text) => match compile(text) {
                Ok(re) => Some(Some((text.to_string(), re))),
                Err(error) => {
                    return Answer::error(
                        ResponseError::InvalidRegularExpression,
                        format!("SubscribedTopicRegex {text:?}: {error}"),
                    )
                }
            },
            None => None,
        };
        let mut groups = self.lock();
        if epoch == LEAVE || epoch == STATIC_LEAVE {
            return leave(&mut groups, &request, now);
        }
        if epoch == 0 && classic_members {
            return Answer::error(
                ResponseError::GroupIdNotFound,
                format!("group {} is a classic group with members; it takes JoinGroup, not ConsumerGroupHeartbeat", request.group_id),
            );
        }
        if !groups.contains_key(&request.group_id) {
            if epoch != 0 {
                return Answer::error(
                    ResponseError::UnknownMemberId,
                    format!("member {} is not in group {}", request.member_id, request.group_id),
                );
            }
            if groups.len() >= GROUPS_MAX {
                // Make room by forgetting empty groups (their offsets stay in the store).
                groups.retain(|_, g| !g.members.is_empty());
            }
            if groups.len() >= GROUPS_MAX {
                return Answer::error(
                    ResponseError::PolicyViolation,
                    format!("consumer groups limit {GROUPS_MAX} reached"),
                );
            }
        }
        let group = groups.entry(request.group_id.clone()).or_default();
        let mut send = false;
        if epoch == 0 {
            match join(group, &request, timing, now) {
                Ok(()) => send = true,
                Err(answer) => return answer,
            }
        } else {
            let Some(member) = group.members.get(&request.member_id).filter(|m| !m.left_static)
            else {
                return Answer::error(
                    ResponseError::UnknownMemberId,
                    format!("member {} is not in group {}", request.member_id, request.group_id),
                );
            };
            if epoch > member.epoch {
                return fenced(&request, member.epoch);
            }
            if epoch < member.epoch {
                let retried = epoch == member.previous_epoch
                    && request.owned.as_ref().is_none_or(|owned| {
                        partitions_of(owned)
                            .all(|p| contains(&member.assigned, p) || contains(&member.revoking, p))
                    });
                if !retried {
                    return fenced(&request, member.epoch);
                }
                // Its last answer was lost: send the assignment again.
                send = true;
            }
        }
        // A full request (after a failed heartbeat the client sends every field) gets the
        // whole assignment back, whatever it missed.
        let full = request.rebalance_timeout_ms > 0
            && request.owned.is_some()
            && (request.topics.is_some() || request.regex.is_some());
        let Some(member) = group.members.get_mut(&request.member_id) else {
            return Answer::error(ResponseError::UnknownMemberId, "member vanished");
        };
        let out_of_step = request
            .owned
            .as_ref()
            .is_some_and(|owned| member.state == Reconciling::Stable && *owned != member.assigned);
        if full || out_of_step {
            send = true;
        }
        member.last_seen = now;
        member.session_timeout = Duration::from_millis(timing.session_timeout_ms.max(1) as u64);
        if request.rebalance_timeout_ms > 0 {
            member.rebalance_timeout_ms = request.rebalance_timeout_ms;
        }
        if request.rack_id.is_some() {
            member.rack_id = request.rack_id.clone();
        }
        let mut changed = false;
        if let Some(names) = &request.topics {
            let names: BTreeSet<String> = names.iter().cloned().collect();
            if names != member.topics {
                member.topics = names;
                changed = true;
            }
        }
        if let Some(regex) = regex {
            let same = match (&member.regex, &regex) {
                (Some((a, _)), Some((b, _))) => a == b,
                (None, None) => true,
                _ => false,
            };
            if !same {
                member.regex = regex;
                changed = true;
            }
        }
        if let Some(assignor) = &request.assignor {
            if member.assignor.as_deref() != Some(assignor.as_str()) {
                member.assignor = Some(assignor.clone());
                changed = true;
            }
        }
        if changed {
            group.epoch = group.epoch.saturating_add(1);
        }
        let metadata = subscribed_metadata(group, topics, changed, now);
        if metadata != group.metadata {
            group.metadata = metadata;
            group.epoch = group.epoch.saturating_add(1);
        }
        if group.epoch > group.target_epoch {
            group.target = assign(group);
            group.target_epoch = group.epoch;
        }
        if reconcile(group, &request.member_id, request.owned.as_ref(), now) {
            send = true;
        }
        let Some(member) = group.members.get(&request.member_id) else {
            return Answer::error(ResponseError::UnknownMemberId, "member vanished");
        };
        Answer {
            member_id: request.member_id.clone(),
            member_epoch: member.epoch,
            assignment: send.then(|| member.assigned.clone()),
            ..Default::default()
        }
    }

    /// Removes members whose session ended or who did not release revoked partitions in
    /// time, and groups left without members.
    pub fn tick(&self, now: Instant) {
        let mut groups = self.lock();
        for (group_id, group) in groups.iter_mut() {
            let expired: Vec<String> = group
                .members
                .iter()
                .filter(|(_, m)| {
                    now.saturating_duration_since(m.last_seen) > m.session_timeout
                        || m.revoke_deadline.is_some_and(|deadline| now > deadline)
                })
                .map(|(id, _)| id.clone())
                .collect();
            for member_id in expired {
                tracing::debug!(group = %group_id, member = %member_id, "consumer group member expired");
                remove_member(group, &member_id);
            }
        }
        // Empty groups stay (type consumer, state Empty) until DeleteGroups, or until room
        // is needed for a new one.
    }

    /// The check of an OffsetCommit (or TxnOffsetCommit, `transactional`) against a consumer
    /// group: `None` when `group_id` is not one (the classic coordinator decides), else the
    /// error code (0 to accept).
    pub fn check_commit(
        &self,
        group_id: &str,
        member_id: &str,
        epoch: i32,
        version: i16,
        transactional: bool,
    ) -> Option<i16> {
        let groups = self.lock();
        // An empty group is any protocol's: the classic checks decide.
        let group = groups.get(group_id).filter(|g| !g.members.is_empty())?;
        if epoch < 0 && member_id.is_empty() {
            // An admin or assign() commit: only into a group without members (this one has).
            return Some(if transactional { 0 } else { code(ResponseError::UnknownMemberId) });
        }
        let Some(member) = group.members.get(member_id) else {
            return Some(code(ResponseError::UnknownMemberId));
        };
        if version < 9 && !transactional {
            // Kafka: a consumer-protocol member commits with OffsetCommit v9 or later.
            return Some(code(ResponseError::UnsupportedVersion));
        }
        if epoch != member.epoch {
            let stale = if version >= 9 && !transactional {
                ResponseError::StaleMemberEpoch
            } else {
                ResponseError::IllegalGeneration
            };
            return Some(code(stale));
        }
        Some(0)
    }

    /// The check of an OffsetFetch v9+ that names a member: `None` when `group_id` is not a
    /// consumer group, else the error code (0 to answer).
    pub fn check_fetch(&self, group_id: &str, member_id: Option<&str>, epoch: i32) -> Option<i16> {
        let groups = self.lock();
        let group = groups.get(group_id).filter(|g| !g.members.is_empty())?;
        if member_id.is_none_or(str::is_empty) && epoch < 0 {
            return Some(0);
        }
        let Some(member) = member_id.and_then(|id| group.members.get(id)) else {
            return Some(code(ResponseError::UnknownMemberId));
        };
        Some(if epoch == member.epoch { 0 } else { code(ResponseError::StaleMemberEpoch) })
    }

    /// Forgets an empty consumer group (DeleteGroups): `Ok(true)` if it was one,
    /// `Ok(false)` if `group_id` is no consumer group, NON_EMPTY_GROUP if it has members.
    pub fn remove_if_empty(&self, group_id: &str) -> std::result::Result<bool, i16> {
        let mut groups = self.lock();
        match groups.get(group_id) {
            None => Ok(false),
            Some(group) if !group.members.is_empty() => Err(code(ResponseError::NonEmptyGroup)),
            Some(_) => {
                groups.remove(group_id);
                Ok(true)
            }
        }
    }

    /// Whether `group_id` is a consumer group with members.
    pub fn has_members(&self, group_id: &str) -> bool {
        self.lock().get(group_id).is_some_and(|g| !g.members.is_empty())
    }

    /// The topics a consumer group's members subscribe to (by name or expression), if it is
    /// one.
    pub fn subscribed_topics(&self, group_id: &str) -> Option<BTreeSet<String>> {
        let groups = self.lock();
        groups.get(group_id).map(|g| g.metadata.keys().cloned().collect())
    }

    /// Every consumer group id.
    pub fn ids(&self) -> Vec<String> {
        self.lock().keys().cloned().collect()
    }

    /// A copy of one group.
    pub fn describe(&self, group_id: &str) -> Option<GroupView> {
        let groups = self.lock();
        let group = groups.get(group_id)?;
        let members = group
            .members
            .iter()
            .map(|(id, m)| MemberView {
                member_id: id.clone(),
                instance_id: m.instance_id.clone(),
                rack_id: m.rack_id.clone(),
                epoch: m.epoch,
                topics: m.topics.iter().cloned().collect(),
                regex: m.regex.as_ref().map(|(text, _)| text.clone()),
                assigned: m.assigned.clone(),
                target: group.target.get(id).cloned().unwrap_or_default(),
                stable: m.state == Reconciling::Stable,
            })
            .collect();
        Some(GroupView {
            epoch: group.epoch,
            target_epoch: group.target_epoch,
            assignor: chosen_assignor(group).to_string(),
            members,
        })
    }
}

fn fenced(request: &Heartbeat, member_epoch: i32) -> Answer {
    Answer::error(
        ResponseError::FencedMemberEpoch,
        format!(
            "member {} sent epoch {}, its epoch is {member_epoch}: rejoin with epoch 0",
            request.member_id, request.member_epoch
        ),
    )
}

fn leave(groups: &mut BTreeMap<String, Group>, request: &Heartbeat, now: Instant) -> Answer {
    let unknown = || {
        Answer::error(
            ResponseError::UnknownMemberId,
            format!("member {} is not in group {}", request.member_id, request.group_id),
        )
    };
    let Some(group) = groups.get_mut(&request.group_id) else { return unknown() };
    let Some(member) = group.members.get_mut(&request.member_id) else { return unknown() };
    if request.instance_id.is_some() && member.instance_id != request.instance_id {
        return Answer::error(
            ResponseError::FencedInstanceId,
            format!("member {} is not instance {:?}", request.member_id, request.instance_id),
        );
    }
    if request.member_epoch == STATIC_LEAVE && member.instance_id.is_some() {
        // Its partitions wait one session timeout for the instance id to come back; its
        // commits are stale meanwhile.
        member.left_static = true;
        member.last_seen = now;
        member.previous_epoch = member.epoch;
        member.epoch = STATIC_LEAVE;
    } else {
        remove_member(group, &request.member_id);
    }
    Answer {
        member_id: request.member_id.clone(),
        member_epoch: request.member_epoch,
        ..Default::default()
    }
}

/// Adds a member joining with epoch 0 (or takes back a static member's place).
fn join(
    group: &mut Group,
    request: &Heartbeat,
    timing: Timing,
    now: Instant,
) -> Result<(), Answer> {
    if let Some(instance) = &request.instance_id {
        let holder = group
            .members
            .iter()
            .find(|(_, m)| m.instance_id.as_deref() == Some(instance.as_str()))
            .map(|(id, m)| (id.clone(), m.left_static));
        match holder {
            Some((id, _)) if id == request.member_id => {
                remove_member(group, &id);
            }
            Some((_, false)) => {
                return Err(Answer::error(
                    ResponseError::UnreleasedInstanceId,
                    format!(
                        "instance id {instance} is used by another member, which must leave first"
                    ),
                ));
            }
            Some((old_id, true)) => {
                // The instance is back under a new member id: it takes its partitions, and
                // nothing is reassigned. (A live member that has that id already goes.)
                remove_member(group, &request.member_id);
                if let Some(mut member) = group.members.remove(&old_id) {
                    member.left_static = false;
                    member.last_seen = now;
                    for owner in group.owners.values_mut() {
                        if *owner == old_id {
                            owner.clone_from(&request.member_id);
                        }
                    }
                    if let Some(target) = group.target.remove(&old_id) {
                        group.target.insert(request.member_id.clone(), target);
                    }
                    group.members.insert(request.member_id.clone(), member);
                }
                return Ok(());
            }
            None => {}
        }
    }
    if group.members.contains_key(&request.member_id) {
        // Rejoining after it lost its state (fenced, or restarted with the same id).
        remove_member(group, &request.member_id);
    }
    if group.members.len() >= GROUP_MEMBERS_MAX {
        return Err(Answer::error(
            ResponseError::GroupMaxSizeReached,
            format!("the group has {GROUP_MEMBERS_MAX} members, the most a group may"),
        ));
    }
    let member = Member {
        epoch: 0,
        previous_epoch: -1,
        instance_id: request.instance_id.clone(),
        rack_id: request.rack_id.clone(),
        rebalance_timeout_ms: request.rebalance_timeout_ms,
        topics: BTreeSet::new(),
        regex: None,
        assignor: None,
        assigned: Assignment::new(),
        revoking: Assignment::new(),
        state: Reconciling::Stable,
        last_seen: now,
        session_timeout: Duration::from_millis(timing.session_timeout_ms.max(1) as u64),
        revoke_deadline: None,
        left_static: false,
    };
    group.members.insert(request.member_id.clone(), member);
    group.epoch = group.epoch.saturating_add(1);
    Ok(())
}

/// Removes a member, freeing every partition it holds.
fn remove_member(group: &mut Group, member_id: &str) {
    if group.members.remove(member_id).is_some() {
        group.owners.retain(|_, owner| owner != member_id);
        group.target.remove(member_id);
        group.epoch = group.epoch.saturating_add(1);
        forget_unused_expressions(group);
    }
}

/// Drops the matches of expressions no member subscribes with any more.
fn forget_unused_expressions(group: &mut Group) {
    let members = &group.members;
    group.regex_matches.retain(|text, _| {
        members.values().any(|m| m.regex.as_ref().is_some_and(|(t, _)| t == text))
    });
}

/// The subscribed topics that exist, with their ids and partition counts. Regular
/// expressions are matched at the heartbeat after the one that changed a subscription (as
/// Kafka resolves them asynchronously: topics named literally are assigned first, the matched
/// ones a heartbeat later) and then every [`REGEX_REFRESH`]; each distinct expression once
/// per topic.
fn subscribed_metadata(
    group: &mut Group,
    topics: &dyn TopicSource,
    changed: bool,
    now: Instant,
) -> BTreeMap<String, (Uuid, i32)> {
    forget_unused_expressions(group);
    let expressions: BTreeMap<String, regex::Regex> =
        group.members.values().filter_map(|m| m.regex.clone()).collect();
    let unmatched = expressions.keys().any(|text| !group.regex_matches.contains_key(text));
    let due =
        group.regex_matched_at.is_none_or(|at| now.saturating_duration_since(at) >= REGEX_REFRESH);
    if changed && unmatched {
        // A new expression: matched at the next heartbeat.
        group.regex_matched_at = None;
    } else if !expressions.is_empty() && (unmatched || due) {
        let names = topics.names();
        group.regex_matches = expressions
            .iter()
            .map(|(text, re)| {
                let matched = names.iter().filter(|name| re.is_match(name)).cloned().collect();
                (text.clone(), matched)
            })
            .collect();
        group.regex_matched_at = Some(now);
    }
    let mut names: BTreeSet<&String> =
        group.members.values().flat_map(|m| m.topics.iter()).collect();
    names.extend(group.regex_matches.values().flatten());
    names
        .into_iter()
        .filter_map(|name| topics.topic(name).map(|meta| (name.clone(), meta)))
        .collect()
}

/// The assignor the members ask for most (ties to the first name), else `uniform`.
fn chosen_assignor(group: &Group) -> &'static str {
    let range = group.members.values().filter(|m| m.assignor.as_deref() == Some(RANGE)).count();
    let uniform = group.members.values().filter(|m| m.assignor.as_deref() == Some(UNIFORM)).count();
    if range > uniform {
        RANGE
    } else {
        UNIFORM
    }
}

/// Computes the target assignment of every member.
fn assign(group: &Group) -> BTreeMap<String, Assignment> {
    let mut target: BTreeMap<String, Assignment> =
        group.members.keys().map(|id| (id.clone(), Assignment::new())).collect();
    // Who subscribes to each topic, worked out once per topic.
    let eligible: BTreeMap<&String, Vec<&String>> = group
        .metadata
        .keys()
        .map(|name| {
            let members = group.members.iter().filter(|(_, m)| m.subscribes(name));
            (name, members.map(|(id, _)| id).collect())
        })
        .collect();
    if chosen_assignor(group) == RANGE {
        for (name, (id, count)) in &group.metadata {
            let subscribers = eligible.get(name).map(Vec::as_slice).unwrap_or_default();
            let Ok(n) = usize::try_from(*count) else { continue };
            if subscribers.is_empty() {
                continue;
            }
            let (base, extra) = (n / subscribers.len(), n % subscribers.len());
            let mut next = 0i32;
            for (i, member) in subscribers.iter().enumerate() {
                let take = base + usize::from(i < extra);
                for _ in 0..take {
                    if let Some(assignment) = target.get_mut(*member) {
                        insert(assignment, (*id, next));
                    }
                    next += 1;
                }
            }
        }
        return target;
    }
    uniform(group, &eligible, &mut target);
    target
}

/// Gives `partition` to `member` in `target` and counts it.
fn give(
    target: &mut BTreeMap<String, Assignment>,
    counts: &mut BTreeMap<String, usize>,
    member: &str,
    partition: (Uuid, i32),
) {
    if let Some(assignment) = target.get_mut(member) {
        insert(assignment, partition);
    }
    if let Some(count) = counts.get_mut(member) {
        *count += 1;
    }
}

/// Kafka's uniform assignor, in spirit: balanced counts, and each member keeps what its
/// previous target gave it as far as balance allows. When every member subscribes to every
/// topic, any two members' counts differ by at most one and a join or leave moves only the
/// partitions that change hands; otherwise partitions with the fewest candidates go first,
/// each to its candidate with the fewest partitions (its previous holder on a tie).
fn uniform(
    group: &Group,
    eligible: &BTreeMap<&String, Vec<&String>>,
    target: &mut BTreeMap<String, Assignment>,
) {
    let partitions: Vec<(&String, Uuid, i32)> = group
        .metadata
        .iter()
        .filter(|(name, _)| eligible.get(name).is_some_and(|m| !m.is_empty()))
        .flat_map(|(name, (id, count))| (0..*count).map(move |p| (name, *id, p)))
        .collect();
    let mut previous: HashMap<(Uuid, i32), &String> = HashMap::new();
    for (member, assignment) in &group.target {
        for partition in partitions_of(assignment) {
            previous.insert(partition, member);
        }
    }
    let mut counts: BTreeMap<String, usize> =
        group.members.keys().map(|id| (id.clone(), 0)).collect();
    let everyone = group.members.len();
    let homogeneous = eligible.values().all(|m| m.len() == everyone);
    let mut taken: BTreeSet<(Uuid, i32)> = BTreeSet::new();
    if homogeneous && everyone > 0 {
        let base = partitions.len() / everyone;
        let mut extra = partitions.len() % everyone;
        let valid: BTreeSet<(Uuid, i32)> = partitions.iter().map(|(_, id, p)| (*id, *p)).collect();
        // Members holding the most keep first, so the extra partitions stay where they are.
        let mut kept: Vec<(&String, Vec<(Uuid, i32)>)> = group
            .members
            .keys()
            .map(|member| {
                let had = group
                    .target
                    .get(member)
                    .map(|a| partitions_of(a).filter(|p| valid.contains(p)).collect::<Vec<_>>());
                (member, had.unwrap_or_default())
            })
            .collect();
        kept.sort_by(|a, b| b.1.len().cmp(&a.1.len()).then_with(|| a.0.cmp(b.0)));
        for (member, had) in kept {
            let mut quota = base;
            if extra > 0 && had.len() > base {
                quota += 1;
                extra -= 1;
            }
            for partition in had.into_iter().take(quota) {
                if taken.insert(partition) {
                    give(target, &mut counts, member, partition);
                }
            }
        }
    }
    let mut order: Vec<&(&String, Uuid, i32)> = partitions.iter().collect();
    order.sort_by_key(|(name, id, p)| (eligible.get(*name).map_or(0, Vec::len), *name, *id, *p));
    for (name, id, p) in order {
        let partition = (*id, *p);
        if taken.contains(&partition) {
            continue;
        }
        let Some(candidates) = eligible.get(*name) else { continue };
        let count_of = |member: &String| counts.get(member).copied().unwrap_or(usize::MAX);
        let Some(least) = candidates.iter().map(|m| count_of(m)).min() else { continue };
        let holder = previous
            .get(&partition)
            .filter(|m| candidates.contains(m) && count_of(m) == least)
            .copied();
        let chosen = holder.or_else(|| candidates.iter().find(|m| count_of(m) == least).copied());
        if let Some(member) = chosen {
            give(target, &mut counts, member, partition);
            taken.insert(partition);
        }
    }
}

/// Moves one member towards its target; `true` when its assignment or epoch changed, so the
/// answer must carry them.
fn reconcile(group: &mut Group, member_id: &str, owned: Option<&Assignment>, now: Instant) -> bool {
    let target_epoch = group.target_epoch;
    let target = group.target.get(member_id).cloned().unwrap_or_default();
    let Some(member) = group.members.get_mut(member_id) else { return false };
    if member.state == Reconciling::Unrevoked {
        let released =
            owned.is_some_and(|owned| !partitions_of(&member.revoking).any(|p| contains(owned, p)));
        if !released {
            return false;
        }
        for partition in partitions_of(&member.revoking) {
            if group.owners.get(&partition).is_some_and(|owner| owner == member_id) {
                group.owners.remove(&partition);
            }
        }
        member.revoking.clear();
        member.revoke_deadline = None;
        member.state = Reconciling::Stable;
    }
    if member.epoch == target_epoch
        && member.state == Reconciling::Stable
        && member.assigned == target
    {
        return false;
    }
    let mut keep = Assignment::new();
    let mut revoke = Assignment::new();
    for partition in partitions_of(&member.assigned) {
        if contains(&target, partition) {
            insert(&mut keep, partition);
        } else {
            insert(&mut revoke, partition);
        }
    }
    if !revoke.is_empty() {
        // Give these up first; the epoch moves on once they are released.
        member.assigned = keep;
        member.revoking = revoke;
        member.state = Reconciling::Unrevoked;
        member.revoke_deadline =
            Some(now + Duration::from_millis(member.rebalance_timeout_ms.max(1) as u64));
        return true;
    }
    let before = member.assigned.clone();
    let mut unreleased = false;
    for partition in partitions_of(&target) {
        if contains(&keep, partition) {
            continue;
        }
        match group.owners.get(&partition) {
            Some(owner) if owner != member_id => unreleased = true,
            _ => {
                group.owners.insert(partition, member_id.to_string());
                insert(&mut keep, partition);
            }
        }
    }
    member.assigned = keep;
    member.state = if unreleased { Reconciling::Unreleased } else { Reconciling::Stable };
    let mut changed = member.assigned != before;
    if member.epoch != target_epoch {
        member.previous_epoch = member.epoch;
        member.epoch = target_epoch;
        changed = true;
    }
    changed
}

#[cfg(test)]
mod tests {
    use super::*;

    struct Topics(BTreeMap<String, (Uuid, i32)>);

    impl TopicSource for Topics {
        fn topic(&self, name: &str) -> Option<(Uuid, i32)> {
            self.0.get(name).copied()
        }
        fn names(&self) -> Vec<String> {
            self.0.keys().cloned().collect()
        }
    }

    const TIMING: Timing = Timing { session_timeout_ms: 45_000, heartbeat_interval_ms: 5000 };

    fn topics(list: &[(&str, i32)]) -> Topics {
        Topics(list.iter().map(|(n, c)| (n.to_string(), (Uuid::new_v4(), *c))).collect())
    }

    fn join_request(member: &str, names: &[&str]) -> Heartbeat {
        Heartbeat {
            group_id: "g".into(),
            member_id: member.into(),
            member_epoch: 0,
            rebalance_timeout_ms: 300_000,
            topics: Some(names.iter().map(|n| n.to_string()).collect()),
            ..Default::default()
        }
    }

    fn beat(member: &str, epoch: i32, owned: &Assignment) -> Heartbeat {
        Heartbeat {
            group_id: "g".into(),
            member_id: member.into(),
            member_epoch: epoch,
            rebalance_timeout_ms: -1,
            owned: Some(owned.clone()),
            ..Default::default()
        }
    }

    fn count(assignment: &Assignment) -> usize {
        assignment.values().map(BTreeSet::len).sum()
    }

    /// A client: its member id, epoch and the partitions it owns.
    struct Client {
        id: String,
        epoch: i32,
        owned: Assignment,
    }

    impl Client {
        fn step(&mut self, groups: &ConsumerGroups, topics: &Topics, now: Instant) -> Answer {
            let answer = groups.heartbeat(
                beat(&self.id, self.epoch, &self.owned),
                topics,
                TIMING,
                false,
                now,
            );
            assert_eq!(answer.error, 0, "{answer:?}");
            self.epoch = answer.member_epoch;
            if let Some(assignment) = &answer.assignment {
                self.owned = assignment.clone();
            }
            answer
        }
    }

    fn joined(groups: &ConsumerGroups, topics: &Topics, id: &str, now: Instant) -> Client {
        let answer = groups.heartbeat(join_request(id, &["t"]), topics, TIMING, false, now);
        assert_eq!(answer.error, 0, "{answer:?}");
        Client {
            id: id.into(),
            epoch: answer.member_epoch,
            owned: answer.assignment.unwrap_or_default(),
        }
    }

    /// Heartbeats every client in turn until nothing changes, checking no partition is ever
    /// owned twice.
    fn settle(groups: &ConsumerGroups, topics: &Topics, clients: &mut [Client], now: Instant) {
        for _ in 0..10 {
            for client in clients.iter_mut() {
                client.step(groups, topics, now);
            }
            let mut seen = BTreeSet::new();
            for client in clients.iter() {
                for partition in partitions_of(&client.owned) {
                    assert!(seen.insert(partition), "{partition:?} owned twice");
                }
            }
        }
    }

    #[test]
    fn members_split_partitions_and_hand_them_over_without_overlap() {
        let groups = ConsumerGroups::default();
        let topics = topics(&[("t", 6)]);
        let now = Instant::now();
        let mut clients = vec![joined(&groups, &topics, "a", now)];
        assert_eq!(count(&clients[0].owned), 6, "a lone member takes everything");
        clients.push(joined(&groups, &topics, "b", now));
        clients.push(joined(&groups, &topics, "c", now));
        settle(&groups, &topics, &mut clients, now);
        let counts: Vec<usize> = clients.iter().map(|c| count(&c.owned)).collect();
        assert_eq!(counts, [2, 2, 2]);
        let epochs: BTreeSet<i32> = clients.iter().map(|c| c.epoch).collect();
        assert_eq!(epochs.len(), 1, "every member at the group's epoch: {epochs:?}");

        // b leaves; a and c take its partitions, keeping their own.
        let before: Vec<Assignment> = clients.iter().map(|c| c.owned.clone()).collect();
        let left = groups.heartbeat(
            beat("b", clients[1].epoch, &clients[1].owned).with_epoch(LEAVE),
            &topics,
            TIMING,
            false,
            now,
        );
        assert_eq!((left.error, left.member_epoch), (0, LEAVE));
        clients.remove(1);
        settle(&groups, &topics, &mut clients, now);
        assert_eq!(clients.iter().map(|c| count(&c.owned)).collect::<Vec<_>>(), [3, 3]);
        for (client, old) in clients.iter().zip([&before[0], &before[2]]) {
            assert!(partitions_of(old).all(|p| contains(&client.owned, p)), "sticky");
        }
    }

    #[test]
    fn epochs_fence_as_kafka_does() {
        let groups = ConsumerGroups::default();
        let topics = topics(&[("t", 2)]);
        let now = Instant::now();
        let a = joined(&groups, &topics, "a", now);
        let ahead = groups.heartbeat(beat("a", a.epoch + 1, &a.owned), &topics, TIMING, false, now);
        assert_eq!(ahead.error, ResponseError::FencedMemberEpoch.code());
        let unknown =
            groups.heartbeat(beat("z", 3, &Assignment::new()), &topics, TIMING, false, now);
        assert_eq!(unknown.error, ResponseError::UnknownMemberId.code());
        assert_eq!(groups.check_commit("g", "a", a.epoch, 9, false), Some(0));
        assert_eq!(
            groups.check_commit("g", "a", a.epoch - 1, 9, false),
            Some(ResponseError::StaleMemberEpoch.code())
        );
        assert_eq!(
            groups.check_commit("g", "", -1, 9, false),
            Some(ResponseError::UnknownMemberId.code())
        );
        assert_eq!(groups.check_commit("other", "a", 1, 9, false), None, "not a consumer group");
        let old = groups.check_commit("g", "a", a.epoch, 8, false);
        assert_eq!(old, Some(ResponseError::UnsupportedVersion.code()), "v9 needed");
        assert_eq!(
            groups.check_commit("g", "a", a.epoch - 1, 3, true),
            Some(ResponseError::IllegalGeneration.code())
        );
        let bad = Heartbeat { assignor: Some("sticky".into()), ..join_request("b", &["t"]) };
        assert_eq!(
            groups.heartbeat(bad, &topics, TIMING, false, now).error,
            ResponseError::UnsupportedAssignor.code()
        );
        let classic = groups.heartbeat(join_request("b", &["t"]), &topics, TIMING, true, now);
        assert_eq!(classic.error, ResponseError::GroupIdNotFound.code());
    }

    #[test]
    fn silent_members_expire_and_their_partitions_move() {
        let groups = ConsumerGroups::default();
        let topics = topics(&[("t", 4)]);
        let now = Instant::now();
        let mut clients =
            vec![joined(&groups, &topics, "a", now), joined(&groups, &topics, "b", now)];
        settle(&groups, &topics, &mut clients, now);
        let later = now + Duration::from_millis(30_000);
        clients[0].step(&groups, &topics, later);
        groups.tick(now + Duration::from_millis(50_000));
        let mut survivors = vec![clients.remove(0)];
        settle(&groups, &topics, &mut survivors, now + Duration::from_millis(50_000));
        assert_eq!(count(&survivors[0].owned), 4);
    }

    #[test]
    fn range_assigns_contiguous_ranges_and_regex_subscribes() {
        let groups = ConsumerGroups::default();
        let topics = topics(&[("orders", 5), ("other", 3)]);
        let now = Instant::now();
        let join = |id: &str| Heartbeat {
            assignor: Some(RANGE.into()),
            topics: None,
            regex: Some("ord.*".into()),
            ..join_request(id, &[])
        };
        let a = groups.heartbeat(join("a"), &topics, TIMING, false, now);
        assert_eq!(a.error, 0, "{a:?}");
        let b = groups.heartbeat(join("b"), &topics, TIMING, false, now);
        let mut clients = vec![
            Client {
                id: "a".into(),
                epoch: a.member_epoch,
                owned: a.assignment.unwrap_or_default(),
            },
            Client {
                id: "b".into(),
                epoch: b.member_epoch,
                owned: b.assignment.unwrap_or_default(),
            },
        ];
        settle(&groups, &topics, &mut clients, now);
        let orders = topics.0["orders"].0;
        assert_eq!(
            clients[0].owned.get(&orders).cloned().unwrap_or_default(),
            BTreeSet::from([0, 1, 2])
        );
        assert_eq!(
            clients[1].owned.get(&orders).cloned().unwrap_or_default(),
            BTreeSet::from([3, 4])
        );
        assert!(clients.iter().all(|c| c.owned.len() == 1), "other is not subscribed");
        let escape = Heartbeat { regex: Some("a)|(b".into()), ..join_request("c", &[]) };
        let escape = groups.heartbeat(escape, &topics, TIMING, false, now);
        assert_eq!(
            escape.error,
            ResponseError::InvalidRegularExpression.code(),
            "not wrapped open"
        );
        let bad = Heartbeat { regex: Some("(".into()), ..join_request("c", &[]) };
        assert_eq!(
            groups.heartbeat(bad, &topics, TIMING, false, now).error,
            ResponseError::InvalidRegularExpression.code()
        );
    }

    #[test]
    fn a_static_member_takes_back_its_partitions() {
        let groups = ConsumerGroups::default();
        let topics = topics(&[("t", 2)]);
        let now = Instant::now();
        let first = Heartbeat { instance_id: Some("i".into()), ..join_request("a", &["t"]) };
        let a = groups.heartbeat(first, &topics, TIMING, false, now);
        let owned = a.assignment.clone().unwrap_or_default();
        let leave = Heartbeat { instance_id: Some("i".into()), ..beat("a", STATIC_LEAVE, &owned) };
        assert_eq!(groups.heartbeat(leave, &topics, TIMING, false, now).member_epoch, STATIC_LEAVE);
        let back = Heartbeat { instance_id: Some("i".into()), ..join_request("a2", &["t"]) };
        let back = groups.heartbeat(back, &topics, TIMING, false, now);
        assert_eq!(back.error, 0, "{back:?}");
        assert_eq!(back.member_epoch, a.member_epoch, "same epoch, nothing reassigned");
        assert_eq!(back.assignment, Some(owned));
        let twice = Heartbeat { instance_id: Some("i".into()), ..join_request("a3", &["t"]) };
        let twice = groups.heartbeat(twice, &topics, TIMING, false, now);
        assert_eq!(twice.error, ResponseError::UnreleasedInstanceId.code());
    }

    #[test]
    fn members_subscribed_differently_are_balanced() {
        let groups = ConsumerGroups::default();
        let topics = topics(&[("t", 6), ("u", 2)]);
        let now = Instant::now();
        let mut clients = vec![joined(&groups, &topics, "a", now)];
        let b = groups.heartbeat(join_request("b", &["t", "u"]), &topics, TIMING, false, now);
        assert_eq!(b.error, 0, "{b:?}");
        clients.push(Client {
            id: "b".into(),
            epoch: b.member_epoch,
            owned: b.assignment.unwrap_or_default(),
        });
        settle(&groups, &topics, &mut clients, now);
        let counts: Vec<usize> = clients.iter().map(|c| count(&c.owned)).collect();
        assert_eq!(counts, [4, 4], "u goes to b, t is shared so both hold 4");
        let u = topics.0["u"].0;
        assert!(!clients[0].owned.contains_key(&u), "a does not subscribe to u");
    }

    impl Heartbeat {
        fn with_epoch(mut self, epoch: i32) -> Heartbeat {
            self.member_epoch = epoch;
            self
        }
    }
}
